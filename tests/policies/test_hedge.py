"""HedgePolicy: a slow first attempt gets a hedge, the first success wins, losers are cancelled."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from seawall.backends.mock import Fail, Hang, MockBackend, Respond, Step
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError, BackendUnavailableError
from seawall.pipeline import Pipeline, Policy
from seawall.policies.hedge import HedgeOptions, HedgePolicy, HedgeStarted, HedgeWon
from seawall.policies.timeout import TimeoutOptions, TimeoutPolicy
from seawall.types import InferenceRequest, InferenceResponse, Tensor


def request() -> InferenceRequest:
    return InferenceRequest("iris", [Tensor.from_numpy("input-0", np.ones((1, 2), np.float32))])


def answer(value: int, latency_s: float) -> Respond:
    return Respond(latency_s=latency_s, outputs={"n": [value]})


def value_of(response: InferenceResponse) -> int:
    return int(response.outputs[0].data[0])


def about(seconds: float) -> Any:
    """`seconds` on the fake clock, which the tests move in 1 ms steps."""
    return pytest.approx(seconds, abs=0.002)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class Harness:
    """A hedge policy on a FakeClock in front of a MockBackend; records events and start times."""

    def __init__(self, *steps: Step, default: Step | None = None, **options: Any) -> None:
        self.clock = FakeClock()
        self.events: list[object] = []
        self.starts: list[float] = []
        self.backend = MockBackend("iris", script=steps, default=default, clock=self.clock)
        self.policy: HedgePolicy[InferenceRequest, InferenceResponse] = HedgePolicy(
            HedgeOptions(**options), clock=self.clock, on_event=self.events.append, target="iris:1"
        )

    async def infer(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.starts.append(self.clock.monotonic() - self.t0)
        return await self.backend.infer(req, ctx)

    async def start(self, ctx: CallContext | None = None) -> asyncio.Task[InferenceResponse]:
        await self.backend.load()
        self.t0 = self.clock.monotonic()
        task = asyncio.create_task(self.policy(request(), ctx or CallContext.new(), self.infer))
        await settle()
        return task

    async def finish(self, task: asyncio.Task[InferenceResponse], limit_s: float = 10.0) -> Any:
        """Move the clock in 1 ms steps until `task` ends; its response or its error."""
        end = self.clock.monotonic() + limit_s
        while not task.done() and self.clock.monotonic() < end:
            await self.clock.run_for(0.001, 0.001)
        assert task.done(), "the call did not finish"
        self.elapsed_s = self.clock.monotonic() - self.t0
        return task.exception() or task.result()


async def test_a_fast_first_attempt_never_hedges() -> None:
    harness = Harness(answer(1, 0.01), delay_s=0.05)
    ctx = CallContext.new()
    response = await harness.finish(await harness.start(ctx))
    assert value_of(response) == 1
    assert harness.backend.stats.calls == 1
    assert harness.events == []
    assert "hedges" not in ctx.annotations
    assert harness.clock.sleepers == 0


async def test_a_slow_first_attempt_loses_to_the_hedge_and_is_cancelled() -> None:
    baseline = len(asyncio.all_tasks())
    harness = Harness(answer(1, 1.0), answer(2, 0.01), delay_s=0.05)
    ctx = CallContext.new()

    response = await harness.finish(await harness.start(ctx))

    assert value_of(response) == 2
    assert harness.starts == [0.0, pytest.approx(0.05)]
    assert harness.elapsed_s == about(0.06)
    assert harness.events == [HedgeStarted("iris:1", 2, 0.05), HedgeWon("iris:1", 2)]
    stats = harness.backend.stats
    assert (stats.calls, stats.completed, stats.cancelled, stats.in_flight) == (2, 1, 1, 0)
    assert ctx.annotations["hedges"] == 1
    assert len(asyncio.all_tasks()) == baseline
    assert harness.clock.sleepers == 0


async def test_the_first_attempt_may_still_win_after_a_hedge_started() -> None:
    harness = Harness(answer(1, 0.08), answer(2, 1.0), delay_s=0.05)
    response = await harness.finish(await harness.start())
    assert value_of(response) == 1
    assert harness.elapsed_s == about(0.08)
    assert harness.events == [HedgeStarted("iris:1", 2, 0.05)]  # no HedgeWon: the first won
    assert harness.backend.stats.cancelled == 1


async def test_a_failed_hedge_waits_for_the_first_attempt(caplog: pytest.LogCaptureFixture) -> None:
    error = BackendUnavailableError("hedge failed")
    harness = Harness(answer(1, 0.2), Fail(error, latency_s=0.01), delay_s=0.05)
    response = await harness.finish(await harness.start())
    assert value_of(response) == 1
    assert harness.elapsed_s == about(0.2)
    stats = harness.backend.stats
    assert (stats.failed, stats.cancelled, stats.completed) == (1, 0, 1)
    gc.collect()  # a loser's error was retrieved: asyncio has nothing to complain about
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_failed_first_attempt_waits_for_the_hedge() -> None:
    harness = Harness(
        Fail(BackendUnavailableError("first failed"), latency_s=0.07), answer(2, 0.1), delay_s=0.05
    )
    response = await harness.finish(await harness.start())
    assert value_of(response) == 2
    assert harness.elapsed_s == about(0.15)
    assert harness.events == [HedgeStarted("iris:1", 2, 0.05), HedgeWon("iris:1", 2)]


async def test_when_every_attempt_fails_the_first_attempts_error_is_raised() -> None:
    first, second = BackendUnavailableError("first"), BackendTimeoutError("second")
    harness = Harness(Fail(first, latency_s=0.2), Fail(second, latency_s=0.01), delay_s=0.05)
    raised = await harness.finish(await harness.start())
    assert raised is first
    assert harness.elapsed_s == about(0.2)  # waited for the first although it failed last
    assert harness.backend.stats.failed == 2


async def test_a_first_attempt_failing_before_the_delay_is_not_hedged() -> None:
    error = BackendUnavailableError("down")
    harness = Harness(Fail(error, latency_s=0.01), delay_s=0.05)
    assert await harness.finish(await harness.start()) is error
    assert harness.backend.stats.calls == 1
    assert harness.events == []
    assert harness.clock.sleepers == 0


async def test_up_to_max_hedges_start_one_delay_apart() -> None:
    harness = Harness(Hang(), Hang(), answer(3, 0.01), Hang(), delay_s=0.05, max_hedges=3)
    ctx = CallContext.new()
    response = await harness.finish(await harness.start(ctx))
    assert value_of(response) == 3
    assert harness.starts == [0.0, pytest.approx(0.05), pytest.approx(0.1)]
    assert harness.events == [
        HedgeStarted("iris:1", 2, 0.05),
        HedgeStarted("iris:1", 3, 0.05),
        HedgeWon("iris:1", 3),
    ]
    assert harness.backend.stats.cancelled == 2
    assert ctx.annotations["hedges"] == 2


async def test_no_more_than_max_hedges_start() -> None:
    harness = Harness(answer(1, 1.0), default=Hang(), delay_s=0.05, max_hedges=1)
    response = await harness.finish(await harness.start())
    assert value_of(response) == 1
    assert harness.backend.stats.calls == 2
    assert harness.backend.stats.cancelled == 1


async def test_a_zero_delay_starts_every_attempt_at_once() -> None:
    harness = Harness(answer(1, 0.3), answer(2, 0.2), answer(3, 0.1), delay_s=0.0, max_hedges=2)
    response = await harness.finish(await harness.start())
    assert value_of(response) == 3
    assert harness.starts == [0.0, 0.0, 0.0]
    assert harness.backend.stats.cancelled == 2


async def test_no_hedge_starts_when_the_deadline_would_pass_first() -> None:
    harness = Harness(answer(1, 0.08), delay_s=0.05)
    ctx = CallContext.new(deadline=harness.clock.monotonic() + 0.04)
    response = await harness.finish(await harness.start(ctx))
    assert value_of(response) == 1
    assert harness.backend.stats.calls == 1
    assert harness.events == []


async def test_cancelling_the_call_cancels_every_attempt() -> None:
    baseline = len(asyncio.all_tasks())
    harness = Harness(default=Hang(), delay_s=0.05)
    task = await harness.start()
    await harness.clock.run_for(0.1, 0.01)
    assert harness.backend.stats.in_flight == 2

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = harness.backend.stats
    assert (stats.calls, stats.cancelled, stats.in_flight) == (2, 2, 0)
    assert len(asyncio.all_tasks()) == baseline
    assert harness.clock.sleepers == 0


async def test_a_second_cancellation_during_the_clean_up_still_waits_for_every_attempt() -> None:
    baseline = len(asyncio.all_tasks())
    clock = FakeClock()
    cleaned: list[int] = []

    async def slow_to_stop(req: str, ctx: CallContext) -> str:
        try:
            await asyncio.Event().wait()
        finally:
            await clock.sleep(0.01)  # closing a connection takes a while
            cleaned.append(1)
        return req

    policy: HedgePolicy[str, str] = HedgePolicy(HedgeOptions(delay_s=0.05), clock=clock)
    task = asyncio.create_task(policy("x", CallContext.new(), slow_to_stop))
    await settle()
    await clock.run_for(0.06, 0.01)
    task.cancel()
    await settle()
    task.cancel()  # impatient: cancelled again while the attempts are stopping
    await settle()
    assert not task.done()
    await clock.run_for(0.01, 0.01)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [1, 1]
    assert len(asyncio.all_tasks()) == baseline


async def test_an_outer_timeout_cancels_the_first_attempt_and_the_hedge() -> None:
    baseline = len(asyncio.all_tasks())
    clock = FakeClock()
    backend = MockBackend("iris", default=Hang(), clock=clock)
    await backend.load()
    pipeline: Pipeline[InferenceRequest, InferenceResponse] = Pipeline(
        [
            TimeoutPolicy(TimeoutOptions(0.2), clock=clock, target="iris:1"),
            HedgePolicy(HedgeOptions(delay_s=0.05), clock=clock, target="iris:1"),
        ],
        backend.infer,
    )
    task = asyncio.create_task(pipeline(request(), CallContext.new()))
    await settle()
    await clock.run_for(0.25, 0.01)
    with pytest.raises(BackendTimeoutError, match="within 200 ms"):
        await task
    assert (backend.stats.calls, backend.stats.cancelled) == (2, 2)
    assert len(asyncio.all_tasks()) == baseline


# --- the adaptive delay ----------------------------------------------------------------------


class Latencies:
    """A handler whose first attempt of each call takes the next latency; hedges never answer."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.latencies: list[float] = []
        self.hedge_starts: list[float] = []
        self.t0 = 0.0

    async def __call__(self, req: str, ctx: CallContext) -> str:
        if ctx.annotations.setdefault("started", 0) > 0:
            self.hedge_starts.append(self.clock.monotonic() - self.t0)
            await asyncio.Event().wait()
        ctx.annotations["started"] += 1
        await self.clock.sleep(self.latencies.pop(0))
        return req


