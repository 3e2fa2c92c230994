"""Admission control: one global in-flight limit with priority classes and delay-based shedding.

One instance is shared by every model's pipeline. A call runs at once when fewer than its
class's share of `max_in_flight` calls are running; otherwise it waits in one bounded queue,
served most important class first and FIFO within a class. Overload is answered early and
cheaply, with 503 and `Retry-After`, in this order of preference:

1. **Queueing delay** (in the spirit of CoDel and Ray Serve's bounded queues): a newcomer that
   would wait longer than `target_queue_delay_s` is refused at once instead of queued. The
   estimate is ``(calls queued ahead of it + 1) * service / max_in_flight``: `max_in_flight`
   slots each free up about once per `service` seconds, where `service` is an exponentially
   weighted moving average of how long admitted calls held their slot (success, failure or
   cancellation alike: the slot is what the queue waits for). Only calls of the same or a more
   important class count as ahead, so batch calls are shed long before critical ones. Until a
   call has completed there is no estimate, and only the two bounds below apply.
2. **Queue bound**: a full queue refuses the newcomer, unless a less important call is queued:
   then the newest of the least important class is evicted to make room.
3. **Wait bound**: a queued call gives up after `max_queue_delay_s`, or at its deadline (504).

Priority classes (Envoy's priorities, Google's criticality): each class may fill only its
share of the slots (`class_capacity`), so the last slots are kept for more important calls.
Refusing never awaits and costs O(1): a few counters, three queues, one allocation.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext, Priority
from seawall.errors import BackendTimeoutError, OverloadedError
from seawall.pipeline import EventSink, Handler, discard

__all__ = [
    "AdmissionOptions",
    "AdmissionPolicy",
    "AdmissionSnapshot",
    "CallShed",
    "ClassCapacity",
    "ServiceTimeAverage",
]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

#: Calls that may run at the same time across every model.
DEFAULT_MAX_IN_FLIGHT = 128
#: Calls that may wait for admission; beyond it, the least important are refused.
DEFAULT_MAX_QUEUE = 256
#: Seconds of expected queueing beyond which a newcomer is refused at once.
DEFAULT_TARGET_QUEUE_DELAY_S = 0.1
#: Seconds a queued call waits at most before it is refused.
DEFAULT_MAX_QUEUE_DELAY_S = 1.0
#: Weight of the newest sample in the service-time moving average (1: only the last counts).
DEFAULT_EWMA_ALPHA = 0.2
#: Share of `max_in_flight` each class may fill.
DEFAULT_CRITICAL_CAPACITY = 1.0
DEFAULT_NORMAL_CAPACITY = 0.9
DEFAULT_BATCH_CAPACITY = 0.6

#: Why a call was refused.
ShedReason = Literal["queue delay", "queue full", "evicted", "wait exceeded", "deadline"]

_MOST_IMPORTANT_FIRST = tuple(sorted(Priority))
_LEAST_IMPORTANT_FIRST = _MOST_IMPORTANT_FIRST[::-1]


@dataclass(frozen=True, slots=True)
class ClassCapacity:
    """The share of `max_in_flight` each priority class may fill (0 < share ≤ 1)."""

    #: Share of the slots critical calls may fill.
    critical: float = DEFAULT_CRITICAL_CAPACITY
    #: Share of the slots normal calls may fill.
    normal: float = DEFAULT_NORMAL_CAPACITY
    #: Share of the slots batch calls may fill.
    batch: float = DEFAULT_BATCH_CAPACITY

    def __post_init__(self) -> None:
        for name in ("critical", "normal", "batch"):
            share = getattr(self, name)
            if not 0 < share <= 1:
                raise ValueError(f"class_capacity.{name}: must be in (0, 1], got {share}")
        if not self.critical >= self.normal >= self.batch:
            raise ValueError(
                "class_capacity: a less important class may not get a larger share "
                f"(critical {self.critical}, normal {self.normal}, batch {self.batch})"
            )

    def of(self, priority: Priority) -> float:
        """The share of `priority`'s class."""
        return (self.critical, self.normal, self.batch)[priority]


#: Critical 1.0, normal 0.9, batch 0.6 of `max_in_flight`.
DEFAULT_CLASS_CAPACITY = ClassCapacity()


