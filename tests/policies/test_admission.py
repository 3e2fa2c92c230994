"""AdmissionPolicy: global limit, class shares, priority queue, delay-based shedding, no leaks."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from seawall.backends.mock import Fail, Hang, MockBackend, Respond
from seawall.clock import FakeClock
from seawall.context import CallContext, Priority
from seawall.errors import BackendTimeoutError, BackendUnavailableError, OverloadedError
from seawall.pipeline import Pipeline
from seawall.policies.admission import (
    AdmissionOptions,
    AdmissionPolicy,
    AdmissionSnapshot,
    CallShed,
    ClassCapacity,
    ServiceTimeAverage,
)
from seawall.types import InferenceRequest, InferenceResponse, Tensor

CRITICAL, NORMAL, BATCH = Priority.CRITICAL, Priority.NORMAL, Priority.BATCH
FLAT = ClassCapacity(1.0, 1.0, 1.0)  # every class may fill every slot: isolates the queue order


def request(rid: str, model: str = "iris") -> InferenceRequest:
    data = np.ones((1, 2), np.float32)
    return InferenceRequest(model, [Tensor.from_numpy("input-0", data)], id=rid)


def ctx(priority: Priority = NORMAL, deadline: float | None = None) -> CallContext:
    return CallContext.new(priority=priority, deadline=deadline)


async def settle() -> None:
    """Let every task run until it blocks on the fake clock or a gate."""
    for _ in range(10):
        await asyncio.sleep(0)


class Harness:
    """The policy in front of a MockBackend, both on one FakeClock, recording events."""

    def __init__(self, default: Any = None, **options: Any) -> None:
        self.clock = FakeClock()
        self.events: list[Any] = []
        self.backend = MockBackend(
            "iris", clock=self.clock, default=default or Hang(), record_requests=True
        )
        self.policy: AdmissionPolicy[InferenceRequest, InferenceResponse] = AdmissionPolicy(
            AdmissionOptions(**options),
            clock=self.clock,
            on_event=self.events.append,
            target="gateway",
        )

    async def load(self) -> Harness:
        await self.backend.load()
        return self

    def call(
        self, rid: str, priority: Priority = NORMAL, deadline: float | None = None
    ) -> asyncio.Task[InferenceResponse]:
        coro = self.policy(request(rid), ctx(priority, deadline), self.backend.infer)
        return asyncio.create_task(coro)

    async def prime(self, latency_s: float, calls: int) -> None:
        """Complete `calls` calls of `latency_s` each, so the service-time average is known."""
        self.backend.push(*[Respond(latency_s=latency_s)] * calls)
        tasks = [self.call(f"prime{i}", CRITICAL) for i in range(calls)]
        await self.advance(latency_s)
        assert all(t.done() for t in tasks)
        self.backend.stats.requests.clear()

    @property
    def admitted(self) -> list[str | None]:
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

    async def finish(self, name: str) -> None:
        self.gates[name].set_result(name)
        await settle()


def gated_policy(**options: Any) -> tuple[AdmissionPolicy[str, str], Gated, list[CallShed]]:
    events: list[Any] = []
    policy: AdmissionPolicy[str, str] = AdmissionPolicy(
        AdmissionOptions(**options), clock=FakeClock(), on_event=events.append
    )
    return policy, Gated(), events


def start(policy: AdmissionPolicy[str, str], gated: Gated, name: str, p: Priority) -> Any:
    return asyncio.create_task(policy(name, ctx(p), gated))


async def cancel_all(tasks: list[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_in_flight": 0}, "max_in_flight: must be at least 1, got 0"),
        ({"max_queue": -1}, "max_queue: must be 0 or more, got -1"),
        ({"target_queue_delay_s": -0.1}, "target_queue_delay_s: must be 0 or more"),
        ({"target_queue_delay_s": float("nan")}, "target_queue_delay_s: must be 0 or more"),
        (
            {"target_queue_delay_s": 2.0, "max_queue_delay_s": 1.0},
            r"max_queue_delay_s: must be positive and at least target_queue_delay_s \(2.0\)",
        ),
        ({"max_queue_delay_s": float("inf")}, "max_queue_delay_s: must be positive"),
        ({"ewma_alpha": 0.0}, r"ewma_alpha: must be in \(0, 1\], got 0.0"),
        ({"ewma_alpha": 1.5}, r"ewma_alpha: must be in \(0, 1\], got 1.5"),
    ],
)
def test_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdmissionOptions(**options)


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ({"batch": 0.0}, r"class_capacity.batch: must be in \(0, 1\], got 0.0"),
        ({"critical": 1.2}, r"class_capacity.critical: must be in \(0, 1\], got 1.2"),
        ({"normal": 0.5, "batch": 0.7}, "a less important class may not get a larger share"),
    ],
)
def test_class_shares_are_checked(shares: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassCapacity(**shares)


def test_defaults_and_the_slots_each_class_may_fill() -> None:
    options = AdmissionOptions()
    assert (options.max_in_flight, options.max_queue) == (128, 256)
    assert (options.target_queue_delay_s, options.max_queue_delay_s) == (0.1, 1.0)
    assert options.class_capacity == ClassCapacity(critical=1.0, normal=0.9, batch=0.6)
    assert options.ewma_alpha == 0.2
    ten: AdmissionPolicy[str, str] = AdmissionPolicy(AdmissionOptions(max_in_flight=10))
    assert [ten.limit(p) for p in Priority] == [10, 9, 6]
    hundred = AdmissionPolicy[str, str](
        AdmissionOptions(max_in_flight=100, class_capacity=ClassCapacity(1.0, 0.29, 0.07))
    )
    assert [hundred.limit(p) for p in Priority] == [100, 29, 7]  # 0.29 * 100 is 28.999...
    one: AdmissionPolicy[str, str] = AdmissionPolicy(AdmissionOptions(max_in_flight=1))
    assert [one.limit(p) for p in Priority] == [1, 1, 1]  # every class keeps a slot


# --- the limit and the queue ------------------------------------------------------------------


async def test_never_more_calls_in_flight_than_the_global_limit() -> None:
    h = await Harness(
        Respond(latency_s=1.0), max_in_flight=4, max_queue=16, max_queue_delay_s=10.0
    ).load()
    tasks = [h.call(f"r{i}", CRITICAL) for i in range(20)]
    await settle()
    assert (h.policy.in_flight, h.policy.waiting) == (4, 16)

    done_each_second = []
    for _ in range(5):
        await h.advance(1.0)
        done_each_second.append(sum(t.done() for t in tasks))

    assert done_each_second == [4, 8, 12, 16, 20]
    assert h.backend.stats.max_in_flight == 4
    assert h.admitted == [f"r{i}" for i in range(20)]
    assert (h.policy.in_flight, h.policy.waiting, h.events) == (0, 0, [])


async def test_each_class_fills_only_its_share_of_the_slots() -> None:
    h = await Harness(max_in_flight=10, max_queue=50, target_queue_delay_s=1.0).load()
    batch = [h.call(f"b{i}", BATCH) for i in range(8)]
    await settle()
    assert (h.backend.stats.in_flight, h.policy.waiting) == (6, 2)
    normal = [h.call(f"n{i}", NORMAL) for i in range(4)]  # passes the queued batch calls
    await settle()
    assert (h.backend.stats.in_flight, h.policy.waiting) == (9, 3)
    critical = [h.call(f"c{i}", CRITICAL) for i in range(2)]
    await settle()
    assert (h.backend.stats.in_flight, h.policy.waiting) == (10, 4)
    assert h.policy.snapshot().waiting_by_priority == (1, 1, 2)
    assert h.backend.stats.max_in_flight == 10
    await cancel_all([*batch, *normal, *critical])
    assert (h.policy.in_flight, h.policy.waiting) == (0, 0)


async def test_the_queue_is_served_most_important_first_then_in_arrival_order() -> None:
    policy, gated, _ = gated_policy(max_in_flight=1, max_queue=10, class_capacity=FLAT)
    tasks = [start(policy, gated, "x", CRITICAL)]
    await settle()
    for name, priority in [("b1", BATCH), ("n1", NORMAL), ("b2", BATCH), ("c1", CRITICAL)]:
        tasks.append(start(policy, gated, name, priority))
    tasks.append(start(policy, gated, "n2", NORMAL))
    await settle()

    for _ in range(6):
        await gated.finish(gated.admitted[-1])

    assert gated.admitted == ["x", "c1", "n1", "n2", "b1", "b2"]
    assert [t.result() for t in tasks] == ["x", "b1", "n1", "b2", "c1", "n2"]
    assert (policy.in_flight, policy.waiting) == (0, 0)


async def test_a_full_queue_evicts_the_newest_least_important_waiter() -> None:
    policy, gated, events = gated_policy(max_in_flight=1, max_queue=2, class_capacity=FLAT)
    running = start(policy, gated, "x", CRITICAL)
    b1, b2 = start(policy, gated, "b1", BATCH), start(policy, gated, "b2", BATCH)
    await settle()

    n1 = start(policy, gated, "n1", NORMAL)
    await settle()
    with pytest.raises(OverloadedError) as info:
        await b2
    assert str(info.value) == (
        "the gateway is overloaded: a batch call was evicted from the queue by a normal call "
        "(1 in flight, 1 waiting; limits 1/2)"
    )
    assert info.value.retry_after_s == 1.0  # no service time yet: max_queue_delay_s
    assert events == [CallShed("", BATCH, "evicted", 1, 1, None)]

    with pytest.raises(OverloadedError, match="a batch call found the queue full"):
        await policy("b3", ctx(BATCH), gated)  # nothing less important to evict
    c1 = start(policy, gated, "c1", CRITICAL)
    await settle()
    assert b1.done()  # the last batch call made room for the critical one
    with pytest.raises(OverloadedError, match="a normal call found the queue full"):
        await policy("n2", ctx(NORMAL), gated)
    assert [(e.priority, e.reason) for e in events] == [
        (BATCH, "evicted"),
        (BATCH, "queue full"),
        (BATCH, "evicted"),
        (NORMAL, "queue full"),
    ]

    for name in ("x", "c1", "n1"):
        await gated.finish(name)
    assert [await t for t in (running, c1, n1)] == ["x", "c1", "n1"]
    assert (policy.in_flight, policy.waiting) == (0, 0)


async def test_a_queued_call_gives_up_after_max_queue_delay() -> None:
    h = await Harness(max_in_flight=1, max_queue=4, max_queue_delay_s=0.5).load()
    running = h.call("x", CRITICAL)
    waiter = h.call("w", NORMAL)
    await h.advance(0.499)
    assert not waiter.done()
    await h.advance(0.001)

    with pytest.raises(OverloadedError) as info:
        await waiter
    assert str(info.value) == (
        "'gateway' is overloaded: a normal call was not admitted within 0.5 s "
        "(1 in flight, 0 waiting; limits 1/4)"
    )
    assert h.events == [CallShed("gateway", NORMAL, "wait exceeded", 1, 0, None)]
    assert (h.policy.in_flight, h.policy.waiting, h.clock.sleepers) == (1, 0, 1)
    await cancel_all([running])


async def test_the_deadline_cuts_the_wait_short_with_a_timeout() -> None:
    h = await Harness(max_in_flight=1, max_queue=4, max_queue_delay_s=5.0).load()
    running = h.call("x", CRITICAL)
    await settle()
    waiter = h.call("w", NORMAL, deadline=h.clock.monotonic() + 0.25)
    await h.advance(0.25)

    with pytest.raises(BackendTimeoutError, match=r"deadline passed after 0\.25 s waiting"):
        await waiter
    assert [e.reason for e in h.events] == ["deadline"]
    await cancel_all([running])


async def test_a_call_whose_deadline_has_passed_never_starts() -> None:
    h = await Harness().load()
    with pytest.raises(BackendTimeoutError, match="before the call started"):
        await h.policy(request("a"), ctx(deadline=h.clock.monotonic()), h.backend.infer)
    assert (h.backend.stats.calls, h.policy.in_flight) == (0, 0)


async def test_slots_come_back_after_success_failure_and_cancellation() -> None:
    h = await Harness(max_in_flight=1, max_queue=0).load()
    h.backend.push(Fail(BackendUnavailableError("down"), latency_s=0.1), Respond(latency_s=0.1))
    failing = h.call("fail")
    await h.advance(0.1)
    with pytest.raises(BackendUnavailableError):
        await failing
    succeeding = h.call("ok")
    await h.advance(0.1)
    assert (await succeeding).id == "ok"
    hanging = h.call("hang")
    await settle()
    assert h.policy.in_flight == 1
    await cancel_all([hanging])
    assert (h.policy.in_flight, h.backend.stats.cancelled, h.events) == (0, 1, [])
    assert h.policy.service_time.samples == 3  # failures and cancellations held a slot too


async def test_many_cancelled_waiters_leave_no_slot_queue_entry_or_timer_behind() -> None:
    baseline = len(asyncio.all_tasks())
    h = await Harness(max_in_flight=3, max_queue=120, max_queue_delay_s=60.0).load()
    running = [h.call(f"run{i}", CRITICAL) for i in range(3)]
    waiters = [h.call(f"w{i}", Priority(i % 3)) for i in range(120)]
    await settle()
    assert (h.policy.in_flight, h.policy.waiting, h.clock.sleepers) == (3, 120, 123)

    await cancel_all(waiters[::2])
    assert (h.policy.in_flight, h.policy.waiting) == (3, 60)
    await cancel_all(running[:1])
    assert h.admitted[-1] == "w3"  # the oldest critical waiter still there
    await cancel_all([*waiters[1::2], *running[1:]])

    assert (h.policy.in_flight, h.policy.waiting, h.clock.sleepers) == (0, 0, 0)
    fresh = [h.call(f"new{i}", CRITICAL) for i in range(10)]
    await settle()
    assert (h.backend.stats.in_flight, h.policy.in_flight, h.policy.waiting) == (3, 3, 7)
    await cancel_all(fresh)
    assert len(asyncio.all_tasks()) == baseline
    assert h.backend.stats.max_in_flight == 3


@pytest.mark.parametrize("cancel_b", ["before the release", "after the slot reached it"])
async def test_a_waiter_cancelled_around_its_admission_passes_the_slot_on(cancel_b: str) -> None:
    policy, gated, _ = gated_policy(max_in_flight=1, max_queue=4)
    a, b, c = (start(policy, gated, name, NORMAL) for name in "abc")
    await settle()
    gated.gates["a"].set_result("a")
    if cancel_b == "after the slot reached it":
        await asyncio.sleep(0)  # a releases and admits b, which has not resumed yet
        assert (policy.in_flight, policy.waiting) == (1, 1)
    b.cancel()
    await settle()

    assert b.cancelled()
    assert (gated.admitted, policy.in_flight, policy.waiting) == (["a", "c"], 1, 0)
    await gated.finish("c")
    assert (await a, await c, policy.in_flight) == ("a", "c", 0)


async def test_one_instance_limits_every_model_together() -> None:
    clock = FakeClock()
    iris, wine = (MockBackend(m, clock=clock, default=Hang()) for m in ("iris", "wine"))
    await iris.load()
    await wine.load()
    shared: AdmissionPolicy[InferenceRequest, InferenceResponse] = AdmissionPolicy(
        AdmissionOptions(max_in_flight=4, max_queue=0), clock=clock
    )
    to_iris = Pipeline([shared], iris.infer, name="iris")
    to_wine = Pipeline([shared], wine.infer, name="wine")
    tasks = [asyncio.create_task(to_iris(request(f"i{i}"), ctx(CRITICAL))) for i in range(3)]
    tasks.append(asyncio.create_task(to_wine(request("w0", "wine"), ctx(CRITICAL))))
    await settle()

    with pytest.raises(OverloadedError, match="4 in flight"):
        await to_wine(request("w1", "wine"), ctx(CRITICAL))
    assert (iris.stats.in_flight, wine.stats.in_flight, shared.in_flight) == (3, 1, 4)
    await cancel_all(tasks)


# --- shedding by estimated queueing delay -----------------------------------------------------


async def test_a_newcomer_that_would_wait_too_long_is_refused_at_once_before_any_await() -> None:
    h = await Harness(max_in_flight=2, max_queue=10, target_queue_delay_s=0.6).load()
    await h.prime(latency_s=1.0, calls=2)  # each slot frees about once a second
    assert h.policy.service_time.value == 1.0
    running = [h.call(f"r{i}", CRITICAL) for i in range(2)]
    first = h.call("w1", NORMAL)  # 1 * 1.0 / 2 = 0.5 s away: may wait
    await settle()
    assert (h.policy.in_flight, h.policy.waiting) == (2, 1)
    sleepers, calls, now = h.clock.sleepers, h.backend.stats.calls, h.clock.monotonic()

    coro = h.policy(request("w2"), ctx(NORMAL), h.backend.infer)
    with pytest.raises(OverloadedError) as info:
        coro.send(None)  # one step of the coroutine: refused without suspending

    assert str(info.value) == (
        "'gateway' is overloaded: a normal call would wait about 1 s, over the target of 0.6 s "
        "(2 in flight, 1 waiting; limits 2/10)"
    )
    assert info.value.retry_after_s == 1.0
    assert h.events == [CallShed("gateway", NORMAL, "queue delay", 2, 1, 1.0)]
    assert (h.clock.sleepers, h.backend.stats.calls, h.clock.monotonic()) == (sleepers, calls, now)
    assert h.policy.waiting == 1
    critical = h.call("c1", CRITICAL)  # only critical waiters count as ahead of it: 0.5 s
    await settle()
    assert (h.policy.waiting, len(h.events)) == (2, 1)
    await cancel_all([*running, first, critical])


async def test_under_the_same_overload_batch_is_shed_before_normal_before_critical() -> None:
    h = await Harness(max_in_flight=10, max_queue=100, target_queue_delay_s=0.45).load()
    await h.prime(latency_s=1.0, calls=10)  # a queued call waits about 0.1 s per call ahead
    running = [h.call(f"r{i}", CRITICAL) for i in range(10)]
    await settle()

    arrivals: list[tuple[Priority, bool]] = []
    queued = []
    for round_ in range(5):
        for priority in (BATCH, NORMAL, CRITICAL):
            try:
                coro = h.policy(request(f"{priority.name}{round_}"), ctx(priority), h.backend.infer)
                task = asyncio.create_task(coro)
                await settle()
                if task.done():
                    task.result()
                queued.append(task)
                arrivals.append((priority, False))
            except OverloadedError:
                arrivals.append((priority, True))

    def first_shed(p: Priority) -> int:
        return next(i for i, (q, shed) in enumerate(arrivals) if q is p and shed)

    assert first_shed(BATCH) < first_shed(NORMAL) < first_shed(CRITICAL)
    assert h.policy.snapshot().waiting_by_priority == (4, 2, 2)
    assert all(e.reason == "queue delay" and (e.estimated_delay_s or 0) >= 0.5 for e in h.events)
    await cancel_all([*running, *queued])


async def test_with_no_completed_call_only_the_queue_bounds_apply() -> None:
    h = await Harness(max_in_flight=1, max_queue=3, target_queue_delay_s=0.0).load()
    tasks = [h.call(f"r{i}") for i in range(4)]
    await settle()
    assert (h.policy.estimated_delay_s(NORMAL), h.policy.waiting) == (None, 3)
    with pytest.raises(OverloadedError, match="found the queue full"):
        await h.policy(request("x"), ctx(), h.backend.infer)
    await cancel_all(tasks)


# --- the service-time estimator ---------------------------------------------------------------


def test_the_moving_average_is_seeded_by_the_first_sample_and_converges() -> None:
    assert ServiceTimeAverage().value is None
    average = ServiceTimeAverage(alpha=0.2)
    average.add(0.1)
    assert average.value == 0.1
    for _ in range(9):
        average.add(0.1)
    assert average.value == pytest.approx(0.1)
    history = []
    for _ in range(20):
        average.add(1.0)
        history.append(average.value)

    assert history == sorted(history)  # moves toward the new level without overshooting
    assert history[2] < 0.6  # three samples do not swing it
    assert abs(history[13] - 1.0) < 0.05  # 0.9 * 0.8**14 = 0.040
    assert average.samples == 30
    assert average.value == pytest.approx(1.0, abs=0.011)


@given(samples=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=50), alpha=st.floats(0.01, 1.0))
def test_the_moving_average_stays_within_the_samples(samples: list[float], alpha: float) -> None:
    average = ServiceTimeAverage(alpha)
    for sample in samples:
        average.add(sample)
    assert average.value is not None
    assert min(samples) - 1e-9 <= average.value <= max(samples) + 1e-9
    if alpha == 1.0:
        assert average.value == pytest.approx(samples[-1])


async def test_the_policy_learns_how_long_calls_hold_a_slot() -> None:
    h = await Harness(max_in_flight=1, max_queue=0).load()
    await h.prime(latency_s=0.1, calls=1)
    for _ in range(19):
        await h.prime(latency_s=1.0, calls=1)
    assert h.policy.service_time.samples == 20
    assert h.policy.snapshot().service_time_s == pytest.approx(1.0, abs=0.02)
    assert h.policy.estimated_delay_s(BATCH) == pytest.approx(1.0, abs=0.02)


async def test_occupancy_is_visible_for_metrics() -> None:
    h = await Harness(max_in_flight=2, max_queue=3, class_capacity=FLAT).load()
    tasks = [h.call("c", CRITICAL), h.call("n", NORMAL), h.call("b", BATCH), h.call("b2", BATCH)]
    await settle()
    assert h.policy.snapshot() == AdmissionSnapshot("gateway", 2, 2, (0, 0, 2), 2, 3, None)
    assert repr(h.policy) == "AdmissionPolicy('gateway', in_flight=2/2, waiting=2/3)"
    assert repr(Pipeline([h.policy], h.backend.infer)) == "Pipeline(admission → mock:iris)"
    await cancel_all(tasks)
    assert (h.policy.in_flight, h.policy.waiting) == (0, 0)


# --- stateful test against a reference model --------------------------------------------------

_N, _QUEUE, _TARGET_S, _MAX_DELAY_S, _ALPHA = 3, 3, 0.5, 1.0, 0.5
# Critical and normal share every slot, so which of them a freed slot goes to is up to the queue
# order; batch calls get one slot.
_SHARES = ClassCapacity(critical=1.0, normal=1.0, batch=0.34)
_LIMITS = {CRITICAL: 3, NORMAL: 3, BATCH: 1}


class AdmissionMachine(RuleBasedStateMachine):
    """Calls of every class arrive, complete, are cancelled and time out in any order.

    The reference model: running calls, one FIFO list per class, and the service-time average
    recomputed from the times the model admitted and finished calls. It decides admission,
    shedding (estimate, full queue, eviction) and which waiter a freed slot goes to.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        options = AdmissionOptions(_N, _QUEUE, _TARGET_S, _MAX_DELAY_S, _SHARES, _ALPHA)
        self.policy: AdmissionPolicy[int, int] = AdmissionPolicy(options, clock=self.clock)
        self.gates: dict[int, asyncio.Future[int]] = {}
        self.admitted: list[int] = []
        self.tasks: dict[int, asyncio.Task[int]] = {}
        self.outcomes: dict[int, str] = {}
        # the reference model
        self.running: dict[int, float] = {}  # call -> when it was admitted
        self.queues: dict[Priority, list[tuple[int, float]]] = {p: [] for p in Priority}
        self.service_s: float | None = None
        self.expected_admitted: list[int] = []
        self.expected_outcomes: dict[int, str] = {}
        self.queued: set[int] = set()

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

    def _admit(self, call: int) -> None:
        self.running[call] = self.clock.monotonic()
        self.expected_admitted.append(call)

    def _waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def _arrived(self, call: int, priority: Priority) -> None:
        ahead = sum(len(self.queues[p]) for p in Priority if p <= priority)
        if len(self.running) < _LIMITS[priority] and not ahead:
            self._admit(call)
            return
        service_s = self.service_s
        if service_s is not None and (ahead + 1) * service_s / _N > _TARGET_S:
            self.expected_outcomes[call] = "queue delay"
            return
        if self._waiting() >= _QUEUE:
            victims = [p for p in Priority if p > priority and self.queues[p]]
            if not victims:
                self.expected_outcomes[call] = "queue full"
                return
            victim, _ = self.queues[max(victims)].pop()
            self.expected_outcomes[victim] = "evicted"
        self.queues[priority].append((call, self.clock.monotonic() + _MAX_DELAY_S))
        self.queued.add(call)

    def _release(self, call: int, *, ran: bool = True) -> None:
        held_s = self.clock.monotonic() - self.running.pop(call)
        if ran:  # a call that gave up before it resumed never held the slot: no sample
            last = self.service_s
            self.service_s = held_s if last is None else last + _ALPHA * (held_s - last)
        for priority in Priority:
            queue = self.queues[priority]
            while queue and len(self.running) < _LIMITS[priority]:
                self._admit(queue.pop(0)[0])

    def _start(self, priority: Priority) -> int:
        call = len(self.tasks)
        coro = self.policy(call, CallContext.new(priority=priority), self._call_next)
        self.tasks[call] = self.loop.create_task(coro)
        return call

    @rule(priority=st.sampled_from(Priority))
    def arrive(self, priority: Priority) -> None:
        call = self._start(priority)
        self._settle()
        self._arrived(call, priority)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data(), succeeds=st.booleans())
    def complete(self, data: st.DataObject, succeeds: bool) -> None:
        call = data.draw(st.sampled_from(sorted(self.running)))
        gate = self.gates[call]
        gate.set_result(call) if succeeds else gate.set_exception(BackendUnavailableError("x"))
        self._settle()
        self.expected_outcomes[call] = "ok" if succeeds else "failed"
        self._release(call)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data(), priority=st.sampled_from(Priority))
    def complete_as_another_arrives(self, data: st.DataObject, priority: Priority) -> None:
        """The newcomer runs before the waiter admitted in its place resumes: no barging."""
        call = data.draw(st.sampled_from(sorted(self.running)))
        self.gates[call].set_result(call)
        newcomer = self._start(priority)
        self._settle()
        self.expected_outcomes[call] = "ok"
        self._release(call)
        self._arrived(newcomer, priority)

    @precondition(lambda self: bool(self.running and self._waiting()))
    @rule(data=st.data(), after_admission=st.booleans())
    def complete_as_a_waiter_is_cancelled(self, data: st.DataObject, after_admission: bool) -> None:
        """A waiter cancelled just before, or just after, the freed slot was given to it."""
        call = data.draw(st.sampled_from(sorted(self.running)))
        self.expected_outcomes[call] = "ok"
        if after_admission:
            before = set(self.running)
            self._release(call)
            waiter = next((c for c in self.running if c not in before), None)
        else:
            queued = [c for q in self.queues.values() for c, _ in q]
            waiter = data.draw(st.sampled_from(queued))
            self._drop(waiter)
            self._release(call)

        async def finish_then_cancel() -> None:
            self.gates[call].set_result(call)
            if after_admission:
                await asyncio.sleep(0)  # the call releases; the slot goes to the waiter
            if waiter is not None:
                assert waiter not in self.admitted  # it has not resumed yet
                self.tasks[waiter].cancel()

        self.loop.run_until_complete(finish_then_cancel())
        self._settle()
        if waiter is not None:
            self.expected_outcomes[waiter] = "cancelled"
            if waiter in self.running:
                self.expected_admitted.remove(waiter)
                self._release(waiter, ran=False)

    def _drop(self, call: int) -> None:
        for priority, queue in self.queues.items():
            self.queues[priority] = [(c, t) for c, t in queue if c != call]

    @precondition(lambda self: bool(self.running or self._waiting()))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        queued = [c for q in self.queues.values() for c, _ in q]
        call = data.draw(st.sampled_from(sorted(self.running) + queued))
        self.tasks[call].cancel()
        self._settle()
        self.expected_outcomes[call] = "cancelled"
        if call in self.running:
            self._release(call)
        else:
            self._drop(call)

    @rule(quarters=st.integers(min_value=1, max_value=4))
    def advance(self, quarters: int) -> None:
        self.clock.advance(quarters * 0.25)
        self._settle()
        now = self.clock.monotonic()
        for priority, queue in self.queues.items():
            for call, gives_up_at in queue:
                if gives_up_at <= now:
                    self.expected_outcomes[call] = "wait exceeded"
            self.queues[priority] = [(c, t) for c, t in queue if t > now]

    @invariant()
    def matches_the_reference_model(self) -> None:
        snapshot = self.policy.snapshot()
        assert snapshot.in_flight == len(self.running) <= _N
        assert snapshot.waiting_by_priority == tuple(len(self.queues[p]) for p in Priority)
        assert snapshot.waiting <= _QUEUE
        assert snapshot.service_time_s == self.service_s
        assert sorted(self.gates) == sorted(self.running)
        assert sorted(self.admitted) == sorted(self.expected_admitted)
        # Waiters are admitted in the model's order; a newcomer admitted at once may enter
        # call_next before a waiter admitted a moment earlier has resumed.
        from_queue = [c for c in self.admitted if c in self.queued]
        assert from_queue == [c for c in self.expected_admitted if c in self.queued]
        assert self.outcomes == self.expected_outcomes


async def _drain(tasks: list[asyncio.Task[int]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


_REASONS = {
    "would wait about": "queue delay",
    "found the queue full": "queue full",
    "was evicted": "evicted",
    "was not admitted within": "wait exceeded",
}


def _outcome(task: asyncio.Task[int]) -> str:
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    if error is None:
        return "ok"
    if isinstance(error, OverloadedError):
        assert error.retry_after_s is not None
        return next(reason for phrase, reason in _REASONS.items() if phrase in str(error))
    assert isinstance(error, BackendUnavailableError)
    return "failed"


TestAdmissionMachine = AdmissionMachine.TestCase
TestAdmissionMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
