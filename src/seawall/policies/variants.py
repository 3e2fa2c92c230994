"""The variants of one model: who gets which share of traffic (`TrafficSplit`), and how each did.

`TrafficSplit` is the mutable traffic state a rollout controller drives: the `stable` version,
an optional `canary` and the canary's share in percent. Readers (the router, on every call) take
one immutable `SplitState` and never lock; writers serialise on a lock, so the event loop and a
controller (a task, or a thread) can share one split.

`VariantStats` keeps what one version did over the last `window_s` seconds of the clock: calls,
server-side errors and latencies. Only failures that are the service's fault count as errors
(`is_server_error`): a client's invalid input, missing credentials or exhausted quota say
nothing about the version that refused them.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from seawall.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    RejectedError,
    UnauthorizedError,
)

__all__ = [
    "CANARY",
    "SHADOW",
    "STABLE",
    "LatencySamples",
    "SplitState",
    "TrafficSplit",
    "VariantStats",
    "VariantWindow",
    "is_server_error",
]

#: Role names: the version serving most traffic, the one being tried, the one only mirrored.
STABLE = "stable"
CANARY = "canary"
SHADOW = "shadow"

#: Seconds of history a `VariantStats` covers when no window is given.
DEFAULT_WINDOW_S = 60
#: Latencies a `VariantStats` keeps at most (the most recent); counts are exact regardless.
DEFAULT_LATENCY_SAMPLES = 10_000

# The client's own mistakes (4xx): a version refusing them is not failing.
_CLIENT_ERRORS: tuple[type[Exception], ...] = (
    InvalidInputError,
    PayloadTooLargeError,
    NotFoundError,
    ConflictError,
    UnauthorizedError,
    ForbiddenError,
    RateLimitedError,
)


def is_server_error(error: BaseException) -> bool:
    """True if `error` is the service's fault (5xx): backend failures, overload, open breakers."""
    if isinstance(error, _CLIENT_ERRORS):
        return False
    # A bare RejectedError is a 400; its other subclasses (overloaded, circuit open, not ready)
    # are 503s: the variant could not serve.
    return type(error) is not RejectedError


@dataclass(frozen=True, slots=True)
class SplitState:
    """One consistent view of a `TrafficSplit`."""

    stable: str
    canary: str | None = None
    #: Percent of calls (0..100) that go to `canary`.
    canary_weight: float = 0.0

    def role_of(self, version: str) -> str | None:
        """`stable` or `canary` if `version` holds that role, else None."""
        if version == self.stable:
            return STABLE
        return CANARY if version == self.canary else None