async def feed(policy: HedgePolicy[str, str], clock: FakeClock, latencies: list[float]) -> None:
    """Make one call per latency, one after another, each on the fake clock."""
    handler = Latencies(clock)
    handler.latencies = list(latencies)
    for _ in latencies:
        await call(policy, clock, handler)


async def call(policy: HedgePolicy[str, str], clock: FakeClock, handler: Latencies) -> None:
    handler.t0 = clock.monotonic()
    task = asyncio.create_task(policy("x", CallContext.new(), handler))
    await settle()
    while not task.done():
        await clock.run_for(0.001, 0.001)
    assert task.result() == "x"


async def test_the_delay_is_the_initial_one_until_enough_latencies_are_known() -> None:
    clock = FakeClock()
    options = HedgeOptions(initial_delay_s=0.1, min_samples=20, min_delay_s=0.001)
    policy: HedgePolicy[str, str] = HedgePolicy(options, clock=clock)
    assert policy.delay_s() == 0.1
    await feed(policy, clock, [0.01] * 19)
    assert policy.delay_s() == 0.1
    await feed(policy, clock, [0.01])
    assert policy.delay_s() == pytest.approx(0.01)


async def test_the_delay_follows_the_p95_of_recent_latencies() -> None:
    clock = FakeClock()
    options = HedgeOptions(initial_delay_s=1.0, min_delay_s=0.001, window_size=100)
    policy: HedgePolicy[str, str] = HedgePolicy(options, clock=clock)
    latencies = [ms / 1000 for ms in range(1, 101)]
    random.Random(5).shuffle(latencies)
    await feed(policy, clock, latencies)
    assert policy.delay_s() == pytest.approx(0.095)  # the 95th of 1..100 ms

    await feed(policy, clock, [0.2] * 100)  # the window keeps the last 100 only
    assert policy.delay_s() == pytest.approx(0.2)


