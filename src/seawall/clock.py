"""Time as a dependency: `SystemClock` in production, `FakeClock` in tests.

Every time-dependent decision (deadlines, breakers, rate limits, rollout analysis, burn-rate
windows) takes a `Clock`, so its tests advance time by hand instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic time for durations, wall time for records, and a sleep that honours both."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences mean anything."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch, for timestamps that leave the process."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        """Cancel the block and raise `TimeoutError` if it runs longer than `seconds` (None: never).

        Like `asyncio.timeout`: the block's task is really cancelled, so whatever it awaited is
        cancelled too, and an outer cancellation is never mistaken for the timeout.
        """
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        # The event loop's clock is time.monotonic, the same as this clock's.
        return asyncio.timeout(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


_EPSILON_S = 1e-9


class _Timer:
    """A callback due at a time on a `FakeClock`; `cancel()` stops it from running."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told to; sleeps and timeouts fire when `advance` passes them."""

    def __init__(self, start: float = 1_000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def call_later(self, seconds: float, callback: Callable[[], None]) -> _Timer:
        """Run `callback` once `advance` has moved time `seconds` forward."""
        timer = _Timer(callback)
        heapq.heappush(self._timers, (self._now + max(0.0, seconds), next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        return _FakeTimeout(self, seconds)

    @property
    def sleepers(self) -> int:
        """How many sleeps and timeouts are pending (cancelled ones excluded)."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward and run every timer whose time has come, in order."""
        if seconds < 0:
            raise ValueError(f"seconds: a clock cannot go backwards ({seconds})")
        self._now += seconds
        # Tolerance: 1000.0 + 0.199 + 0.001 falls just short of 1000.2 in binary floating point.
        while self._timers and self._timers[0][0] <= self._now + _EPSILON_S:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()

    async def run_for(self, seconds: float, step: float = 0.001) -> None:
        """Advance in `step`s, letting the event loop run between them (for tasks that loop)."""
        end = self._now + seconds
        while self._now < end:
            self.advance(min(step, end - self._now))
            for _ in range(3):
                await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._now:.6f})"


class _FakeTimeout:
    """`asyncio.timeout` on a `FakeClock`: cancels the task when the clock passes the limit."""

    def __init__(self, clock: FakeClock, seconds: float | None) -> None:
        self._clock = clock
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._timer: _Timer | None = None
        self._fired = False

    async def __aenter__(self) -> None:
        if self._seconds is None:
            return
        self._task = asyncio.current_task()
        if self._task is None:
            raise RuntimeError("timeout() must be used inside a task")
        if self._seconds <= 0:
            asyncio.get_running_loop().call_soon(self._fire)
        else:
            self._timer = self._clock.call_later(self._seconds, self._fire)

    def _fire(self) -> None:
        if self._task is not None and not self._task.done():
            self._fired = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        ours = self._fired and self._task is not None and exc_type is asyncio.CancelledError
        # uncancel() == 0: the only cancellation was ours, not an outer one.
        if ours and self._task is not None and self._task.uncancel() == 0:
            raise TimeoutError from exc
