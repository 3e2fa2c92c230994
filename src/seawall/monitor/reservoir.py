"""Bounded uniform samples of the rows a model serves, one per time window.

`Reservoir` keeps a uniform random sample of at most `capacity` of the items offered to it, in
O(1) time per offer and O(capacity) memory: Li's Algorithm L ("Reservoir-sampling algorithms of
time complexity O(n(1 + log(N/n)))", 1994), which draws how many items to skip instead of a random
number per item, so most offers cost one comparison. Randomness comes from an injected
`random.Random`, so a seeded one makes a sample reproducible.

`WindowedReservoir` starts a fresh reservoir every `window_s` seconds of its clock. Closed
windows wait, at most `max_closed` of them (the oldest dropped first, counted), until a consumer
takes them with `take_closed()`; windows nobody offered to are not kept.

Threads: `Reservoir` is not thread-safe. `WindowedReservoir` is, for the case it is built for:
one producer calling `offer` (on the event loop, in the request path) and a consumer calling
`take_closed` from another thread. Both hold one lock for O(1) work; rows are copied out of a
closed reservoir, which no offer touches any more, after the lock is released. Offered rows are
kept by reference: offer a mapping nobody mutates afterwards.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from seawall.clock import Clock

__all__ = ["DEFAULT_MAX_CLOSED", "Reservoir", "WindowSample", "WindowedReservoir"]

T = TypeVar("T")

#: Closed windows kept for the consumer before the oldest is dropped.
DEFAULT_MAX_CLOSED = 16


class Reservoir(Generic[T]):
    """A uniform random sample of at most `capacity` of the items offered (Algorithm L)."""

    __slots__ = ("_items", "_next", "_offered", "_rng", "_weight", "capacity")

    def __init__(self, capacity: int, rng: random.Random) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be at least 1, got {capacity}")
        self.capacity = capacity
        self._rng = rng
        self._items: list[T] = []
        self._offered = 0
        self._weight = 1.0
        # 1-based count of the offer that will next be kept once the reservoir is full.
        self._next = capacity + 1

    @property
    def offered(self) -> int:
        """Items offered so far."""
        return self._offered

    @property
    def kept(self) -> int:
        """Items held (the smaller of `offered` and `capacity`)."""
        return len(self._items)

    def items(self) -> list[T]:
        """A copy of the sample, in no meaningful order."""
        return list(self._items)

    def offer(self, item: T) -> bool:
        """Consider `item` for the sample; True if it was kept (possibly replacing another)."""
        self._offered += 1
        if self._offered <= self.capacity:
            self._items.append(item)
            if self._offered == self.capacity:
                self._weight = self._shrink(1.0)
                self._next = self.capacity + self._skip() + 1
            return True
        if self._offered < self._next:
            return False
        self._items[self._rng.randrange(self.capacity)] = item
        self._weight = self._shrink(self._weight)
        self._next += self._skip() + 1
        return True

    def _shrink(self, weight: float) -> float:
        """W · U^(1/k): the largest of k uniform keys, as Algorithm L tracks it."""
        return weight * math.exp(math.log(self._uniform()) / self.capacity)

    def _skip(self) -> int:
        """Offers to pass over before the next one kept: geometric with parameter W."""
        if self._weight >= 1.0:
            return 0
        return math.floor(math.log(self._uniform()) / math.log1p(-self._weight))

    def _uniform(self) -> float:
        """Uniform on (0, 1): `random()` can return 0, whose logarithm does not exist."""
        u = self._rng.random()
        while u == 0.0:
            u = self._rng.random()
        return u

    def __repr__(self) -> str:
        return f"Reservoir(capacity={self.capacity}, offered={self._offered}, kept={self.kept})"


@dataclass(frozen=True, slots=True)
class WindowSample(Generic[T]):
    """The sample of one closed window."""

    #: Wall-clock seconds (Unix) the window began and ended.
    start: float
    end: float
    #: Rows offered during the window.
    offered: int
    #: The sampled rows: min(offered, capacity) of them, uniformly chosen.
    rows: tuple[T, ...]

    @property
    def kept(self) -> int:
        """Rows in the sample."""
        return len(self.rows)


class WindowedReservoir(Generic[T]):
    """A `Reservoir` per `window_s` seconds; closed windows are handed out by `take_closed`."""

    def __init__(
        self,
        capacity: int,
        window_s: float,
        *,
        clock: Clock,
        rng: random.Random,
        max_closed: int = DEFAULT_MAX_CLOSED,
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s: must be positive, got {window_s}")
        if max_closed < 1:
            raise ValueError(f"max_closed: must be at least 1, got {max_closed}")
        self.capacity = capacity
        self.window_s = window_s
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        # Windows are numbered from the clock's reading at construction, monotonic for their
        # boundaries and wall-clock for their labels.
        self._origin = clock.monotonic()
        self._wall_origin = clock.time()
        self._index = 0
        self._current: Reservoir[T] = Reservoir(capacity, rng)
        self._closed: deque[tuple[int, Reservoir[T]]] = deque()
        self._max_closed = max_closed
        self._offered_total = 0
        self._dropped_windows = 0

    @property
    def offered_total(self) -> int:
        """Rows offered since construction, over every window."""
        return self._offered_total

    @property
    def dropped_windows(self) -> int:
        """Closed windows dropped unread because `max_closed` were already waiting."""
        return self._dropped_windows

    @property
    def current_offered(self) -> int:
        """Rows offered to the window now open (0 if it has rolled over since)."""
        with self._lock:
            self._roll()
            return self._current.offered

    def offer(self, row: T) -> bool:
        """Offer `row` to the current window's sample; True if it was kept. O(1)."""
        with self._lock:
            self._roll()
            self._offered_total += 1
            return self._current.offer(row)

    def take_closed(self) -> list[WindowSample[T]]:
        """Every closed window not yet taken, oldest first (each handed out once)."""
        with self._lock:
            self._roll()
            closed = list(self._closed)
            self._closed.clear()
        return [self._sample(index, reservoir) for index, reservoir in closed]

    def _roll(self) -> None:
        """Close the current window if the clock has left it. Call with the lock held."""
        index = math.floor((self._clock.monotonic() - self._origin) / self.window_s)
        if index <= self._index:
            return
        if self._current.offered:
            if len(self._closed) == self._max_closed:
                self._closed.popleft()
                self._dropped_windows += 1
            self._closed.append((self._index, self._current))
        self._index = index
        self._current = Reservoir(self.capacity, self._rng)

    def _sample(self, index: int, reservoir: Reservoir[T]) -> WindowSample[T]:
        start = self._wall_origin + index * self.window_s
        return WindowSample(
            start, start + self.window_s, reservoir.offered, tuple(reservoir.items())
        )

    def __repr__(self) -> str:
        return (
            f"WindowedReservoir(capacity={self.capacity}, window_s={self.window_s}, "
            f"offered_total={self._offered_total}, dropped_windows={self._dropped_windows})"
        )
