"""Sliding windows of call outcomes: the last N calls, or the last N seconds of the clock.

These are resilience4j's two sliding windows. `CountWindow` keeps the outcomes of the last
`size_calls` calls in a ring. `TimeWindow` aggregates outcomes in one bucket per whole second of
the clock and keeps the buckets of the last `duration_s` seconds, the current one included: a call
recorded at 1000.9 on a 10-second window counts until the clock reaches 1010.0. Both keep
running totals, so recording and reading are O(1) (amortised) and memory is bounded by N.

The window kind is chosen by passing one of the two value objects; each builds its own window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CountWindow", "SlidingWindow", "TimeWindow", "WindowCounts", "WindowSpec"]

#: Calls a `CountWindow` holds when no size is given.
DEFAULT_SIZE_CALLS = 100
#: Seconds a `TimeWindow` spans when no duration is given.
DEFAULT_DURATION_S = 60


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """How many calls a window holds, how many failed and how many were slow."""

    calls: int = 0
    failures: int = 0
    slow_calls: int = 0

    @property
    def failure_rate(self) -> float:
        """Failed calls over all calls (0.0 when there are none)."""
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Slow calls over all calls (0.0 when there are none)."""
        return self.slow_calls / self.calls if self.calls else 0.0


class SlidingWindow(Protocol):
    """Outcomes recorded at times of one clock, counted over the window's span."""

    def record(self, now: float, *, failed: bool, slow: bool) -> None:
        """Add the outcome of a call that ended at `now`."""
        ...

    def counts(self, now: float) -> WindowCounts:
        """The totals of the outcomes still in the window at `now`."""
        ...

    def clear(self) -> None:
        """Forget every outcome."""
        ...


@dataclass(frozen=True, slots=True)
class CountWindow:
    """Rates over the last `size_calls` calls."""

    size_calls: int = DEFAULT_SIZE_CALLS

    def __post_init__(self) -> None:
        if self.size_calls < 1:
            raise ValueError(f"size_calls: must be at least 1, got {self.size_calls}")

    def new(self) -> SlidingWindow:
        """An empty window of this size."""
        return _CallRing(self.size_calls)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Rates over the calls of the last `duration_s` whole seconds, in 1-second buckets."""

    duration_s: int = DEFAULT_DURATION_S

    def __post_init__(self) -> None:
        if isinstance(self.duration_s, bool) or not isinstance(self.duration_s, int):
            raise ValueError(
                f"duration_s: must be a whole number of seconds, got {self.duration_s}"
            )
        if self.duration_s < 1:
            raise ValueError(f"duration_s: must be at least 1, got {self.duration_s}")

    def new(self) -> SlidingWindow:
        """An empty window of this span."""
        return _SecondBuckets(self.duration_s)


#: Either kind of window; config resolves `count` / `time` to one of these once, at load.
WindowSpec = CountWindow | TimeWindow


class _CallRing:
    """The outcomes of the last `size` calls, oldest first."""

    __slots__ = ("_failures", "_outcomes", "_size", "_slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._outcomes: deque[tuple[bool, bool]] = deque()
        self._failures = 0
        self._slow = 0

    def record(self, now: float, *, failed: bool, slow: bool) -> None:
        if len(self._outcomes) == self._size:
            old_failed, old_slow = self._outcomes.popleft()
            self._failures -= old_failed
            self._slow -= old_slow
        self._outcomes.append((failed, slow))
        self._failures += failed
        self._slow += slow

    def counts(self, now: float) -> WindowCounts:
        return WindowCounts(len(self._outcomes), self._failures, self._slow)

    def clear(self) -> None:
        self._outcomes.clear()
        self._failures = self._slow = 0


class _Bucket:
    """The totals of the calls that ended during one whole second of the clock."""

    __slots__ = ("calls", "failures", "second", "slow")

    def __init__(self, second: int) -> None:
        self.second = second
        self.calls = self.failures = self.slow = 0


class _SecondBuckets:
    """One bucket per second that saw a call, for the last `size` seconds, oldest first."""

    __slots__ = ("_buckets", "_calls", "_failures", "_size", "_slow")

    def __init__(self, size: int) -> None:
        self._size = size
        self._buckets: deque[_Bucket] = deque()
        self._calls = self._failures = self._slow = 0

    def record(self, now: float, *, failed: bool, slow: bool) -> None:
        second = math.floor(now)
        self._expire(second)
        if not self._buckets or self._buckets[-1].second < second:
            self._buckets.append(_Bucket(second))
        bucket = self._buckets[-1]
        bucket.calls += 1
        bucket.failures += failed
        bucket.slow += slow
        self._calls += 1
        self._failures += failed
        self._slow += slow

    def counts(self, now: float) -> WindowCounts:
        self._expire(math.floor(now))
        return WindowCounts(self._calls, self._failures, self._slow)

    def clear(self) -> None:
        self._buckets.clear()
        self._calls = self._failures = self._slow = 0

    def _expire(self, second: int) -> None:
        while self._buckets and self._buckets[0].second <= second - self._size:
            old = self._buckets.popleft()
            self._calls -= old.calls
            self._failures -= old.failures
            self._slow -= old.slow
