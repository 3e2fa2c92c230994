"""BulkheadPolicy: exact concurrency cap, bounded FIFO queue, bounded waits, no leaked slots."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from seawall.backends.mock import Fail, Hang, MockBackend, Respond
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError, BackendUnavailableError, OverloadedError
from seawall.pipeline import Pipeline
from seawall.policies.bulkhead import (
    BulkheadOptions,
    BulkheadPolicy,
    BulkheadRejected,
    BulkheadSnapshot,
)
from seawall.types import InferenceRequest, InferenceResponse, Tensor


def request(rid: str) -> InferenceRequest:
    return InferenceRequest(
        "iris", [Tensor.from_numpy("input-0", np.ones((1, 2), np.float32))], id=rid
    )


async def settle() -> None:
    """Let every task run until it blocks on the fake clock or a gate."""
    for _ in range(10):
        await asyncio.sleep(0)


class Harness:
    """A bulkhead in front of a MockBackend, both on one FakeClock, recording events."""

    def __init__(self, default: Any = None, **options: Any) -> None:
        self.clock = FakeClock()
        self.events: list[Any] = []
        self.backend = MockBackend(
            "iris",
            clock=self.clock,
            default=default or Respond(latency_s=1.0),
            record_requests=True,
        )
        self.policy: BulkheadPolicy[InferenceRequest, InferenceResponse] = BulkheadPolicy(
            BulkheadOptions(**options),
            clock=self.clock,
            on_event=self.events.append,
            target="iris:1",
        )

    async def load(self) -> Harness:
        await self.backend.load()
        return self

    def call(self, rid: str, ctx: CallContext | None = None) -> asyncio.Task[InferenceResponse]:
        return asyncio.create_task(
            self.policy(request(rid), ctx or CallContext.new(rid), self.backend.infer)
        )

    @property
    def admitted(self) -> list[str | None]:
        """Request ids in the order they reached the backend."""
        return [r.id for r in self.backend.stats.requests]

    async def advance(self, seconds: float) -> None:
        """Let new calls reach their first wait, then move time on and let them react."""
        await settle()
        self.clock.advance(seconds)
        await settle()


class Gated:
    """A `call_next` whose calls each wait on their own gate, so tests end them one at a time."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Future[str]] = {}
        self.admitted: list[str] = []

    async def __call__(self, request: str, ctx: CallContext) -> str:
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.gates[request] = gate
        self.admitted.append(request)
        try:
            return await gate
        finally:
            del self.gates[request]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_concurrent": 0}, "max_concurrent: must be at least 1, got 0"),
        ({"max_queue": -1}, "max_queue: must be 0 or more, got -1"),
        ({"max_wait_s": 0.0}, "max_wait_s: must be a positive number, got 0.0"),
        ({"max_wait_s": float("inf")}, "max_wait_s: must be a positive number, got inf"),
    ],
)
def test_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BulkheadOptions(**options)


def test_defaults() -> None:
    assert BulkheadOptions() == BulkheadOptions(max_concurrent=16, max_queue=32, max_wait_s=1.0)


async def test_never_more_calls_in_flight_than_the_cap_and_the_rest_wait_their_turn() -> None:
    h = await Harness(max_concurrent=4, max_queue=16, max_wait_s=10.0).load()
    tasks = [h.call(f"r{i}") for i in range(20)]
    await settle()
    assert (h.policy.in_flight, h.policy.waiting, h.backend.stats.in_flight) == (4, 16, 4)

    done_each_second = []
    for _ in range(5):
        await h.advance(1.0)
        done_each_second.append(sum(t.done() for t in tasks))

    assert done_each_second == [4, 8, 12, 16, 20]
    assert h.backend.stats.max_in_flight == 4
    assert all(t.result().id == f"r{i}" for i, t in enumerate(tasks))
    assert (h.policy.in_flight, h.policy.waiting, h.events) == (0, 0, [])


