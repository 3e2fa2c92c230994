"""Outlier detection: an endpoint that fails repeatedly is taken out of its pool for a while.

Follows Envoy's consecutive-5xx outlier detection:

- `consecutive_5xx` failures in a row eject an endpoint; any success resets its count.
- The n-th ejection lasts `n * base_ejection_time_s`, capped at `max_ejection_time_s`; every full
  `decay_interval_s` an endpoint then spends in service takes one off n (Envoy's multiplier
  decrement), so an endpoint that recovered for good starts again from the base time.
- An ejected endpoint returns by itself once its time has passed (checked lazily, on the clock,
  whenever the pool looks), or earlier through `return_early` (active health checks saw it
  recover); it returns with a clean count.
- `max_ejection_percent` bounds how much of the pool may be ejected at once. As in Envoy, the
  first ejection is always allowed; further ones only while the share stays within the maximum
  (Envoy may overshoot the share by one endpoint; this never does). Unlike Envoy, the last
  endpoint in service is never ejected, so a pool of one never ejects and a pool never ejects
  itself to zero.

An endpoint that keeps failing while the maximum is reached is ejected on its next failure after
room frees up. Results of calls that were in flight when their endpoint was ejected are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from seawall.clock import Clock, SystemClock
from seawall.pipeline import EventSink, discard

__all__ = [
    "EjectionSkipped",
    "EndpointEjected",
    "EndpointReturned",
    "OutlierDetector",
    "OutlierOptions",
]

DEFAULT_CONSECUTIVE_5XX = 5
DEFAULT_BASE_EJECTION_TIME_S = 30.0
DEFAULT_MAX_EJECTION_TIME_S = 300.0
DEFAULT_MAX_EJECTION_PERCENT = 10.0
DEFAULT_DECAY_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class OutlierOptions:
    """When an endpoint is ejected from its pool, and for how long (Envoy's names and defaults)."""

    #: Failures in a row (`BackendError`s) that eject an endpoint.
    consecutive_5xx: int = DEFAULT_CONSECUTIVE_5XX
    #: Seconds the first ejection lasts; the n-th lasts n times this.
    base_ejection_time_s: float = DEFAULT_BASE_EJECTION_TIME_S
    #: Seconds an ejection lasts at most, however often the endpoint was ejected.
    max_ejection_time_s: float = DEFAULT_MAX_EJECTION_TIME_S
    #: Most of the pool ejected at once, in percent (one is always allowed); 0 turns ejection off.
    max_ejection_percent: float = DEFAULT_MAX_EJECTION_PERCENT
    #: Seconds in service that take one off an endpoint's ejection multiplier.
    decay_interval_s: float = DEFAULT_DECAY_INTERVAL_S

    def __post_init__(self) -> None:
        if self.consecutive_5xx < 1:
            raise ValueError(f"consecutive_5xx: must be at least 1, got {self.consecutive_5xx}")
        if not self.base_ejection_time_s > 0:
            raise ValueError(
                f"base_ejection_time_s: must be more than 0, got {self.base_ejection_time_s}"
            )
        if not self.max_ejection_time_s >= self.base_ejection_time_s:
            raise ValueError(
                f"max_ejection_time_s: must be at least base_ejection_time_s "
                f"({self.base_ejection_time_s}), got {self.max_ejection_time_s}"
            )
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError(
                f"max_ejection_percent: must be between 0 and 100, got {self.max_ejection_percent}"
            )
        if not self.decay_interval_s > 0:
            raise ValueError(f"decay_interval_s: must be more than 0, got {self.decay_interval_s}")


@dataclass(frozen=True, slots=True)
class EndpointEjected:
    """An endpoint was taken out of its pool for `ejection_s` seconds."""

    target: str
    endpoint: str
    index: int
    consecutive_failures: int
    ejection_s: float
    #: Endpoints of the pool ejected now, this one included.
    ejected_total: int


@dataclass(frozen=True, slots=True)
class EndpointReturned:
    """An ejected endpoint's time was up; it takes traffic again."""

    target: str
    endpoint: str
    index: int
    ejected_s: float


@dataclass(frozen=True, slots=True)
class EjectionSkipped:
    """An endpoint qualified for ejection but stayed in: the pool is at its maximum (Envoy's
    `ejections_overflow`)."""

    target: str
    endpoint: str
    index: int
    consecutive_failures: int
    ejected_total: int


class _Endpoint:
    """What the detector knows of one endpoint."""

    __slots__ = ("consecutive", "ejected_at", "multiplier", "name", "returned_at", "returns_at")

    def __init__(self, name: str) -> None:
        self.name = name
        self.consecutive = 0
        self.multiplier = 0
        self.ejected_at = 0.0
        self.returns_at: float | None = None  # None: in service
        self.returned_at: float | None = None


class OutlierDetector:
    """Counts failures per endpoint of a pool and decides ejections and returns."""

    def __init__(
        self,
        endpoints: Sequence[str],
        options: OutlierOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        if not endpoints:
            raise ValueError("endpoints: a pool needs at least one endpoint")
        self.options = options or OutlierOptions()
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._target = target
        self._endpoints = [_Endpoint(name) for name in endpoints]
        self._ejected = 0
        self._next_return = math.inf
        opts = self.options
        # Past this multiplier every ejection lasts the maximum; stop counting so decay can work.
        self._max_multiplier = math.ceil(opts.max_ejection_time_s / opts.base_ejection_time_s)

    @property
    def size(self) -> int:
        return len(self._endpoints)

    @property
    def ejected_total(self) -> int:
        """Endpoints ejected now."""
        self.refresh()
        return self._ejected

    def is_ejected(self, index: int) -> bool:
        self.refresh()
        return self._endpoints[index].returns_at is not None

    def in_service(self) -> list[int]:
        """Indices of the endpoints not ejected now, in order."""
        self.refresh()
        return [i for i, e in enumerate(self._endpoints) if e.returns_at is None]

    def consecutive_failures(self, index: int) -> int:
        return self._endpoints[index].consecutive

    def record_success(self, index: int) -> None:
        endpoint = self._endpoints[index]
        if endpoint.returns_at is None:
            endpoint.consecutive = 0

    def record_failure(self, index: int) -> None:
        """Count a failure; eject the endpoint if it reached the threshold and the pool allows."""
        self.refresh()
        endpoint = self._endpoints[index]
        if endpoint.returns_at is not None:
            return  # a call that started before the ejection: already accounted for
        endpoint.consecutive += 1
        if endpoint.consecutive < self.options.consecutive_5xx:
            return
        if self._may_eject():
            self._eject(index, endpoint)
        else:
            self._on_event(
                EjectionSkipped(
                    self._target, endpoint.name, index, endpoint.consecutive, self._ejected
                )
            )

    def refresh(self) -> None:
        """Return every endpoint whose ejection time has passed."""
        now = self._clock.monotonic()
        if now < self._next_return:
            return
        self._next_return = math.inf
        for index, endpoint in enumerate(self._endpoints):
            if endpoint.returns_at is None:
                continue
            if endpoint.returns_at <= now:
                # Back as of its return time, not as of this (lazy) look.
                returned_at = endpoint.returns_at
                endpoint.returns_at, endpoint.returned_at = None, returned_at
                endpoint.consecutive = 0
                self._ejected -= 1
                self._on_event(
                    EndpointReturned(
                        self._target, endpoint.name, index, returned_at - endpoint.ejected_at
                    )
                )
            else:
                self._next_return = min(self._next_return, endpoint.returns_at)

    def return_early(self, index: int) -> bool:
        """Return an ejected endpoint now, before its time is up; False if it was in service.

        The pool calls this when its active health checks see an unhealthy endpoint recover
        (Envoy's `successful_active_health_check_uneject_host`, here only on that recovery, so
        an endpoint that passes its checks but keeps failing calls stays ejected).
        """
        self.refresh()
        endpoint = self._endpoints[index]
        if endpoint.returns_at is None:
            return False
        now = self._clock.monotonic()
        endpoint.returns_at, endpoint.returned_at = None, now
        endpoint.consecutive = 0
        self._ejected -= 1
        self._on_event(
            EndpointReturned(self._target, endpoint.name, index, now - endpoint.ejected_at)
        )
        return True

    def _may_eject(self) -> bool:
        ejected, total = self._ejected, len(self._endpoints)
        percent = self.options.max_ejection_percent
        if percent == 0 or ejected + 1 >= total:
            return False  # off, or it would leave no endpoint in service
        return ejected == 0 or (ejected + 1) * 100 <= percent * total

    def _eject(self, index: int, endpoint: _Endpoint) -> None:
        opts = self.options
        now = self._clock.monotonic()
        if endpoint.returned_at is not None:
            served = int((now - endpoint.returned_at) // opts.decay_interval_s)
            endpoint.multiplier = max(0, endpoint.multiplier - served)
        endpoint.multiplier = min(endpoint.multiplier + 1, self._max_multiplier)
        ejection_s = min(opts.base_ejection_time_s * endpoint.multiplier, opts.max_ejection_time_s)
        endpoint.ejected_at, endpoint.returns_at = now, now + ejection_s
        self._next_return = min(self._next_return, endpoint.returns_at)
        self._ejected += 1
        self._on_event(
            EndpointEjected(
                self._target, endpoint.name, index, endpoint.consecutive, ejection_s, self._ejected
            )
        )

    def __repr__(self) -> str:
        return f"OutlierDetector({self._target or 'pool'!r}, ejected={self._ejected}/{self.size})"