@dataclass(frozen=True, slots=True)
class AdmissionOptions:
    """The global concurrency limit, its queue, and when to shed."""

    #: Calls that may run at the same time across every model (at least 1).
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: Calls that may wait for admission (0: refuse when the class's slots are taken).
    max_queue: int = DEFAULT_MAX_QUEUE
    #: Seconds of estimated queueing beyond which a newcomer is refused without queueing.
    target_queue_delay_s: float = DEFAULT_TARGET_QUEUE_DELAY_S
    #: Seconds a queued call waits at most (at least `target_queue_delay_s`).
    max_queue_delay_s: float = DEFAULT_MAX_QUEUE_DELAY_S
    #: Share of `max_in_flight` each priority class may fill.
    class_capacity: ClassCapacity = DEFAULT_CLASS_CAPACITY
    #: Weight of the newest sample in the service-time moving average, in (0, 1].
    ewma_alpha: float = DEFAULT_EWMA_ALPHA

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight: must be at least 1, got {self.max_in_flight}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue: must be 0 or more, got {self.max_queue}")
        target = self.target_queue_delay_s
        if not (math.isfinite(target) and target >= 0):
            raise ValueError(f"target_queue_delay_s: must be 0 or more, got {target}")
        limit = self.max_queue_delay_s
        if not (math.isfinite(limit) and limit > 0 and limit >= target):
            raise ValueError(
                f"max_queue_delay_s: must be positive and at least target_queue_delay_s "
                f"({target}), got {limit}"
            )
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f"ewma_alpha: must be in (0, 1], got {self.ewma_alpha}")


@dataclass(frozen=True, slots=True)
class CallShed:
    """A call was refused to protect the service; `estimated_delay_s` is None before any data."""

    target: str
    priority: Priority
    reason: ShedReason
    in_flight: int
    waiting: int
    estimated_delay_s: float | None


@dataclass(frozen=True, slots=True)
class AdmissionSnapshot:
    """Occupancy, limits and the service-time estimate now, for metrics and the admin API."""

    target: str
    in_flight: int
    waiting: int
    #: Queued calls per class, most important first (critical, normal, batch).
    waiting_by_priority: tuple[int, ...]
    max_in_flight: int
    max_queue: int
    service_time_s: float | None


class ServiceTimeAverage:
    """Exponentially weighted moving average of slot hold times; the first sample seeds it."""

    __slots__ = ("alpha", "samples", "value")

    def __init__(self, alpha: float = DEFAULT_EWMA_ALPHA) -> None:
        self.alpha = alpha
        self.value: float | None = None
        self.samples = 0

    def add(self, seconds: float) -> None:
        """Fold in one call's hold time."""
        last = self.value
        self.value = seconds if last is None else last + self.alpha * (seconds - last)
        self.samples += 1