async def test_the_learned_delay_is_the_one_a_slow_call_hedges_after() -> None:
    clock = FakeClock()
    events: list[object] = []
    options = HedgeOptions(initial_delay_s=1.0, min_delay_s=0.001, min_samples=10)
    policy: HedgePolicy[str, str] = HedgePolicy(options, clock=clock, on_event=events.append)
    await feed(policy, clock, [0.03] * 10)
    handler = Latencies(clock)
    handler.latencies = [0.5]
    await call(policy, clock, handler)
    assert handler.hedge_starts == [pytest.approx(0.03)]
    [started] = events
    assert isinstance(started, HedgeStarted)
    assert started.attempt == 2
    assert started.delay_s == pytest.approx(0.03)


async def test_the_latency_counted_is_the_callers_not_the_winning_attempts() -> None:
    # Every call's first attempt takes 0.3 s; hedges start at 0.1 s and answer after 0.05 s.
    clock = FakeClock()
    options = HedgeOptions(initial_delay_s=0.1, min_samples=5, window_size=5)
    policy: HedgePolicy[str, str] = HedgePolicy(options, clock=clock)

    async def handler(req: str, ctx: CallContext) -> str:
        hedge = ctx.annotations.setdefault("started", 0) > 0
        ctx.annotations["started"] += 1
        await clock.sleep(0.05 if hedge else 0.3)
        return req

    for _ in range(5):
        task = asyncio.create_task(policy("x", CallContext.new(), handler))
        await settle()
        while not task.done():
            await clock.run_for(0.001, 0.001)
    assert policy.delay_s() == pytest.approx(0.15)  # 0.1 s delay + 0.05 s hedge, not 0.05 s


