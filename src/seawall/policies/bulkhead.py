"""Bulkhead: a concurrency cap per model or variant, with a bounded FIFO wait queue.

Each model gets its own instance, so a saturated model fills only its own slots and queue and
never slows the others. A call takes one of `max_concurrent` slots or waits in a queue of at
most `max_queue` calls, for at most `max_wait_s` (and never past the call's deadline). A full
queue is answered at once with 503 and `Retry-After`.

Fairness is that of resilience4j's `SemaphoreBulkhead` (a fair semaphore) and Envoy's pending
request queue: a released slot is handed straight to the oldest waiter (the in-flight count
never drops in between), so a newcomer can never overtake a queued call. A waiter that is
cancelled or gives up leaves the queue; if a slot reached it at that very moment, it passes the
slot on, so none ever leaks.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError, OverloadedError
from seawall.pipeline import EventSink, Handler, discard

__all__ = ["BulkheadOptions", "BulkheadPolicy", "BulkheadRejected", "BulkheadSnapshot"]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

#: Calls of one model that may run at the same time.
DEFAULT_MAX_CONCURRENT = 16
#: Calls that may wait for a slot; one more is refused at once (503).
DEFAULT_MAX_QUEUE = 32
#: Longest a call waits for a slot, in seconds, before it is refused (503).
DEFAULT_MAX_WAIT_S = 1.0
#: Weight of the newest hold time in the moving average behind `Retry-After` estimates.
_HOLD_TIME_ALPHA = 0.2

#: Why a call was refused: the queue was full, its wait ran out, or its deadline passed waiting.
RejectReason = Literal["queue full", "wait exceeded", "deadline"]


@dataclass(frozen=True, slots=True)
class BulkheadOptions:
    """How many calls of one model run at once, and how many wait, for how long."""

    #: Calls that may run at the same time (at least 1).
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    #: Calls that may wait for a slot (0: refuse as soon as every slot is taken).
    max_queue: int = DEFAULT_MAX_QUEUE
    #: Seconds a call may wait for a slot; the call's deadline may cut it shorter.
    max_wait_s: float = DEFAULT_MAX_WAIT_S

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent: must be at least 1, got {self.max_concurrent}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue: must be 0 or more, got {self.max_queue}")
        if not (math.isfinite(self.max_wait_s) and self.max_wait_s > 0):
            raise ValueError(f"max_wait_s: must be a positive number, got {self.max_wait_s}")


@dataclass(frozen=True, slots=True)
class BulkheadRejected:
    """A call was refused: `reason` says why; the counts are as it was refused."""

    target: str
    in_flight: int
    waiting: int
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class BulkheadSnapshot:
    """The bulkhead's occupancy now, for metrics (gauges) and the admin API."""

    target: str
    in_flight: int
    waiting: int
    max_concurrent: int
    max_queue: int


class BulkheadPolicy(Generic[RequestT, ResponseT]):
    """Caps one model's concurrent calls; the rest wait in a bounded FIFO queue, briefly."""

    name = "bulkhead"

    def __init__(
        self,
        options: BulkheadOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = options or BulkheadOptions()
        self.target = target
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._in_flight = 0
        # Insertion-ordered, O(1) removal from anywhere: the oldest waiter is first.
        self._waiters: OrderedDict[asyncio.Future[None], None] = OrderedDict()
        self._hold_s: float | None = None

    @property
    def in_flight(self) -> int:
        """Slots taken, including one just handed to a waiter that has not resumed yet."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Calls queued for a slot."""
        return len(self._waiters)

    def snapshot(self) -> BulkheadSnapshot:
        """Occupancy and limits now."""
        opts = self.options
        return BulkheadSnapshot(
            self.target, self._in_flight, len(self._waiters), opts.max_concurrent, opts.max_queue
        )

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        now = self._clock.monotonic()
        if ctx.expired(now):
            raise BackendTimeoutError(f"{self._who}: the deadline passed before the call started")
        if self._in_flight < self.options.max_concurrent and not self._waiters:
            self._in_flight += 1
        else:
            await self._wait(ctx, now)
        started = self._clock.monotonic()
        try:
            return await call_next(request, ctx)
        finally:
            self._learn(self._clock.monotonic() - started)
            self._release()

    async def _wait(self, ctx: CallContext, now: float) -> None:
        """Queue for a slot; raises at once (before any await) when the queue is full."""
        opts = self.options
        if len(self._waiters) >= opts.max_queue:
            raise self._reject(
                "queue full",
                f"{self._who}: {self._in_flight} calls in flight and {len(self._waiters)} "
                f"waiting (limits {opts.max_concurrent}/{opts.max_queue})",
            )
        left = ctx.time_left(now)
        by_deadline = left is not None and left < opts.max_wait_s
        wait_s = left if left is not None and by_deadline else opts.max_wait_s
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[granted] = None
        try:
            async with self._clock.timeout(wait_s):
                await granted
        except TimeoutError:
            self._abandon(granted)
            raise self._gave_up(wait_s, by_deadline=by_deadline) from None
        except BaseException:  # cancelled: leave the queue, and never keep a slot
            self._abandon(granted)
            raise

    def _gave_up(self, waited_s: float, *, by_deadline: bool) -> Exception:
        counts = f"{self._in_flight} in flight, {len(self._waiters)} waiting"
        if by_deadline:
            self._emit("deadline")
            return BackendTimeoutError(
                f"{self._who}: the deadline passed after waiting {waited_s:.3g} s for a call "
                f"slot ({counts})"
            )
        return self._reject(
            "wait exceeded",
            f"{self._who}: no call slot came free within {waited_s:.3g} s "
            f"({counts}; limits {self.options.max_concurrent}/{self.options.max_queue})",
        )

    def _abandon(self, granted: asyncio.Future[None]) -> None:
        if granted.done() and not granted.cancelled():
            self._release()  # the slot reached us as we gave up: pass it on
        else:
            self._waiters.pop(granted, None)

    def _release(self) -> None:
        """Hand the slot to the oldest live waiter, or free it."""
        while self._waiters:
            granted, _ = self._waiters.popitem(last=False)
            # A waiter cancelled a moment ago may not have left yet: skip it.
            if not granted.done():
                granted.set_result(None)
                return
        self._in_flight -= 1

    def _learn(self, hold_s: float) -> None:
        last = self._hold_s
        self._hold_s = hold_s if last is None else last + _HOLD_TIME_ALPHA * (hold_s - last)

    def _retry_after_s(self) -> float:
        """When the queue should have room: its drain time, at most `max_wait_s`.

        Every call queued now is served or gives up within `max_wait_s`, so that is the bound;
        with a measured hold time, the queue drains in about (waiting + 1) * hold / slots.
        """
        opts = self.options
        if self._hold_s is None:
            return opts.max_wait_s
        drain_s = (len(self._waiters) + 1) * self._hold_s / opts.max_concurrent
        return min(opts.max_wait_s, drain_s)

    def _reject(self, reason: RejectReason, message: str) -> OverloadedError:
        self._emit(reason)
        return OverloadedError(message, retry_after_s=self._retry_after_s())

    def _emit(self, reason: RejectReason) -> None:
        self._on_event(BulkheadRejected(self.target, self._in_flight, len(self._waiters), reason))

    @property
    def _who(self) -> str:
        return f"model {self.target!r}" if self.target else "the model"

    def __repr__(self) -> str:
        opts = self.options
        return (
            f"BulkheadPolicy({self.target!r}, in_flight={self._in_flight}/{opts.max_concurrent}, "
            f"waiting={len(self._waiters)}/{opts.max_queue})"
        )