class TrafficSplit:
    """The stable version, the canary and its weight; changed by a controller, read per call.

    Setting a different canary starts it at weight 0 (a new version gets traffic only when asked
    to); clearing the canary sets the weight to 0. `switch(version)` is the blue-green switch:
    `version` becomes stable at once, the canary is cleared. When `versions` is given, only
    those versions (the ones a handler exists for) may be named.
    """

    def __init__(
        self,
        stable: str,
        canary: str | None = None,
        canary_weight: float = 0.0,
        *,
        versions: Collection[str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.versions = None if versions is None else frozenset(versions)
        if self.versions is not None and not self.versions:
            raise ValueError("versions: at least one version must be allowed")
        self._check_version("stable", stable)
        if canary is not None:
            self._check_canary(stable, canary)
        self._state = SplitState(stable, canary, _weight(canary, canary_weight))

    @property
    def stable(self) -> str:
        return self._state.stable

    @property
    def canary(self) -> str | None:
        return self._state.canary

    @property
    def canary_weight(self) -> float:
        return self._state.canary_weight

    def snapshot(self) -> SplitState:
        """The current state (immutable: later changes do not alter it)."""
        return self._state  # replaced whole on every change: one read is consistent

    def set_canary_weight(self, percent: float) -> SplitState:
        """Send `percent` of calls to the canary; ValueError without a canary (unless 0)."""
        with self._lock:
            state = self._state
            self._state = SplitState(state.stable, state.canary, _weight(state.canary, percent))
            return self._state

    def set_canary(self, version: str | None) -> SplitState:
        """Make `version` the canary (a new one starts at weight 0), or clear it with None."""
        with self._lock:
            state = self._state
            if version is None:
                self._state = SplitState(state.stable)
            elif version != state.canary:
                self._check_canary(state.stable, version)
                self._state = SplitState(state.stable, version, 0.0)
            return self._state

    def switch(self, version: str) -> SplitState:
        """Blue-green: `version` becomes stable for every call; the canary is cleared."""
        with self._lock:
            self._check_version("version", version)
            self._state = SplitState(version)
            return self._state

    def _check_version(self, field: str, version: object) -> None:
        if not isinstance(version, str) or not version.strip():
            raise ValueError(f"{field}: a version must be a non-empty string, got {version!r}")
        if self.versions is not None and version not in self.versions:
            known = ", ".join(sorted(self.versions))
            raise ValueError(f"{field}: {version!r} is not one of the served versions ({known})")

    def _check_canary(self, stable: str, canary: str) -> None:
        self._check_version("canary", canary)
        if canary == stable:
            raise ValueError(f"canary: {canary!r} is already the stable version")

    def __repr__(self) -> str:
        s = self._state
        return f"TrafficSplit(stable={s.stable!r}, canary={s.canary!r}, weight={s.canary_weight})"


def _weight(canary: str | None, percent: float) -> float:
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise ValueError(f"canary_weight: must be a number of percent, got {percent!r}")
    if not (math.isfinite(percent) and 0 <= percent <= 100):
        raise ValueError(f"canary_weight: must be between 0 and 100 percent, got {percent}")
    if canary is None and percent != 0:
        raise ValueError(f"canary_weight: no canary version is set to send {percent}% to")
    return float(percent)


#: Predictions kept per version (the most recent), for prediction shift against stable.
PREDICTION_SAMPLES = 5000
#: Predictions kept from one call (a batch must not outweigh the other calls).
PREDICTIONS_PER_CALL = 8


class LatencySamples:
    """The most recent `size` latencies with the time each was taken; nearest-rank quantiles."""

    __slots__ = ("_samples",)

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"latency_samples: must be at least 1, got {size}")
        self._samples: deque[tuple[float, float]] = deque(maxlen=size)

    def add(self, now: float, latency_s: float) -> None:
        self._samples.append((now, latency_s))

    def expire(self, before_second: int) -> None:
        """Drop the samples taken in a whole second before `before_second`."""
        samples = self._samples
        while samples and math.floor(samples[0][0]) < before_second:
            samples.popleft()

    def quantiles(
        self, qs: Sequence[float], *, since_second: int | None = None
    ) -> tuple[float | None, ...]:
        """The nearest-rank quantile for each q of the samples (taken from `since_second` on)."""
        samples = self._samples
        if since_second is None:
            ordered = sorted(latency for _, latency in samples)
        else:
            ordered = sorted(lat for t, lat in samples if math.floor(t) >= since_second)
        if not ordered:
            return tuple(None for _ in qs)
        return tuple(ordered[max(1, math.ceil(q * len(ordered))) - 1] for q in qs)

    def __len__(self) -> int:
        return len(self._samples)


@dataclass(frozen=True, slots=True)
class VariantWindow:
    """What one version did in the window: calls, server-side errors and latency quantiles."""

    requests: int
    errors: int
    #: errors / requests (0.0 without requests).
    error_rate: float
    #: Latency quantiles of the successful calls, in seconds (None without any).
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None


class VariantStats:
    """Calls, errors and latencies of one version over the last `window_s` seconds of a clock.

    Counts are exact, in one bucket per whole second of the clock (a call at 1000.9 in a
    10-second window counts until 1010.0); latency quantiles come from the most recent
    `latency_samples` successful calls. `snapshot` can also look at a shorter span than
    `window_s` (an analysis interval), never a longer one.
    """

    def __init__(
        self, window_s: int = DEFAULT_WINDOW_S, latency_samples: int = DEFAULT_LATENCY_SAMPLES
    ) -> None:
        if isinstance(window_s, bool) or not isinstance(window_s, int) or window_s < 1:
            raise ValueError(f"window_s: must be a whole number of seconds >= 1, got {window_s!r}")
        self.window_s = window_s
        self._buckets: deque[list[int]] = deque()  # [second, calls, errors], oldest first
        self._latencies = LatencySamples(latency_samples)
        #: (time, value) of recent predictions: the first output's values, a few per call.
        self._predictions: deque[tuple[float, Any]] = deque(maxlen=PREDICTION_SAMPLES)
        self._lock = threading.Lock()

    def record(self, now: float, latency_s: float, *, error: BaseException | None = None) -> None:
        """Add a call that ended at `now`: a success, or one that raised `error`."""
        second = math.floor(now)
        failed = error is not None and is_server_error(error)
        with self._lock:
            buckets = self._buckets
            while buckets and buckets[0][0] <= second - self.window_s:
                buckets.popleft()
            if not buckets or buckets[-1][0] < second:
                buckets.append([second, 0, 0])
            bucket = buckets[-1]
            bucket[1] += 1
            bucket[2] += failed
            if error is None:
                self._latencies.add(now, latency_s)

    def record_predictions(self, now: float, values: Sequence[Any]) -> None:
        """Keep some of a call's predictions (the first `PREDICTIONS_PER_CALL`)."""
        with self._lock:
            self._predictions.extend((now, v) for v in values[:PREDICTIONS_PER_CALL])

    def predictions(self, now: float, window_s: float) -> list[Any]:
        """The predictions kept from the last `window_s` seconds (at least; see `snapshot`)."""
        since = math.floor(now - window_s)
        with self._lock:
            return [v for t, v in self._predictions if math.floor(t) >= since]

    def snapshot(self, now: float, window_s: float | None = None) -> VariantWindow:
        """The calls of the last `window_s` seconds at `now` (at most, and by default, all)."""
        if window_s is not None and not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s: must be a number of seconds > 0, got {window_s}")
        span = self.window_s if window_s is None else min(self.window_s, math.ceil(window_s))
        # Whole-second buckets: take the bucket `span` seconds back too, so a window covers at
        # least `window_s` (up to a second more). Starting at the next bucket would cover as
        # little as `span - 1` seconds: a 1 s analysis window early in a second saw one call.
        since = math.floor(now - span) if window_s is not None else math.floor(now) - span + 1
        with self._lock:
            self._latencies.expire(math.floor(now) - self.window_s + 1)
            kept = [b for b in self._buckets if b[0] >= since]
            p50, p95, p99 = self._latencies.quantiles((0.5, 0.95, 0.99), since_second=since)
        calls, errors = sum(b[1] for b in kept), sum(b[2] for b in kept)
        rate = errors / calls if calls else 0.0
        return VariantWindow(calls, errors, rate, p50, p95, p99)

    def __repr__(self) -> str:
        return f"VariantStats(window_s={self.window_s})"