async def test_a_full_queue_is_refused_at_once_before_any_await() -> None:
    h = await Harness(max_concurrent=1, max_queue=1, max_wait_s=5.0).load()
    running, queued = h.call("a"), h.call("b")
    await settle()
    before = h.clock.monotonic()

    coro = h.policy(request("c"), CallContext.new("c"), h.backend.infer)
    with pytest.raises(OverloadedError) as info:
        coro.send(None)  # one step of the coroutine: it raised without suspending

    assert str(info.value) == "model 'iris:1': 1 calls in flight and 1 waiting (limits 1/1)"
    assert info.value.retry_after_s == 5.0  # no hold time measured yet: max_wait_s
    assert h.events == [BulkheadRejected("iris:1", in_flight=1, waiting=1, reason="queue full")]
    assert (h.clock.monotonic(), h.backend.stats.calls) == (before, 1)
    await h.advance(1.0)
    await h.advance(1.0)
    assert [t.result().id for t in (running, queued)] == ["a", "b"]


async def test_retry_after_estimates_the_queue_drain_time_capped_at_max_wait() -> None:
    h = await Harness(max_concurrent=2, max_queue=2, max_wait_s=10.0).load()
    first = [h.call(f"w{i}") for i in range(2)]
    await settle()
    await h.advance(1.0)  # both held a slot for 1 s: the hold-time average is 1 s
    assert all(t.done() for t in first)
    tasks = [h.call(f"r{i}") for i in range(4)]  # 2 run, 2 wait
    await settle()

    with pytest.raises(OverloadedError) as info:
        await h.policy(request("x"), CallContext.new(), h.backend.infer)

    assert info.value.retry_after_s == pytest.approx((2 + 1) * 1.0 / 2)
    await h.advance(1.0)
    await h.advance(1.0)
    assert all(t.done() for t in tasks)


async def test_slots_go_to_waiters_in_arrival_order() -> None:
    h = await Harness(max_concurrent=1, max_queue=5, max_wait_s=10.0).load()
    tasks = []
    for rid in "abcdef":
        tasks.append(h.call(rid))
        await settle()
    for _ in range(6):
        await h.advance(1.0)
    assert h.admitted == list("abcdef")
    assert [t.result().id for t in tasks] == list("abcdef")


async def test_a_newcomer_never_takes_a_slot_released_for_a_waiter() -> None:
    clock = FakeClock()
    policy: BulkheadPolicy[str, str] = BulkheadPolicy(BulkheadOptions(1, 2, 5.0), clock=clock)
    gated = Gated()
    release_a: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    a_is_returning: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def call_next(req: str, ctx: CallContext) -> str:
        if req != "a":
            return await gated(req, ctx)
        await release_a
        a_is_returning.set_result(None)  # wakes the newcomer before a's release wakes b
        return req

    async def newcomer() -> str:
        await a_is_returning
        return await policy("c", CallContext.new(), call_next)

    a = asyncio.create_task(policy("a", CallContext.new(), call_next))
    await settle()
    b = asyncio.create_task(policy("b", CallContext.new(), call_next))
    c = asyncio.create_task(newcomer())
    await settle()
    release_a.set_result(None)
    await settle()

    assert a.result() == "a"
    assert gated.admitted == ["b"]  # c arrived first after the release, yet b got the slot
    assert (policy.in_flight, policy.waiting) == (1, 1)
    gated.gates["b"].set_result("b")
    await settle()
    gated.gates["c"].set_result("c")
    assert (await b, await c) == ("b", "c")
    assert (policy.in_flight, policy.waiting) == (0, 0)


async def test_a_waiter_gives_up_after_max_wait() -> None:
    h = await Harness(Respond(latency_s=10.0), max_concurrent=1, max_queue=1, max_wait_s=0.5).load()
    running = h.call("a")
    await settle()
    waiter = h.call("b")
    await h.advance(0.499)
    assert not waiter.done()
    await h.advance(0.001)

    with pytest.raises(OverloadedError) as info:
        await waiter
    assert str(info.value) == (
        "model 'iris:1': no call slot came free within 0.5 s (1 in flight, 0 waiting; limits 1/1)"
    )
    assert info.value.retry_after_s == 0.5
    assert h.events == [BulkheadRejected("iris:1", 1, 0, "wait exceeded")]
    assert (h.policy.in_flight, h.policy.waiting, h.admitted) == (1, 0, ["a"])
    running.cancel()
    await settle()
    assert h.policy.in_flight == 0


async def test_the_deadline_cuts_the_wait_short_with_a_timeout() -> None:
    h = await Harness(Respond(latency_s=10.0), max_concurrent=1, max_queue=1, max_wait_s=5.0).load()
    running = h.call("a")
    await settle()
    waiter = h.call("b", CallContext.new("b", deadline=h.clock.monotonic() + 0.25))
    await h.advance(0.25)

    with pytest.raises(BackendTimeoutError, match=r"deadline passed after waiting 0\.25 s"):
        await waiter
    assert h.events == [BulkheadRejected("iris:1", 1, 0, "deadline")]
    running.cancel()
    await settle()