class AdmissionPolicy(Generic[RequestT, ResponseT]):
    """Global admission: a shared in-flight limit, a priority queue, early shedding by delay."""

    name = "admission"

    def __init__(
        self,
        options: AdmissionOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = options or AdmissionOptions()
        self.target = target
        self._clock = clock or SystemClock()
        self._on_event = on_event
        n = self.options.max_in_flight
        # Rounded down (the epsilon absorbs 0.29 * 100 = 28.999...), but every class gets a slot.
        self._limits = tuple(
            max(1, int(n * self.options.class_capacity.of(p) + 1e-9)) for p in Priority
        )
        self._queues: tuple[OrderedDict[asyncio.Future[None], None], ...] = tuple(
            OrderedDict() for _ in Priority
        )
        self._in_flight = 0
        self.service_time = ServiceTimeAverage(self.options.ewma_alpha)

    @property
    def in_flight(self) -> int:
        """Admitted calls running now, across every model."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Calls queued for admission."""
        return sum(len(q) for q in self._queues)

    def limit(self, priority: Priority) -> int:
        """Slots calls of `priority` may fill."""
        return self._limits[priority]

    def estimated_delay_s(self, priority: Priority) -> float | None:
        """Expected wait of a `priority` call queued now; None until a call has completed."""
        service_s = self.service_time.value
        if service_s is None:
            return None
        ahead = sum(len(q) for q in self._queues[: priority + 1])
        return (ahead + 1) * service_s / self.options.max_in_flight

    def snapshot(self) -> AdmissionSnapshot:
        """Occupancy, limits and estimate now."""
        opts = self.options
        return AdmissionSnapshot(
            target=self.target,
            in_flight=self._in_flight,
            waiting=self.waiting,
            waiting_by_priority=tuple(len(q) for q in self._queues),
            max_in_flight=opts.max_in_flight,
            max_queue=opts.max_queue,
            service_time_s=self.service_time.value,
        )

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        priority = ctx.priority
        now = self._clock.monotonic()
        if ctx.expired(now):
            raise BackendTimeoutError(f"{self._who}: the deadline passed before the call started")
        if self._in_flight < self._limits[priority] and not self._ahead(priority):
            self._in_flight += 1
        else:
            await self._wait(priority, ctx, now)
        started = self._clock.monotonic()
        try:
            return await call_next(request, ctx)
        finally:
            self.service_time.add(self._clock.monotonic() - started)
            self._release()

    def _ahead(self, priority: Priority) -> bool:
        return any(self._queues[: priority + 1])

    async def _wait(self, priority: Priority, ctx: CallContext, now: float) -> None:
        """Queue for admission; every refusal is raised before the first await."""
        granted = self._enqueue(priority)
        limit_s = self.options.max_queue_delay_s
        left = ctx.time_left(now)
        by_deadline = left is not None and left < limit_s
        wait_s = left if left is not None and by_deadline else limit_s
        try:
            async with self._clock.timeout(wait_s):
                await granted
        except TimeoutError:
            self._abandon(priority, granted)
            raise self._gave_up(priority, wait_s, by_deadline=by_deadline) from None
        except BaseException:  # cancelled or evicted: leave the queue, and never keep a slot
            self._abandon(priority, granted)
            raise

    def _enqueue(self, priority: Priority) -> asyncio.Future[None]:
        estimate = self.estimated_delay_s(priority)
        target_s = self.options.target_queue_delay_s
        if estimate is not None and estimate > target_s:
            raise self._shed(
                priority,
                "queue delay",
                f"would wait about {estimate:.3g} s, over the target of {target_s:.3g} s",
            )
        if self.waiting >= self.options.max_queue and not self._evict_for(priority):
            raise self._shed(priority, "queue full", "found the queue full")
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues[priority][granted] = None
        return granted

    def _evict_for(self, priority: Priority) -> bool:
        """Make room by refusing the newest of the least important class queued, if below ours."""
        for victim_priority in _LEAST_IMPORTANT_FIRST:
            if victim_priority <= priority:
                return False
            queue = self._queues[victim_priority]
            if queue:
                victim, _ = queue.popitem(last=True)
                if not victim.done():  # one cancelled a moment ago is leaving anyway
                    why = f"was evicted from the queue by a {priority.name.lower()} call"
                    victim.set_exception(self._shed(victim_priority, "evicted", why))
                return True
        return False

    def _gave_up(self, priority: Priority, waited_s: float, *, by_deadline: bool) -> Exception:
        if by_deadline:
            self._emit(priority, "deadline", self.estimated_delay_s(priority))
            return BackendTimeoutError(
                f"{self._who}: the deadline passed after {waited_s:.3g} s waiting for admission "
                f"({self._counts()})"
            )
        return self._shed(priority, "wait exceeded", f"was not admitted within {waited_s:.3g} s")

    def _abandon(self, priority: Priority, granted: asyncio.Future[None]) -> None:
        if granted.done() and not granted.cancelled():
            if granted.exception() is None:
                self._release()  # admitted as we gave up: pass the slot on
        else:
            self._queues[priority].pop(granted, None)

    def _release(self) -> None:
        """Free a slot and admit the most important, oldest waiters its class limits allow."""
        self._in_flight -= 1
        for priority in _MOST_IMPORTANT_FIRST:
            queue = self._queues[priority]
            while queue and self._in_flight < self._limits[priority]:
                granted, _ = queue.popitem(last=False)
                if not granted.done():  # skip a waiter cancelled a moment ago
                    self._in_flight += 1
                    granted.set_result(None)

    def _shed(self, priority: Priority, reason: ShedReason, why: str) -> OverloadedError:
        estimate = self.estimated_delay_s(priority)
        self._emit(priority, reason, estimate)
        retry_after_s = self.options.max_queue_delay_s if estimate is None else estimate
        return OverloadedError(
            f"{self._who} is overloaded: a {priority.name.lower()} call {why} ({self._counts()})",
            retry_after_s=retry_after_s,
        )

    def _emit(self, priority: Priority, reason: ShedReason, estimate: float | None) -> None:
        self._on_event(
            CallShed(self.target, priority, reason, self._in_flight, self.waiting, estimate)
        )

    def _counts(self) -> str:
        opts = self.options
        return (
            f"{self._in_flight} in flight, {self.waiting} waiting; "
            f"limits {opts.max_in_flight}/{opts.max_queue}"
        )

    @property
    def _who(self) -> str:
        return repr(self.target) if self.target else "the gateway"

    def __repr__(self) -> str:
        opts = self.options
        return (
            f"AdmissionPolicy({self.target!r}, in_flight={self._in_flight}/{opts.max_in_flight}, "
            f"waiting={self.waiting}/{opts.max_queue})"
        )
