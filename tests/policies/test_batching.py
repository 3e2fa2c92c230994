"""BatchingPolicy: batches by rows, bounded waits and queue, drops, isolation, adaptive size."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from seawall.backends.mock import Hang, MockBackend, Respond
from seawall.clock import FakeClock
from seawall.context import CallContext, Priority
from seawall.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    InvalidInputError,
    ModelExecutionError,
    OverloadedError,
)
from seawall.pipeline import Pipeline
from seawall.policies.batching import (
    BatchExecuted,
    BatchingOptions,
    BatchingPolicy,
    BatchingSnapshot,
    BatchItemDropped,
    BatchQueueFull,
    BatchSplit,
)
from seawall.policies.timeout import TimeoutOptions, TimeoutPolicy
from seawall.types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor


def request(
    rid: str, rows: int = 1, value: float = 0.0, width: int = 2, **kwargs: Any
) -> InferenceRequest:
    data = np.full((rows, width), value, np.float32)
    return InferenceRequest(
        "m", [Tensor.from_numpy("input-0", data)], version="1", id=rid, **kwargs
    )


def column(response: InferenceResponse) -> list[float]:
    """The first column of the first output: the values the caller sent, echoed."""
    data: npt.NDArray[Any] = response.outputs[0].data
    return [float(v) for v in data[:, 0]]


async def settle() -> None:
    """Let every task run until it blocks on the fake clock or a gate."""
    for _ in range(12):
        await asyncio.sleep(0)


class Model:
    """A `call_next` on the fake clock: echoes its input doubled after `latency_s`.

    A NaN in a call fails it like scikit-learn does (`InvalidInputError`); `fail` and
    `drop_rows` script other failures. Every call's rows and context are recorded.
    """

    def __init__(self, clock: FakeClock, latency_s: float = 1.0) -> None:
        self.clock = clock
        self.latency_s = latency_s
        self.calls: list[tuple[InferenceRequest, CallContext]] = []
        self.fail: BaseException | None = None
        self.drop_rows = 0
        self.cancelled = 0

    @property
    def rows(self) -> list[int]:
        return [r.inputs[0].data.shape[0] for r, _ in self.calls]

    async def __call__(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.calls.append((req, ctx))
        try:
            await self.clock.sleep(self.latency_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        data = req.inputs[0].data
        if self.fail is not None:
            raise self.fail
        if np.isnan(data).any():
            raise InvalidInputError("inputs", "the model rejected the input: X contains NaN")
        out = data[: len(data) - self.drop_rows] * 2
        return InferenceResponse(req.model, [Tensor.from_numpy("out", out)], req.version, req.id)


class Harness:
    """A batcher in front of a `Model`, on one FakeClock, recording events."""

    def __init__(self, latency_s: float = 1.0, **options: Any) -> None:
        self.clock = FakeClock()
        self.events: list[Any] = []
        self.model = Model(self.clock, latency_s)
        self.policy = BatchingPolicy(
            BatchingOptions(**options),
            clock=self.clock,
            on_event=self.events.append,
            target="m:1",
        )

    def call(self, req: InferenceRequest, ctx: CallContext | None = None) -> asyncio.Task[Any]:
        return asyncio.create_task(self.policy(req, ctx or CallContext.new(), self.model))

    async def advance(self, seconds: float) -> None:
        await settle()
        self.clock.advance(seconds)
        await settle()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size: must be at least 1, got 0"),
        ({"max_wait_s": -0.001}, "max_wait_s: must be 0 or a positive number, got -0.001"),
        ({"max_wait_s": float("nan")}, "max_wait_s: must be 0 or a positive number, got nan"),
        (
            {"max_batch_size": 64, "max_queue_rows": 63},
            r"max_queue_rows: must be at least max_batch_size \(64\), got 63",
        ),
        ({"max_concurrent_batches": 0}, "max_concurrent_batches: must be at least 1, got 0"),
    ],
)
def test_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchingOptions(**options)


def test_defaults() -> None:
    assert BatchingOptions() == BatchingOptions(
        max_batch_size=32,
        max_wait_s=0.005,
        max_queue_rows=256,
        max_concurrent_batches=1,
        adaptive=False,
    )


# --- forming batches ------------------------------------------------------------------------


async def test_concurrent_calls_become_one_call_and_each_gets_its_own_rows_back() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.01)
    tasks = [h.call(request(f"r{i}", rows=1 + i % 2, value=i)) for i in range(4)]
    await h.advance(0.01)
    await h.advance(1.0)

    assert h.model.rows == [6]  # 1 + 2 + 1 + 2 rows, in one call
    merged, _ = h.model.calls[0]
    assert (merged.id, merged.model, merged.version) == (None, "m", "1")
    assert [column(t.result()) for t in tasks] == [[0.0], [2.0, 2.0], [4.0], [6.0, 6.0]]
    assert [(t.result().id, t.result().model, t.result().version) for t in tasks] == [
        (f"r{i}", "m", "1") for i in range(4)
    ]
    (executed,) = h.of(BatchExecuted)
    assert (executed.target, executed.requests, executed.rows, executed.error) == (
        "m:1",
        4,
        6,
        None,
    )
    assert (executed.wait_s, executed.duration_s) == (pytest.approx(0.01), 1.0)
    assert all(t.result().outputs[0].shape == (1 + i % 2, 2) for i, t in enumerate(tasks))


async def test_max_batch_size_counts_rows_not_requests() -> None:
    h = Harness(max_batch_size=5, max_wait_s=0.0, max_queue_rows=20)
    tasks = [h.call(request(f"r{i}", rows=2)) for i in range(5)]
    for _ in range(3):
        await h.advance(1.0)

    assert h.model.rows == [4, 4, 2]  # a third call of 2 rows would make 6 > 5
    assert all(t.done() for t in tasks)


async def test_a_call_larger_than_a_batch_runs_alone() -> None:
    h = Harness(max_batch_size=4, max_wait_s=0.0, max_queue_rows=16)
    tasks = [h.call(request("small", rows=1)), h.call(request("big", rows=9))]
    await h.advance(1.0)
    await h.advance(1.0)

    assert h.model.rows == [1, 9]
    assert [len(column(t.result())) for t in tasks] == [1, 9]


async def test_the_first_call_waits_max_wait_for_companions_then_goes() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.01)
    first = h.call(request("a"))
    await h.advance(0.006)
    second = h.call(request("b"))
    await h.advance(0.003)
    assert h.model.calls == []  # 9 ms: still waiting
    await h.advance(0.001)

    assert h.model.rows == [2]  # the wait is the oldest call's, not restarted by the second
    await h.advance(1.0)
    assert (first.result().id, second.result().id) == ("a", "b")
    assert h.of(BatchExecuted)[0].wait_s == pytest.approx(0.01)


async def test_a_full_batch_starts_without_waiting() -> None:
    h = Harness(max_batch_size=4, max_wait_s=10.0)
    for i in range(3):
        h.call(request(f"r{i}"))
    await settle()
    assert h.model.calls == []
    h.call(request("r3"))
    await settle()

    assert h.model.rows == [4]
    assert h.clock.monotonic() == 1000.0
    await h.advance(1.0)


async def test_max_wait_zero_takes_what_is_queued_now() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.0)
    for i in range(3):
        h.call(request(f"r{i}"))
    await settle()
    assert h.model.rows == [3]
    await h.advance(1.0)


async def test_the_next_batch_fills_while_one_runs() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.0)
    first = h.call(request("first"))
    await settle()
    later = [h.call(request(f"r{i}")) for i in range(5)]
    await h.advance(0.5)
    assert (h.model.rows, h.policy.snapshot()) == ([1], BatchingSnapshot("m:1", 5, 5, 1))
    await h.advance(0.5)  # the first batch ends: the five queued calls go as one

    assert first.done()
    assert h.model.rows == [1, 5]
    await h.advance(1.0)
    assert all(t.done() for t in later)
    assert h.of(BatchExecuted)[1].wait_s == pytest.approx(1.0)


async def test_max_concurrent_batches_run_side_by_side() -> None:
    h = Harness(max_batch_size=2, max_wait_s=0.0, max_concurrent_batches=2)
    tasks = [h.call(request(f"r{i}")) for i in range(6)]
    await settle()
    assert (h.model.rows, h.policy.batches_in_flight) == ([2, 2], 2)
    await h.advance(1.0)
    assert h.model.rows == [2, 2, 2]
    await h.advance(1.0)
    assert all(t.done() for t in tasks)
    assert h.policy.snapshot() == BatchingSnapshot("m:1", 0, 0, 0)


async def test_only_compatible_calls_share_a_batch() -> None:
    h = Harness(max_batch_size=16, max_wait_s=0.0, max_concurrent_batches=8)
    predict = [RequestedOutput("predict")]
    calls = [
        request("a1"),
        request("wide", width=3),
        request("a2"),
        request("outputs", outputs=predict),
        request("params", parameters={"threshold": 0.5}),
        request("params-int", parameters={"threshold": 1}),
        request("params-true", parameters={"threshold": True}),
        request("outputs2", outputs=predict),
        request("a3"),
    ]
    tasks = [h.call(c) for c in calls]
    await settle()

    assert sorted(h.model.rows) == [1, 1, 1, 1, 2, 3]
    groups = {
        (r.inputs[0].data.shape[1], r.outputs is None, str(r.parameters)): len(r.inputs[0].data)
        for r, _ in h.model.calls
    }
    assert groups[(2, True, "{}")] == 3
    assert groups[(2, False, "{}")] == 2
    await h.advance(1.0)
    assert [t.result().id for t in tasks] == [c.id for c in calls]


async def test_calls_that_cannot_be_batched_go_straight_to_the_backend() -> None:
    h = Harness(max_batch_size=4, max_wait_s=10.0)
    queued = h.call(request("queued"))
    await settle()
    empty = h.call(request("empty", rows=0))
    unhashable = h.call(request("odd", parameters={"weights": [1, 2]}))
    await settle()

    assert h.model.rows == [0, 1]  # both called at once, while the queued call still waits
    assert h.policy.queued_rows == 1
    await h.advance(1.0)
    assert (empty.result().id, unhashable.result().id) == ("empty", "odd")
    await h.advance(10.0)
    await h.advance(1.0)
    assert queued.result().id == "queued"


async def test_the_merged_call_has_the_latest_deadline_and_the_highest_priority() -> None:
    h = Harness(max_batch_size=3, max_wait_s=0.0)
    now = h.clock.monotonic()
    contexts = [
        CallContext.new("a", deadline=now + 5.0),
        CallContext.new("b", deadline=now + 9.0, priority=Priority.CRITICAL),
        CallContext.new("c", deadline=now + 2.0, priority=Priority.BATCH),
    ]
    for i, ctx in enumerate(contexts):
        h.call(request(f"r{i}"), ctx)
    await settle()
    ((_, merged),) = h.model.calls
    assert (merged.deadline, merged.priority) == (now + 9.0, Priority.CRITICAL)
    assert merged.request_id not in ("a", "b", "c")
    await h.advance(1.0)
    assert [ctx.annotations["batch_requests"] for ctx in contexts] == [3, 3, 3]

    h.call(request("x"), CallContext.new(deadline=now + 5.0))
    h.call(request("y"), CallContext.new())  # no deadline: the batch has none either
    await settle()
    assert h.model.calls[-1][1].deadline is None
    await h.advance(1.0)


async def test_a_single_call_batch_passes_its_own_request_and_context() -> None:
    h = Harness(max_wait_s=0.0)
    req, ctx = request("alone"), CallContext.new("alone")
    task = h.call(req, ctx)
    await settle()
    assert h.model.calls == [(req, ctx)]
    await h.advance(1.0)
    assert task.result().id == "alone"


# --- a bounded queue ------------------------------------------------------------------------


async def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    h = Harness(max_batch_size=4, max_wait_s=0.0, max_queue_rows=6)
    running = h.call(request("running", rows=4))
    await settle()
    queued = [h.call(request(f"q{i}", rows=3)) for i in range(2)]
    await settle()
    assert h.policy.queued_rows == 6

    coro = h.policy(request("refused"), CallContext.new(), h.model)
    with pytest.raises(OverloadedError) as info:
        coro.send(None)  # one step of the coroutine: it raised without suspending

    assert str(info.value) == (
        "model 'm:1': the batching queue is full (6 of 6 rows waiting; this call has 1)"
    )
    assert info.value.retry_after_s == 1.0  # nothing timed yet
    assert h.of(BatchQueueFull) == [BatchQueueFull("m:1", 1, 6, 6)]
    await h.advance(1.0)  # 4 rows took 1 s: 0.25 s a row; q0 runs, q1 waits
    assert (running.done(), h.policy.queued_rows) == (True, 3)
    queued.append(h.call(request("q2", rows=3)))
    await settle()
    with pytest.raises(OverloadedError) as info:
        await h.policy(request("refused", rows=1), CallContext.new(), h.model)
    assert info.value.retry_after_s == pytest.approx(6 * 0.25)  # the queue's expected drain
    for _ in range(3):
        await h.advance(1.0)
    assert [len(column(t.result())) for t in queued] == [3, 3, 3]


async def test_a_call_larger_than_the_queue_waits_only_in_an_empty_one() -> None:
    h = Harness(max_batch_size=2, max_wait_s=0.0, max_queue_rows=4)
    running = h.call(request("running", rows=2))
    await settle()
    huge = h.call(request("huge", rows=6))
    await settle()
    assert h.policy.queued_rows == 6
    with pytest.raises(OverloadedError):
        await h.policy(request("next"), CallContext.new(), h.model)
    await h.advance(1.0)
    await h.advance(1.0)
    assert h.model.rows == [2, 6]
    assert (running.done(), len(column(huge.result()))) == (True, 6)
    assert h.policy.queued_rows == 0


# --- dropped before execution ---------------------------------------------------------------


async def test_a_call_whose_deadline_passed_in_the_queue_never_reaches_the_model() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.0)
    running = h.call(request("running"))
    await settle()
    now = h.clock.monotonic()
    late = h.call(request("late"), CallContext.new(deadline=now + 0.5))
    ok = h.call(request("ok"), CallContext.new(deadline=now + 5.0))
    await h.advance(1.0)  # the running batch ends after late's deadline

    with pytest.raises(BackendTimeoutError, match=r"deadline passed after 1 s queued"):
        await late
    assert h.model.rows == [1, 1]  # only "ok" joined the second batch
    assert h.of(BatchItemDropped) == [BatchItemDropped("m:1", 1, 1.0, "deadline")]
    await h.advance(1.0)
    assert (running.result().id, ok.result().id) == ("running", "ok")


async def test_a_call_already_past_its_deadline_is_refused_without_queueing() -> None:
    h = Harness()
    ctx = CallContext.new(deadline=h.clock.monotonic())
    with pytest.raises(BackendTimeoutError, match="before the call started"):
        await h.policy(request("late"), ctx, h.model)
    assert (h.model.calls, h.policy.queued_rows) == ([], 0)


async def test_a_caller_that_left_is_dropped_from_the_queue() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.0)
    running = h.call(request("running"))
    await settle()
    gone = h.call(request("gone", rows=3))
    stays = h.call(request("stays"))
    await settle()
    assert h.policy.queued_rows == 4
    gone.cancel()
    await settle()
    assert h.policy.queued_rows == 1
    await h.advance(1.0)

    assert h.model.rows == [1, 1]
    assert h.of(BatchItemDropped) == [BatchItemDropped("m:1", 3, 0.0, "cancelled")]
    await h.advance(1.0)
    assert (running.result().id, stays.result().id) == ("running", "stays")
    assert h.policy.snapshot() == BatchingSnapshot("m:1", 0, 0, 0)
    assert h.clock.sleepers == 0


async def test_the_outer_timeout_ends_a_queued_call_at_its_own_deadline() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.0)
    pipeline = Pipeline(
        [TimeoutPolicy(TimeoutOptions(None), clock=h.clock), h.policy], h.model, name="m:1"
    )
    assert repr(pipeline) == "Pipeline(m:1: timeout → batching → Model)"
    running = asyncio.create_task(pipeline(request("running"), CallContext.new()))
    await settle()
    ctx = CallContext.new(deadline=h.clock.monotonic() + 0.25)
    late = asyncio.create_task(pipeline(request("late"), ctx))
    await h.advance(0.25)

    with pytest.raises(BackendTimeoutError, match="did not answer within 250 ms"):
        await late
    assert h.policy.queued_rows == 0
    assert [e.reason for e in h.of(BatchItemDropped)] == ["cancelled"]
    await h.advance(1.0)
    assert h.model.rows == [1]  # "late" never reached the model
    assert running.result().id == "running"


async def test_a_batch_whose_callers_all_left_is_cancelled() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.0)
    tasks = [h.call(request(f"r{i}")) for i in range(3)]
    await settle()
    assert h.model.rows == [3]
    for task in tasks[:2]:
        task.cancel()
    await settle()
    assert (h.model.cancelled, h.policy.batches_in_flight) == (0, 1)  # one caller still waits
    tasks[2].cancel()
    await settle()

    assert (h.model.cancelled, h.policy.batches_in_flight) == (1, 0)
    assert h.clock.sleepers == 0


# --- per-call error isolation ---------------------------------------------------------------


async def test_one_bad_input_fails_only_its_own_call() -> None:
    h = Harness(max_batch_size=8, max_wait_s=0.0, latency_s=0.1)
    values = [0, 1, float("nan"), 3, 4, 5, float("nan"), 7]
    tasks = [h.call(request(f"r{i}", value=v)) for i, v in enumerate(values)]
    for _ in range(12):
        await h.advance(0.1)

    for i, task in enumerate(tasks):
        if i in (2, 6):
            with pytest.raises(InvalidInputError, match="inputs: the model rejected the input"):
                task.result()
        else:
            assert column(task.result()) == [2.0 * i]
    # Halves, first half first: 8 → 4 (→ 2 ok, 2 → 1 bad, 1 ok) → 4 (→ 2 ok, 2 → 1 bad, 1 ok).
    assert h.model.rows == [8, 4, 2, 2, 1, 1, 4, 2, 2, 1, 1]
    splits = h.of(BatchSplit)
    assert [s.requests for s in splits] == [8, 4, 2, 4, 2]
    assert {s.error for s in splits} == {"invalid_input"}
    assert h.policy.snapshot() == BatchingSnapshot("m:1", 0, 0, 0)


async def test_a_half_whose_deadline_passed_meanwhile_is_not_tried_again() -> None:
    h = Harness(max_batch_size=4, max_wait_s=0.0)
    bad = h.call(request("bad", value=float("nan")))
    late = h.call(request("late"), CallContext.new(deadline=h.clock.monotonic() + 1.5))
    for _ in range(3):
        await h.advance(1.0)

    assert isinstance(bad.exception(), InvalidInputError)
    with pytest.raises(BackendTimeoutError, match="the deadline passed"):
        late.result()
    assert h.model.rows == [2, 1]  # the batch, then "bad" alone; "late" not again


async def test_a_model_error_is_isolated_like_a_bad_input() -> None:
    h = Harness(max_batch_size=4, max_wait_s=0.0)
    h.model.fail = ModelExecutionError("boom")
    tasks = [h.call(request(f"r{i}")) for i in range(2)]
    await h.advance(1.0)
    h.model.fail = None  # the halves succeed: the batch alone failed
    await h.advance(1.0)
    await h.advance(1.0)
    assert [t.result().id for t in tasks] == ["r0", "r1"]
    assert h.model.rows == [2, 1, 1]


async def test_an_error_not_caused_by_input_fails_every_call_of_the_batch_alike() -> None:
    h = Harness(max_batch_size=4, max_wait_s=0.0)
    h.model.fail = BackendUnavailableError("upstream down", retry_after_s=2.0)
    tasks = [h.call(request(f"r{i}")) for i in range(3)]
    await h.advance(1.0)

    errors = [t.exception() for t in tasks]
    assert all(e is h.model.fail for e in errors)
    assert h.model.rows == [3]  # not retried one by one
    assert h.of(BatchExecuted) == [BatchExecuted("m:1", 3, 3, 0.0, 1.0, "unavailable")]
    assert h.of(BatchSplit) == []


async def test_an_answer_with_the_wrong_row_count_is_a_bad_response_for_each_call() -> None:
    h = Harness(max_batch_size=4, max_wait_s=0.0)
    h.model.drop_rows = 1
    tasks = [h.call(request(f"r{i}", rows=2)) for i in range(2)]
    await h.advance(1.0)

    for task in tasks:
        with pytest.raises(BadResponseError) as info:
            task.result()
        assert str(info.value) == (
            "model 'm:1': output 'out' has 3 rows for a batch of 4 rows (2 requests)"
        )
    assert h.policy.snapshot() == BatchingSnapshot("m:1", 0, 0, 0)


async def test_a_call_alone_is_held_to_its_row_count_too() -> None:
    h = Harness(max_wait_s=0.0)
    h.model.drop_rows = 1
    task = h.call(request("alone", rows=3))
    await h.advance(1.0)
    with pytest.raises(BadResponseError, match="has 2 rows for a batch of 3 rows"):
        task.result()


async def test_an_unexpected_error_is_passed_to_every_caller_not_swallowed() -> None:
    h = Harness(max_batch_size=4, max_wait_s=0.0)
    h.model.fail = RuntimeError("a bug below")
    tasks = [h.call(request(f"r{i}")) for i in range(2)]
    await h.advance(1.0)
    assert [type(t.exception()) for t in tasks] == [RuntimeError, RuntimeError]
    assert h.of(BatchExecuted)[0].error == "RuntimeError"


# --- adaptive batch size --------------------------------------------------------------------


async def test_adaptive_batches_stay_within_the_earliest_deadline() -> None:
    h = Harness(max_batch_size=16, max_wait_s=0.0, max_queue_rows=64, adaptive=True)
    warm = h.call(request("warm", rows=4))
    await h.advance(1.0)  # 4 rows in 1 s: 0.25 s a row
    assert warm.done()
    running = h.call(request("running", rows=4))
    await settle()
    now = h.clock.monotonic()
    tight = [h.call(request(f"t{i}"), CallContext.new(deadline=now + 2.0)) for i in range(8)]
    loose = [h.call(request(f"l{i}")) for i in range(8)]
    await h.advance(1.0)  # the running batch ends: 1 s left before the tight deadline

    assert h.model.rows[-1] == 4  # 1 s / 0.25 s a row, not all 16 queued rows
    for _ in range(8):
        await h.advance(1.0)
    assert running.done()
    assert all(t.done() for t in tight + loose)


async def test_without_adaptive_the_deadline_does_not_cap_the_batch() -> None:
    h = Harness(max_batch_size=16, max_wait_s=0.0, max_queue_rows=64)
    warm = h.call(request("warm", rows=4))
    await h.advance(1.0)
    running = h.call(request("running", rows=4))
    await settle()
    now = h.clock.monotonic()
    for i in range(8):
        h.call(request(f"t{i}"), CallContext.new(deadline=now + 2.0))
    await h.advance(1.0)
    assert h.model.rows[-1] == 8
    await h.advance(1.0)
    assert (warm.done(), running.done()) == (True, True)


async def test_adaptive_always_runs_at_least_one_call() -> None:
    h = Harness(max_batch_size=16, max_wait_s=0.0, adaptive=True)
    h.call(request("warm", rows=4))
    await h.advance(1.0)
    now = h.clock.monotonic()
    task = h.call(request("big", rows=8), CallContext.new(deadline=now + 0.5))
    await settle()
    assert h.model.rows[-1] == 8  # expected to miss: it still runs, its timeout decides
    await h.advance(1.0)
    assert task.done()


# --- visibility -----------------------------------------------------------------------------


async def test_snapshot_and_repr() -> None:
    h = Harness(max_batch_size=2, max_wait_s=0.0, max_queue_rows=8)
    tasks = [h.call(request(f"r{i}")) for i in range(5)]
    await settle()
    assert h.policy.snapshot() == BatchingSnapshot("m:1", 3, 3, 1)
    assert repr(h.policy) == (
        "BatchingPolicy('m:1', max_batch_size=2, queued_rows=3/8, batches_in_flight=1/1)"
    )
    for task in tasks:
        task.cancel()
    await settle()
    assert h.policy.snapshot() == BatchingSnapshot("m:1", 0, 0, 0)


async def test_with_a_mock_backend_in_a_pipeline() -> None:
    clock = FakeClock()
    backend = MockBackend("m", clock=clock, default=Respond(latency_s=0.01), record_requests=True)
    await backend.load()
    policy = BatchingPolicy(BatchingOptions(max_wait_s=0.002), clock=clock)
    pipeline = Pipeline([policy], backend.infer)
    assert repr(pipeline) == "Pipeline(batching → mock:m)"
    tasks = [
        asyncio.create_task(pipeline(request(f"r{i}", value=i), CallContext.new()))
        for i in range(5)
    ]
    await settle()
    clock.advance(0.002)
    await settle()
    clock.advance(0.01)
    await settle()
    assert backend.stats.calls == 1
    assert [column(t.result()) for t in tasks] == [[float(i)] for i in range(5)]


async def test_without_a_target_messages_still_read_as_sentences() -> None:
    clock = FakeClock()
    model = Model(clock)
    policy = BatchingPolicy(BatchingOptions(max_batch_size=1, max_queue_rows=1), clock=clock)
    running = asyncio.create_task(policy(request("a"), CallContext.new(), model))
    await settle()
    clock.advance(0.005)
    await settle()
    waiting = asyncio.create_task(policy(request("b"), CallContext.new(), model))
    await settle()
    with pytest.raises(OverloadedError, match=r"^the model: the batching queue is full"):
        await policy(request("c"), CallContext.new(), model)
    for task in (running, waiting):
        task.cancel()
    await settle()


async def test_never_hangs_a_caller_on_a_hanging_backend_once_it_leaves() -> None:
    clock = FakeClock()
    backend = MockBackend("m", clock=clock, default=Hang())
    await backend.load()
    policy = BatchingPolicy(BatchingOptions(max_wait_s=0.0), clock=clock)
    tasks = [
        asyncio.create_task(policy(request(f"r{i}"), CallContext.new(), backend.infer))
        for i in range(3)
    ]
    await settle()
    for task in tasks:
        task.cancel()
    await settle()
    assert backend.stats.cancelled == 1
    assert policy.snapshot() == BatchingSnapshot("", 0, 0, 0)
    assert clock.sleepers == 0


# --- stateful test: every row is accounted for ----------------------------------------------

_BATCH, _QUEUE, _WAIT_S, _CONCURRENT = 4, 8, 0.01, 2


class BatchingMachine(RuleBasedStateMachine):
    """Calls arrive, are cancelled, expire; batches end, fail or answer wrongly, in any order.

    Each call's rows all hold its number, so the model can tell whose rows reached it.
    Accounting: rows submitted = refused + dropped + queued + rows of calls that reached the
    model; a dropped call never reaches it; the queue and running batches stay in bounds.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.events: list[Any] = []
        self.policy = BatchingPolicy(
            BatchingOptions(_BATCH, _WAIT_S, _QUEUE, _CONCURRENT),
            clock=self.clock,
            on_event=self.events.append,
            target="m:1",
        )
        self.gates: list[tuple[asyncio.Future[InferenceResponse], InferenceRequest]] = []
        self.tasks: dict[int, asyncio.Task[InferenceResponse]] = {}
        self.rows: dict[int, int] = {}
        self.reached: set[int] = set()

    def teardown(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.loop.run_until_complete(_drain(list(self.tasks.values())))
        self._settle()
        assert self.policy.snapshot() == BatchingSnapshot("m:1", 0, 0, 0)
        self.loop.close()

    async def _model(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.reached.update(int(v) for v in req.inputs[0].data[:, 0])
        gate: asyncio.Future[InferenceResponse] = self.loop.create_future()
        entry = (gate, req)
        self.gates.append(entry)
        try:
            return await gate
        finally:
            self.gates.remove(entry)

    def _settle(self) -> None:
        self.loop.run_until_complete(settle())

    @rule(rows=st.integers(1, 10), timeout_s=st.none() | st.sampled_from([0.005, 0.02, 0.1]))
    def submit(self, rows: int, timeout_s: float | None) -> None:
        call = len(self.tasks)
        deadline = None if timeout_s is None else self.clock.monotonic() + timeout_s
        data = np.full((rows, 1), call, np.float64)
        req = InferenceRequest("m", [Tensor.from_numpy("x", data)], id=str(call))
        coro = self.policy(req, CallContext.new(deadline=deadline), self._model)
        self.tasks[call] = self.loop.create_task(coro)
        self.rows[call] = rows
        self._settle()

    @precondition(lambda self: any(not t.done() for t in self.tasks.values()))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        pending = [c for c, t in self.tasks.items() if not t.done()]
        self.tasks[data.draw(st.sampled_from(pending))].cancel()
        self._settle()

    @rule(seconds=st.sampled_from([0.001, 0.005, 0.01, 0.05]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self._settle()

    @precondition(lambda self: bool(self.gates))
    @rule(how=st.sampled_from(["answer", "fail", "bad input", "wrong rows"]))
    def end_oldest_batch(self, how: str) -> None:
        gate, req = self.gates[0]
        data = req.inputs[0].data
        if how == "answer":
            gate.set_result(InferenceResponse("m", [Tensor.from_numpy("y", data)]))
        elif how == "wrong rows":
            gate.set_result(InferenceResponse("m", [Tensor.from_numpy("y", data[1:])]))
        elif how == "fail":
            gate.set_exception(BackendUnavailableError("down"))
        else:
            gate.set_exception(InvalidInputError("inputs", "bad"))
        self._settle()

    @invariant()
    def every_row_is_accounted_for(self) -> None:
        refused = sum(e.rows for e in self.events if isinstance(e, BatchQueueFull))
        dropped_rows = sum(e.rows for e in self.events if isinstance(e, BatchItemDropped))
        reached = sum(self.rows[c] for c in self.reached)
        assert sum(self.rows.values()) == refused + dropped_rows + reached + self.policy.queued_rows

    @invariant()
    def bounds_hold(self) -> None:
        snapshot = self.policy.snapshot()
        assert snapshot.queued_rows <= _QUEUE or snapshot.queued_requests == 1
        assert snapshot.batches_in_flight <= _CONCURRENT
        assert len(self.gates) <= _CONCURRENT
        assert all(len(req.inputs[0].data) <= max(_BATCH, 10) for _, req in self.gates)

    @invariant()
    def answers_are_the_callers_own_rows(self) -> None:
        for call, task in self.tasks.items():
            if task.done() and not task.cancelled() and task.exception() is None:
                assert column_ids(task.result()) == [call] * self.rows[call]


def column_ids(response: InferenceResponse) -> list[int]:
    return [int(v) for v in response.outputs[0].data[:, 0]]


async def _drain(tasks: list[asyncio.Task[InferenceResponse]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


TestBatchingMachine = BatchingMachine.TestCase
TestBatchingMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