async def test_a_call_whose_deadline_has_passed_never_starts() -> None:
    h = await Harness().load()
    ctx = CallContext.new(deadline=h.clock.monotonic())
    with pytest.raises(BackendTimeoutError, match="before the call started"):
        await h.policy(request("a"), ctx, h.backend.infer)
    assert (h.backend.stats.calls, h.policy.in_flight) == (0, 0)


async def test_slots_come_back_after_success_failure_and_cancellation() -> None:
    h = await Harness(Hang(), max_concurrent=1, max_queue=0).load()
    h.backend.push(Fail(BackendUnavailableError("down"), latency_s=0.1), Respond(latency_s=0.1))

    failing = h.call("fail")
    await h.advance(0.1)
    with pytest.raises(BackendUnavailableError):
        await failing
    assert h.policy.in_flight == 0
    succeeding = h.call("ok")
    await h.advance(0.1)
    assert (await succeeding).id == "ok"
    assert h.policy.in_flight == 0
    hanging = h.call("hang")
    await settle()
    assert h.policy.in_flight == 1
    hanging.cancel()
    await settle()

    assert hanging.cancelled()
    assert (h.policy.in_flight, h.backend.stats.cancelled) == (0, 1)
    assert h.events == []


async def test_many_cancelled_waiters_leave_no_slot_queue_entry_or_timer_behind() -> None:
    baseline = len(asyncio.all_tasks())
    h = await Harness(Hang(), max_concurrent=3, max_queue=100, max_wait_s=60.0).load()
    running = [h.call(f"run{i}") for i in range(3)]
    waiters = [h.call(f"wait{i}") for i in range(100)]
    await settle()
    assert (h.policy.in_flight, h.policy.waiting, h.clock.sleepers) == (3, 100, 103)

    for task in waiters[::2]:  # every other waiter first, then the rest after a slot frees
        task.cancel()
    await settle()
    assert (h.policy.in_flight, h.policy.waiting) == (3, 50)
    running[0].cancel()
    await settle()
    assert h.admitted[-1] == "wait1"  # the oldest waiter still there
    for task in waiters[1::2]:
        task.cancel()
    for task in running[1:]:
        task.cancel()
    await settle()

    assert (h.policy.in_flight, h.policy.waiting, h.clock.sleepers) == (0, 0, 0)
    assert h.backend.stats.cancelled == 4
    fresh = [h.call(f"new{i}") for i in range(10)]
    await settle()
    assert (h.backend.stats.in_flight, h.policy.in_flight, h.policy.waiting) == (3, 3, 7)
    for task in fresh:
        task.cancel()
    await settle()
    assert len(asyncio.all_tasks()) == baseline
    assert h.backend.stats.max_in_flight == 3


@pytest.mark.parametrize("cancel_b", ["before the release", "after the slot reached it"])
async def test_a_waiter_cancelled_around_its_handoff_passes_the_slot_on(cancel_b: str) -> None:
    policy: BulkheadPolicy[str, str] = BulkheadPolicy(BulkheadOptions(1, 2), clock=FakeClock())
    gated = Gated()
    a, b, c = (asyncio.create_task(policy(r, CallContext.new(), gated)) for r in "abc")
    await settle()
    assert (gated.admitted, policy.waiting) == (["a"], 2)

    gated.gates["a"].set_result("a")
    if cancel_b == "before the release":
        b.cancel()
    else:
        await asyncio.sleep(0)  # a releases and hands its slot to b, which has not resumed
        assert (policy.in_flight, policy.waiting) == (1, 1)
        b.cancel()
    await settle()

    assert b.cancelled()
    assert gated.admitted == ["a", "c"]
    assert (policy.in_flight, policy.waiting) == (1, 0)
    gated.gates["c"].set_result("c")
    assert (await a, await c) == ("a", "c")
    assert policy.in_flight == 0


