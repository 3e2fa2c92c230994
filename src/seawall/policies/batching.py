"""Dynamic batching: concurrent calls of one model merged into one call of its backend.

Calls that arrive together wait in a queue, briefly, and reach the backend as one request whose
inputs are theirs stacked along the first (batch) dimension; the answer is cut back by rows.
A model that scores 32 rows in little more time than one then serves many times the calls per
second (Triton's dynamic batcher, MLServer's adaptive batching). It is the innermost policy:
`... → timeout → batching → backend`.

- A batch holds at most `max_batch_size` rows (the calls' first dimensions summed; a call with
  more runs alone). It starts as soon as it is full, or once its oldest call has waited
  `max_wait_s`, and only while fewer than `max_concurrent_batches` batches run: while the model
  is busy, the next batch fills up.
- Only calls with the same batch key share a batch (same inputs but for their rows, outputs and
  parameters; see `seawall.policies.batch`). A call that cannot be batched at all skips the queue.
- The queue holds at most `max_queue_rows` rows; a call that does not fit is refused at once with
  503 and `Retry-After` (a call larger than the whole queue is taken only when it is empty).
- A call whose deadline has passed, or whose caller went away, while queued is dropped and never
  reaches the model; a running batch all of whose callers went away is cancelled.
- The merged call's deadline is the latest of its calls' (each caller still gives up at its own
  deadline: the timeout policy outside cancels its wait).
- One bad input fails only its own call. When a batch fails with an error that one input can
  cause (`InvalidInputError`, `ModelExecutionError`), it is cut in halves and each half tried
  again, down to single calls, which fail with their own error. Any other error (unavailable,
  timeout) fails every call of that batch alike. An answer with the wrong number of rows is a
  `BadResponseError` for each call of the batch (alone too: every output must have a row per
  input row, or the model cannot be batched).
- With `adaptive`, a batch takes only as many rows as it is expected to finish before the
  earliest deadline among its calls, by a moving average of the time per row (always at least
  one call). The average comes from full batches, so it is an estimate, not a promise.

Merging and splitting are numpy concatenations and slices on the event loop; the model itself
runs where its backend runs it (in-process models on their own threads).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext, new_request_id
from seawall.errors import (
    BackendTimeoutError,
    BadResponseError,
    InvalidInputError,
    ModelExecutionError,
    OverloadedError,
    SeawallError,
)
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.batch import BatchKey, batch_plan, merge, split
from seawall.types import InferenceRequest, InferenceResponse

__all__ = [
    "BatchExecuted",
    "BatchItemDropped",
    "BatchQueueFull",
    "BatchSplit",
    "BatchingOptions",
    "BatchingPolicy",
    "BatchingSnapshot",
]

logger = logging.getLogger("seawall.policies")

InferenceHandler = Handler[InferenceRequest, InferenceResponse]

#: Rows in one batch.
DEFAULT_MAX_BATCH_SIZE = 32
#: Longest the oldest call of a batch waits for others, in seconds.
DEFAULT_MAX_WAIT_S = 0.005
#: Rows that may wait; a call that does not fit is refused at once (503).
DEFAULT_MAX_QUEUE_ROWS = 256
#: Batches running at the same time.
DEFAULT_MAX_CONCURRENT_BATCHES = 1
#: `Retry-After` of a refusal before any batch has been timed.
_UNTIMED_RETRY_AFTER_S = 1.0
#: Weight of the newest batch in the moving average of the time per row.
_ROW_TIME_ALPHA = 0.2
#: Errors one input of a batch can cause: the batch is split to find it.
_SPLITTABLE = (InvalidInputError, ModelExecutionError)

DropReason = Literal["deadline", "cancelled"]


@dataclass(frozen=True, slots=True)
class BatchingOptions:
    """How big batches get, how long calls wait for them, and how many wait."""

    #: Rows in one batch (a call with more runs alone).
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    #: Seconds the oldest queued call waits for companions (0: take what is queued now).
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    #: Rows that may wait; at least `max_batch_size`.
    max_queue_rows: int = DEFAULT_MAX_QUEUE_ROWS
    #: Batches running at once.
    max_concurrent_batches: int = DEFAULT_MAX_CONCURRENT_BATCHES
    #: Cap each batch's rows so it is expected to end before the earliest deadline in it.
    adaptive: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size: must be at least 1, got {self.max_batch_size}")
        if not (math.isfinite(self.max_wait_s) and self.max_wait_s >= 0):
            raise ValueError(f"max_wait_s: must be 0 or a positive number, got {self.max_wait_s}")
        if self.max_queue_rows < self.max_batch_size:
            raise ValueError(
                f"max_queue_rows: must be at least max_batch_size ({self.max_batch_size}), "
                f"got {self.max_queue_rows}"
            )
        if self.max_concurrent_batches < 1:
            raise ValueError(
                f"max_concurrent_batches: must be at least 1, got {self.max_concurrent_batches}"
            )


@dataclass(frozen=True, slots=True)
class BatchExecuted:
    """The backend was called once for `requests` calls (`rows` rows); `error`: its failure code."""

    target: str
    requests: int
    rows: int
    #: How long the oldest of its calls had waited, in seconds.
    wait_s: float
    duration_s: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BatchSplit:
    """A batch failed with an error one input can cause; its halves are tried again."""

    target: str
    requests: int
    rows: int
    error: str


@dataclass(frozen=True, slots=True)
class BatchItemDropped:
    """A queued call left before it ran: its deadline passed, or its caller went away."""

    target: str
    rows: int
    waited_s: float
    reason: DropReason


@dataclass(frozen=True, slots=True)
class BatchQueueFull:
    """A call was refused: its rows did not fit in the queue."""

    target: str
    rows: int
    queued_rows: int
    max_queue_rows: int


@dataclass(frozen=True, slots=True)
class BatchingSnapshot:
    """The queue and the batches running now, for metrics (gauges)."""

    target: str
    queued_requests: int
    queued_rows: int
    batches_in_flight: int


@dataclass(eq=False, slots=True)
class _Item:
    """One queued call: the caller awaits `future`."""

    request: InferenceRequest
    ctx: CallContext
    rows: int
    enqueued_s: float
    future: asyncio.Future[InferenceResponse]
    lane: _Lane | None = None
    batch: _Batch | None = None


@dataclass(eq=False, slots=True)
class _Lane:
    """The queue of one batch key (and one `call_next`), oldest first."""

    key: tuple[InferenceHandler, BatchKey]
    call_next: InferenceHandler
    items: OrderedDict[_Item, None] = field(default_factory=OrderedDict)
    rows: int = 0

    def head(self) -> _Item:
        return next(iter(self.items))


@dataclass(eq=False, slots=True)
class _Batch:
    items: list[_Item]
    #: Calls of the batch not answered yet.
    live: int
    task: asyncio.Task[None] | None = None


class BatchingPolicy:
    """Merges concurrent compatible calls into batches of rows; the innermost policy."""

    name = "batching"

    def __init__(
        self,
        options: BatchingOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = options or BatchingOptions()
        self.target = target
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._lanes: dict[tuple[InferenceHandler, BatchKey], _Lane] = {}
        self._queued_rows = 0
        self._queued = 0
        self._running = 0
        self._batches: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._row_s: float | None = None

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch."""
        return self._queued_rows

    @property
    def batches_in_flight(self) -> int:
        """Batches running now."""
        return self._running

    def snapshot(self) -> BatchingSnapshot:
        """Queue depth and running batches now."""
        return BatchingSnapshot(self.target, self._queued, self._queued_rows, self._running)

    async def __call__(
        self, request: InferenceRequest, ctx: CallContext, call_next: InferenceHandler
    ) -> InferenceResponse:
        plan = batch_plan(request)
        if plan is None:
            return await call_next(request, ctx)
        key, rows = plan
        now = self._clock.monotonic()
        if ctx.expired(now):
            raise BackendTimeoutError(f"{self._who}: the deadline passed before the call started")
        self._admit(rows)
        future: asyncio.Future[InferenceResponse] = asyncio.get_running_loop().create_future()
        item = _Item(request, ctx, rows, now, future)
        self._enqueue(item, key, call_next)
        # Awaiting the future directly: a cancelled caller cancels it, and leaves the queue.
        return await future

    # --- the queue ---------------------------------------------------------------------------

    def _admit(self, rows: int) -> None:
        """Refuse at once (503) when `rows` do not fit; a call of any size fits an empty queue."""
        opts = self.options
        if self._queued_rows == 0 or self._queued_rows + rows <= opts.max_queue_rows:
            return
        self._on_event(BatchQueueFull(self.target, rows, self._queued_rows, opts.max_queue_rows))
        raise OverloadedError(
            f"{self._who}: the batching queue is full ({self._queued_rows} of "
            f"{opts.max_queue_rows} rows waiting; this call has {rows})",
            retry_after_s=self._retry_after_s(),
        )

    def _retry_after_s(self) -> float:
        """When the queue should have room: its rows' expected run time, at least `max_wait_s`."""
        if self._row_s is None:
            return _UNTIMED_RETRY_AFTER_S
        opts = self.options
        drain_s = self._queued_rows * self._row_s / opts.max_concurrent_batches
        return max(drain_s, opts.max_wait_s)

    def _enqueue(self, item: _Item, key: BatchKey, call_next: InferenceHandler) -> None:
        # One lane per key and `call_next`: a policy shared by two pipelines keeps them apart.
        lane_key = (call_next, key)
        lane = self._lanes.get(lane_key)
        if lane is None:
            lane = self._lanes[lane_key] = _Lane(lane_key, call_next)
        lane.items[item] = None
        lane.rows += item.rows
        item.lane = lane
        self._queued_rows += item.rows
        self._queued += 1
        item.future.add_done_callback(lambda _: self._on_item_done(item))
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch())
        elif lane.rows >= self.options.max_batch_size:
            self._poke()  # full: the batch need not wait out max_wait_s

    def _unqueue(self, item: _Item) -> None:
        lane = item.lane
        assert lane is not None
        del lane.items[item]
        lane.rows -= item.rows
        item.lane = None
        self._queued_rows -= item.rows
        self._queued -= 1
        if not lane.items:
            del self._lanes[lane.key]
            self._poke()

    def _on_item_done(self, item: _Item) -> None:
        """A call ended: if its caller went away while queued, drop it; if it was the last one
        its running batch still owed an answer, cancel the batch (nobody waits for it)."""
        if item.lane is not None:  # only a cancelled caller ends while still queued
            self._drop(item, "cancelled")
            return
        batch = item.batch
        if batch is None:
            return
        batch.live -= 1
        if batch.live == 0 and item.future.cancelled() and batch.task is not None:
            batch.task.cancel()

    def _drop(self, item: _Item, reason: DropReason) -> None:
        self._unqueue(item)
        waited_s = self._clock.monotonic() - item.enqueued_s
        self._on_event(BatchItemDropped(self.target, item.rows, waited_s, reason))
        if reason == "deadline" and not item.future.done():
            item.future.set_exception(
                BackendTimeoutError(
                    f"{self._who}: the deadline passed after {waited_s:.3g} s queued for a "
                    "batch; not run"
                )
            )

    # --- forming batches ---------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Form and start batches while calls are queued; ends when the queue is empty."""
        opts = self.options
        try:
            while self._lanes:
                if self._running >= opts.max_concurrent_batches:
                    await self._sleep(None)  # until a batch ends
                    continue
                lane = min(self._lanes.values(), key=lambda lane: lane.head().enqueued_s)
                now = self._clock.monotonic()
                due = lane.head().enqueued_s + opts.max_wait_s
                if lane.rows < opts.max_batch_size and now < due:
                    await self._sleep(due - now)  # or until a lane fills up
                    continue
                items = self._take(lane, now)
                if items:
                    self._start(items, lane.call_next)
        except Exception as exc:  # a bug here must fail the queued calls, never strand them
            logger.exception("batch dispatcher failed", extra={"target": self.target})
            self._fail_queued(exc)
        finally:
            self._dispatcher = None

    async def _sleep(self, seconds: float | None) -> None:
        """Wait `seconds` (None: no limit), or until `_poke`."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            async with self._clock.timeout(seconds):
                await self._wake
        except TimeoutError:
            pass
        finally:
            self._wake = None

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _take(self, lane: _Lane, now: float) -> list[_Item]:
        """The oldest live calls of `lane` up to the batch's row limit; the expired are dropped."""
        taken: list[_Item] = []
        rows = 0
        earliest: float | None = None
        while lane.items:
            item = lane.head()
            if item.future.done():  # cancelled a moment ago; its callback has not run yet
                self._drop(item, "cancelled")
                continue
            if item.ctx.expired(now):
                self._drop(item, "deadline")
                continue
            deadline = item.ctx.deadline
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
            if taken and rows + item.rows > self._row_limit(earliest, now):
                break
            self._unqueue(item)
            taken.append(item)
            rows += item.rows
            if rows >= self.options.max_batch_size:
                break
        return taken

    def _row_limit(self, earliest: float | None, now: float) -> int:
        """Rows a batch may hold: `max_batch_size`, or fewer to end before `earliest` (adaptive)."""
        cap = self.options.max_batch_size
        if not self.options.adaptive or self._row_s is None or earliest is None:
            return cap
        return min(cap, int((earliest - now) / self._row_s))

    def _fail_queued(self, exc: Exception) -> None:
        for lane in list(self._lanes.values()):
            for item in list(lane.items):
                self._unqueue(item)
                if not item.future.done():
                    item.future.set_exception(exc)

    # --- running batches ---------------------------------------------------------------------

    def _start(self, items: list[_Item], call_next: InferenceHandler) -> None:
        batch = _Batch(items, live=len(items))
        for item in items:
            item.batch = batch
        self._running += 1
        task = asyncio.create_task(self._execute(batch, call_next))
        batch.task = task
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _execute(self, batch: _Batch, call_next: InferenceHandler) -> None:
        try:
            await self._run(batch.items, call_next)
        except asyncio.CancelledError:
            # Every caller left, or the loop is shutting down: nobody is left to answer.
            for item in batch.items:
                item.future.cancel()
            raise
        except Exception as exc:  # a bug must fail this batch's calls, never strand them
            logger.exception("batch failed unexpectedly", extra={"target": self.target})
            for item in batch.items:
                if not item.future.done():
                    item.future.set_exception(exc)
        finally:
            self._running -= 1
            self._poke()

    async def _run(self, items: list[_Item], call_next: InferenceHandler) -> None:
        """Call the backend once for the live `items`; split the batch if one input failed it."""
        started = self._clock.monotonic()
        live = [item for item in items if not item.future.done()]
        for item in live:
            if item.ctx.expired(started):  # a half of a split batch, tried again too late
                _settle(item, BackendTimeoutError(f"{self._who}: the deadline passed"))
        live = [item for item in live if not item.future.done()]
        if not live:
            return
        rows = sum(item.rows for item in live)
        wait_s = started - min(item.enqueued_s for item in live)
        try:
            if len(live) == 1:
                response = await call_next(live[0].request, live[0].ctx)
            else:
                ctx = _merged_context(live)
                response = await call_next(merge([item.request for item in live]), ctx)
                for item in live:
                    _share_headers(ctx, item.ctx)
        except Exception as exc:
            code = exc.code if isinstance(exc, SeawallError) else type(exc).__name__
            self._executed(live, rows, wait_s, started, code)
            if isinstance(exc, _SPLITTABLE) and len(live) > 1:
                self._on_event(BatchSplit(self.target, len(live), rows, code))
                half = len(live) // 2
                await self._run(live[:half], call_next)
                await self._run(live[half:], call_next)
                return
            for item in live:
                _settle(item, exc)
            return
        self._learn(self._clock.monotonic() - started, rows)
        self._executed(live, rows, wait_s, started, None)
        self._answer(live, response)

    def _answer(self, live: list[_Item], response: InferenceResponse) -> None:
        # A call alone is held to its rows too: whether it fails must not depend on its company.
        try:
            parts = split(response, [i.request for i in live], [i.rows for i in live], self._who)
        except BadResponseError as exc:
            for item in live:
                _settle(item, exc)
            return
        for item, part in zip(live, parts, strict=True):
            _settle(item, part)

    def _executed(
        self, live: list[_Item], rows: int, wait_s: float, started: float, error: str | None
    ) -> None:
        for item in live:
            item.ctx.annotations["batch_requests"] = len(live)
        duration_s = self._clock.monotonic() - started
        self._on_event(BatchExecuted(self.target, len(live), rows, wait_s, duration_s, error))

    def _learn(self, duration_s: float, rows: int) -> None:
        row_s = duration_s / rows
        last = self._row_s
        self._row_s = row_s if last is None else last + _ROW_TIME_ALPHA * (row_s - last)

    @property
    def _who(self) -> str:
        return f"model {self.target!r}" if self.target else "the model"

    def __repr__(self) -> str:
        opts = self.options
        return (
            f"BatchingPolicy({self.target!r}, max_batch_size={opts.max_batch_size}, "
            f"queued_rows={self._queued_rows}/{opts.max_queue_rows}, "
            f"batches_in_flight={self._running}/{opts.max_concurrent_batches})"
        )


def _merged_context(items: list[_Item]) -> CallContext:
    """The batch's context: the latest deadline of its calls (None if one has none)."""
    deadlines = [item.ctx.deadline for item in items]
    first = items[0].ctx
    return CallContext(
        request_id=new_request_id(),
        deadline=None if None in deadlines else max(d for d in deadlines if d is not None),
        priority=min(item.ctx.priority for item in items),
        trace=first.trace,
    )


def _share_headers(batch: CallContext, ctx: CallContext) -> None:
    for name, value in batch.response_headers.items():
        ctx.response_headers.setdefault(name, value)


def _settle(item: _Item, outcome: InferenceResponse | BaseException) -> None:
    if item.future.done():  # its caller left meanwhile
        return
    if isinstance(outcome, BaseException):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)