async def test_the_observed_delay_has_a_floor() -> None:
    clock = FakeClock()
    options = HedgeOptions(min_delay_s=0.02, min_samples=5)
    policy: HedgePolicy[str, str] = HedgePolicy(options, clock=clock)
    await feed(policy, clock, [0.001] * 5)
    assert policy.delay_s() == 0.02


async def test_generic_over_request_and_response_types() -> None:
    policy: HedgePolicy[str, int] = HedgePolicy(clock=FakeClock())

    async def length(req: str, ctx: CallContext) -> int:
        return len(req)

    handler: Callable[[str, CallContext], Awaitable[int]] = length
    assert isinstance(policy, Policy)
    assert await policy("four", CallContext.new(), handler) == 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"delay_s": -0.1}, "delay_s: must be a number of seconds >= 0 or None"),
        ({"delay_s": math.inf}, "delay_s: must be a number of seconds >= 0 or None"),
        ({"min_delay_s": math.nan}, "min_delay_s: must be a number of seconds >= 0"),
        ({"initial_delay_s": -1.0}, "initial_delay_s: must be a number of seconds >= 0"),
        ({"max_hedges": 0}, "max_hedges: must be at least 1"),
        ({"quantile": 0.0}, r"quantile: must be in \(0, 1\]"),
        ({"quantile": 1.5}, r"quantile: must be in \(0, 1\]"),
        ({"window_size": 0}, "window_size: must be at least 1"),
        ({"window_size": 10, "min_samples": 11}, r"min_samples: must be between 1 and window_size"),
        ({"min_samples": 0}, "min_samples: must be between 1 and window_size"),
    ],
)
def test_options_refuse_bad_values(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        HedgeOptions(**fields)