async def test_a_saturated_model_does_not_slow_another() -> None:
    clock = FakeClock()
    slow = MockBackend("slow", clock=clock, default=Hang())
    fast = MockBackend("fast", clock=clock, default=Respond(latency_s=0.01))
    await slow.load()
    await fast.load()
    options = BulkheadOptions(max_concurrent=2, max_queue=2, max_wait_s=5.0)
    Bulkhead = BulkheadPolicy[InferenceRequest, InferenceResponse]
    slow_pipe = Pipeline([Bulkhead(options, clock=clock, target="slow:1")], slow.infer)
    fast_pipe = Pipeline([Bulkhead(options, clock=clock, target="fast:1")], fast.infer)
    stuck = [asyncio.create_task(slow_pipe(request(f"s{i}"), CallContext.new())) for i in range(4)]
    await settle()
    with pytest.raises(OverloadedError, match="model 'slow:1'"):
        await slow_pipe(request("s5"), CallContext.new())

    started = clock.monotonic()
    answers = [
        asyncio.create_task(fast_pipe(request(f"f{i}"), CallContext.new())) for i in range(2)
    ]
    await settle()
    clock.advance(0.01)
    await settle()

    assert [t.result().id for t in answers] == ["f0", "f1"]  # answered in its own 10 ms
    assert clock.monotonic() - started == pytest.approx(0.01)
    for task in stuck:
        task.cancel()
    await settle()


async def test_occupancy_is_visible_for_metrics() -> None:
    h = await Harness(Hang(), max_concurrent=2, max_queue=3).load()
    tasks = [h.call(f"r{i}") for i in range(4)]
    await settle()
    assert h.policy.snapshot() == BulkheadSnapshot("iris:1", 2, 2, 2, 3)
    assert repr(h.policy) == "BulkheadPolicy('iris:1', in_flight=2/2, waiting=2/3)"
    assert BulkheadPolicy.name == "bulkhead"
    assert repr(Pipeline([h.policy], h.backend.infer)) == "Pipeline(bulkhead → mock:iris)"
    for task in tasks:
        task.cancel()
    await settle()
    assert h.policy.snapshot() == BulkheadSnapshot("iris:1", 0, 0, 2, 3)


async def test_without_a_target_messages_still_read_as_sentences() -> None:
    policy: BulkheadPolicy[str, str] = BulkheadPolicy(BulkheadOptions(1, 0), clock=FakeClock())
    gated = Gated()
    running = asyncio.create_task(policy("a", CallContext.new(), gated))
    await settle()
    with pytest.raises(OverloadedError, match=r"^the model: 1 calls in flight and 0 waiting"):
        await policy("b", CallContext.new(), gated)
    running.cancel()
    await settle()


# --- stateful test against a reference model --------------------------------------------------

_SLOTS, _QUEUE, _WAIT_S = 2, 3, 1.0


