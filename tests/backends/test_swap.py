"""`SwappableBackend`: follows its source, swaps without dropping calls, keeps a working version."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from seawall.backends import Backend, MockBackend, Respond
from seawall.backends.mock import Hang
from seawall.backends.swap import (
    VERSION_HEADER,
    SwappableBackend,
    VersionSwapFailed,
    VersionSwapped,
)
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import BackendUnavailableError, ModelNotReadyError
from seawall.types import InferenceRequest, Tensor


def _request() -> InferenceRequest:
    return InferenceRequest("m", [Tensor.from_numpy("x", np.array([1.0], dtype=np.float32))])


class _Versioned(MockBackend):
    """A mock that remembers whether it was closed."""

    def __init__(self, version: str, *, broken: bool = False, hang: bool = False) -> None:
        super().__init__(f"v{version}", default=Hang() if hang else Respond())
        self.version = version
        self.broken = broken
        self.closed = False

    async def load(self) -> None:
        if self.broken:
            raise BackendUnavailableError(f"version {self.version} is broken")
        await super().load()

    async def close(self) -> None:
        self.closed = True
        await super().close()


@dataclass
class _Source:
    """Names `named`; builds `_Versioned` backends; `refuse` versions fail in open(),
    `refuse_loaded` ones in loaded()."""

    named: str | None = "1"
    broken: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    hang: set[str] = field(default_factory=set)
    refuse_loaded: set[str] = field(default_factory=set)
    built: list[_Versioned] = field(default_factory=list)
    swaps: list[tuple[str | None, str]] = field(default_factory=list)
    opens: int = 0

    async def current(self) -> str:
        if self.named is None:
            raise ModelNotReadyError("no alias champion")
        return self.named

    async def open(self, version: str) -> _Versioned:
        self.opens += 1
        if version in self.refuse:
            raise PermissionError(f"version {version}: unsigned")
        backend = _Versioned(version, broken=version in self.broken, hang=version in self.hang)
        self.built.append(backend)
        return backend

    async def loaded(self, version: str, backend: Backend) -> None:
        if version in self.refuse_loaded:
            raise ModelNotReadyError(f"version {version}: its checks failed")

    async def swapped(self, previous: str | None, version: str) -> None:
        self.swaps.append((previous, version))


def _backend(source: _Source, clock: FakeClock, events: list[object]) -> SwappableBackend:
    return SwappableBackend(
        source, poll_interval_s=2.0, clock=clock, on_event=events.append, target="iris:1"
    )


async def test_it_loads_the_named_version_and_swaps_when_the_source_moves() -> None:
    clock, events, source = FakeClock(), [], _Source()
    backend = _backend(source, clock, events)
    swapped: list[str] = []
    backend.on_swap = swapped.append
    await backend.load()
    assert backend.ready()
    assert backend.version == "1"
    ctx = CallContext("t")
    await backend.infer(_request(), ctx)
    assert ctx.response_headers[VERSION_HEADER] == "1"
    source.named = "2"
    assert await backend.refresh()
    assert backend.version == "2"
    assert source.built[0].closed
    assert not source.built[1].closed
    assert swapped == ["1", "2"]
    assert source.swaps == [(None, "1"), ("1", "2")]
    assert [type(e) for e in events] == [VersionSwapped, VersionSwapped]
    assert not await backend.refresh()  # nothing moved
    await backend.close()
    assert source.built[1].closed


async def test_the_follower_polls_on_the_clock() -> None:
    clock, events, source = FakeClock(), [], _Source()
    backend = _backend(source, clock, events)
    await backend.load()
    await asyncio.sleep(0)  # the follower starts, and waits for its first tick
    source.named = "2"
    clock.advance(1.9)
    await asyncio.sleep(0)
    assert backend.version == "1"
    clock.advance(0.2)
    for _ in range(20):  # the poll task runs the refresh on the loop
        await asyncio.sleep(0)
    assert backend.version == "2"
    await backend.close()


async def test_calls_in_flight_finish_on_the_old_version_before_it_closes() -> None:
    clock, events, source = FakeClock(), [], _Source(hang={"1"})
    backend = _backend(source, clock, events)
    await backend.load()
    old = source.built[0]
    call = asyncio.create_task(backend.infer(_request(), CallContext("t")))
    await asyncio.sleep(0)
    assert backend.in_flight() == 1
    source.named = "2"
    swap = asyncio.create_task(backend.refresh())
    for _ in range(5):
        await asyncio.sleep(0)
    assert backend.version == "2"  # new calls already go to version 2
    ctx = CallContext("t")
    await backend.infer(_request(), ctx)
    assert ctx.response_headers[VERSION_HEADER] == "2"
    assert not old.closed  # still draining its call
    call.cancel()  # the hanging call ends (here: its client gave up)
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await swap
    assert old.closed
    await backend.close()


async def test_a_drain_that_outlasts_its_timeout_closes_the_old_version_anyway() -> None:
    clock, source = FakeClock(), _Source(hang={"1"})
    backend = SwappableBackend(source, poll_interval_s=2.0, clock=clock, drain_timeout_s=5.0)
    await backend.load()
    call = asyncio.create_task(backend.infer(_request(), CallContext("t")))
    await asyncio.sleep(0)
    source.named = "2"
    swap = asyncio.create_task(backend.refresh())
    for _ in range(5):
        await asyncio.sleep(0)
    clock.advance(5.0)
    assert await swap
    assert source.built[0].closed
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await backend.close()


async def test_a_broken_version_never_replaces_a_working_one() -> None:
    clock, events, source = FakeClock(), [], _Source(broken={"2"}, refuse={"3"})
    backend = _backend(source, clock, events)
    await backend.load()
    source.named = "2"
    assert not await backend.refresh()
    assert backend.version == "1"
    assert backend.ready()
    assert source.built[1].closed  # the half-loaded one was cleaned up
    source.named = "3"
    assert not await backend.refresh()
    failures = [e for e in events if isinstance(e, VersionSwapFailed)]
    assert [(f.version, f.serving) for f in failures] == [("2", "1"), ("3", "1")]
    assert "unsigned" in failures[1].reason
    await backend.infer(_request(), CallContext("t"))


async def test_a_failed_version_is_retried_only_later_or_when_the_source_moves() -> None:
    clock, source = FakeClock(), _Source(refuse={"2"})
    backend = SwappableBackend(source, poll_interval_s=2.0, clock=clock, retry_failed_s=60.0)
    await backend.load()
    source.named = "2"
    await backend.refresh()
    await backend.refresh()
    assert source.opens == 2  # version 1, then version 2 once
    clock.advance(60.0)
    await backend.refresh()
    assert source.opens == 3
    await backend.close()


async def test_nothing_named_yet_is_not_ready_with_the_reason_and_recovers() -> None:
    clock, events, source = FakeClock(), [], _Source(named=None)
    backend = _backend(source, clock, events)
    with pytest.raises(ModelNotReadyError, match="no alias champion"):
        await backend.load()
    assert not backend.ready()
    assert "no alias champion" in backend.reason
    with pytest.raises(ModelNotReadyError, match="no version loaded"):
        await backend.infer(_request(), CallContext("t"))
    with pytest.raises(ModelNotReadyError, match="no version loaded"):
        backend.metadata()
    source.named = "1"
    assert await backend.refresh()
    assert backend.ready()
    assert backend.reason == ""
    await backend.close()


def test_the_poll_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="poll_interval_s"):
        SwappableBackend(_Source(), poll_interval_s=0)


@settings(max_examples=40, stateful_step_count=25, deadline=None)
class SwapMachine(RuleBasedStateMachine):
    """Any sequence of moves, failures and calls: calls never fail while a version serves, the
    serving version is always one that loaded, and every replaced version is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.source = _Source()
        self.backend = SwappableBackend(self.source, poll_interval_s=1.0, clock=FakeClock())
        self.loop.run_until_complete(self.backend.load())
        self.next = 2

    def teardown(self) -> None:
        self.loop.run_until_complete(self.backend.close())
        self.loop.close()

    @rule(kind=st.sampled_from(["good", "broken", "refused"]))
    def publish(self, kind: str) -> None:
        version = str(self.next)
        self.next += 1
        if kind == "broken":
            self.source.broken.add(version)
        elif kind == "refused":
            self.source.refuse.add(version)
        self.source.named = version
        self.loop.run_until_complete(self.backend.refresh())

    @rule()
    def unname(self) -> None:
        self.source.named = None
        self.loop.run_until_complete(self.backend.refresh())

    @precondition(lambda self: self.backend.version is not None)
    @rule()
    def call(self) -> None:
        ctx = CallContext("t")
        self.loop.run_until_complete(self.backend.infer(_request(), ctx))
        assert ctx.response_headers[VERSION_HEADER] == self.backend.version

    @invariant()
    def serving_is_a_loaded_good_version(self) -> None:
        version = self.backend.version
        assert version is not None  # version 1 loaded, and nothing replaces it but a good one
        assert version not in self.source.broken | self.source.refuse
        assert self.backend.ready()

    @invariant()
    def replaced_versions_are_closed(self) -> None:
        for built in self.source.built:
            assert built.closed == (built.version != self.backend.version or built.broken)


TestSwapMachine = SwapMachine.TestCase


async def test_a_version_its_source_refuses_after_loading_never_serves_and_is_closed() -> None:
    clock, events, source = FakeClock(), [], _Source()
    backend = _backend(source, clock, events)
    await backend.load()
    source.named, source.refuse_loaded = "2", {"2"}
    assert not await backend.refresh()
    assert backend.version == "1"
    assert source.built[-1].version == "2"
    assert source.built[-1].closed
    failed = events[-1]
    assert isinstance(failed, VersionSwapFailed)
    assert (failed.version, failed.serving) == ("2", "1")
    assert "its checks failed" in failed.reason
    await backend.close()