class BulkheadMachine(RuleBasedStateMachine):
    """Calls arrive, complete, fail, are cancelled and time out in any order.

    The reference model: a list of running calls and a FIFO list of waiters with the time each
    gives up. A newcomer runs if a slot is free and nobody waits, queues if there is room, and
    is refused otherwise; a freed slot goes to the oldest waiter.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.events: list[Any] = []
        self.policy: BulkheadPolicy[int, int] = BulkheadPolicy(
            BulkheadOptions(_SLOTS, _QUEUE, _WAIT_S), clock=self.clock, on_event=self.events.append
        )
        self.gates: dict[int, asyncio.Future[int]] = {}
        self.admitted: list[int] = []
        self.tasks: dict[int, asyncio.Task[int]] = {}
        self.outcomes: dict[int, str] = {}
        # the reference model
        self.running: list[int] = []
        self.queue: list[tuple[int, float]] = []
        self.expected_admitted: list[int] = []
        self.expected_outcomes: dict[int, str] = {}

    def teardown(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.loop.run_until_complete(_drain(list(self.tasks.values())))
        self.loop.close()

    async def _call_next(self, call: int, ctx: CallContext) -> int:
        gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.gates[call] = gate
        self.admitted.append(call)
        try:
            return await gate
        finally:
            del self.gates[call]

    def _settle(self) -> None:
        self.loop.run_until_complete(settle())
        for call, task in self.tasks.items():
            if task.done() and call not in self.outcomes:
                self.outcomes[call] = _outcome(task)

    def _promote(self) -> None:
        while len(self.running) < _SLOTS and self.queue:
            call, _ = self.queue.pop(0)
            self.running.append(call)
            self.expected_admitted.append(call)

    def _start(self) -> int:
        call = len(self.tasks)
        coro = self.policy(call, CallContext.new(), self._call_next)
        self.tasks[call] = self.loop.create_task(coro)
        return call

    def _arrived(self, call: int) -> None:
        if len(self.running) < _SLOTS and not self.queue:
            self.running.append(call)
            self.expected_admitted.append(call)
        elif len(self.queue) < _QUEUE:
            self.queue.append((call, self.clock.monotonic() + _WAIT_S))
        else:
            self.expected_outcomes[call] = "queue full"

    @rule()
    def arrive(self) -> None:
        call = self._start()
        self._settle()
        self._arrived(call)

    def _finish(self, call: int, succeeds: bool) -> None:
        gate = self.gates[call]
        gate.set_result(call) if succeeds else gate.set_exception(BackendUnavailableError("x"))
        self.running.remove(call)
        self.expected_outcomes[call] = "ok" if succeeds else "failed"

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data(), succeeds=st.booleans())
    def complete(self, data: st.DataObject, succeeds: bool) -> None:
        self._finish(data.draw(st.sampled_from(self.running)), succeeds)
        self._settle()
        self._promote()

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data())
    def complete_as_another_arrives(self, data: st.DataObject) -> None:
        """The newcomer runs before the waiter the slot was handed to resumes: no barging."""
        self._finish(data.draw(st.sampled_from(self.running)), succeeds=True)
        call = self._start()
        self._settle()
        self._promote()
        self._arrived(call)

    @precondition(lambda self: bool(self.running and self.queue))
    @rule(data=st.data(), after_handoff=st.booleans())
    def complete_as_a_waiter_is_cancelled(self, data: st.DataObject, after_handoff: bool) -> None:
        """A waiter cancelled just before, or just after, a slot was handed to it."""
        call = data.draw(st.sampled_from(self.running))
        waiter = self.queue[0][0] if after_handoff else data.draw(st.sampled_from(self.queue))[0]

        async def finish_then_cancel() -> None:
            self._finish(call, succeeds=True)
            if after_handoff:
                await asyncio.sleep(0)  # the call releases; the slot reaches the waiter
                assert self.policy.in_flight == len(self.running) + 1
                assert waiter not in self.admitted  # it has not resumed yet
            self.tasks[waiter].cancel()

        self.loop.run_until_complete(finish_then_cancel())
        self._settle()
        self.expected_outcomes[waiter] = "cancelled"
        self.queue = [(c, t) for c, t in self.queue if c != waiter]
        self._promote()

    @precondition(lambda self: bool(self.running or self.queue))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(self.running + [c for c, _ in self.queue]))
        self.tasks[call].cancel()
        self._settle()
        self.expected_outcomes[call] = "cancelled"
        if call in self.running:
            self.running.remove(call)
            self._promote()
        else:
            self.queue = [(c, t) for c, t in self.queue if c != call]

    @rule(quarters=st.integers(min_value=1, max_value=4))
    def advance(self, quarters: int) -> None:
        self.clock.advance(quarters * 0.25)
        self._settle()
        now = self.clock.monotonic()
        for call, gives_up_at in self.queue:
            if gives_up_at <= now:
                self.expected_outcomes[call] = "wait exceeded"
        self.queue = [(c, t) for c, t in self.queue if t > now]

    @invariant()
    def matches_the_reference_model(self) -> None:
        assert self.policy.in_flight == len(self.running) <= _SLOTS
        assert self.policy.waiting == len(self.queue) <= _QUEUE
        assert sorted(self.gates) == sorted(self.running)
        assert self.admitted == self.expected_admitted  # FIFO: admitted in the model's order
        assert self.outcomes == self.expected_outcomes
        reasons = [e.reason for e in self.events]
        expected = [
            o for o in self.expected_outcomes.values() if o in ("queue full", "wait exceeded")
        ]
        assert sorted(reasons) == sorted(expected)


async def _drain(tasks: list[asyncio.Task[int]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def _outcome(task: asyncio.Task[int]) -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is None:
        return "ok"
    if isinstance(error, OverloadedError):
        assert error.retry_after_s is not None
        return "wait exceeded" if "within" in str(error) else "queue full"
    assert isinstance(error, BackendUnavailableError)
    return "failed"


TestBulkheadMachine = BulkheadMachine.TestCase
TestBulkheadMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
