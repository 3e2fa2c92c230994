"""`BoundedExecutor`: runs blocking model code off the event loop with a bounded backlog."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from functools import partial
from typing import ParamSpec, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.errors import BackendTimeoutError, OverloadedError

__all__ = ["DEFAULT_MAX_QUEUE", "DEFAULT_RETRY_AFTER_S", "DEFAULT_WORKERS", "BoundedExecutor"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_WORKERS = 1
DEFAULT_MAX_QUEUE = 64
DEFAULT_RETRY_AFTER_S = 1.0


class BoundedExecutor:
    """A thread pool that refuses work at once when `workers + max_queue` calls are pending.

    A call whose deadline has passed by the time a thread picks it up is dropped without running,
    and a call whose caller was cancelled before it started never runs.
    """

    def __init__(
        self,
        name: str,
        *,
        workers: int = DEFAULT_WORKERS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        clock: Clock | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers: must be at least 1, got {workers}")
        if max_queue < 0:
            raise ValueError(f"max_queue: must be 0 or more, got {max_queue}")
        self.name = name
        self.workers = workers
        self.max_queue = max_queue
        self._limit = workers + max_queue
        self._retry_after_s = retry_after_s
        self._clock = clock or SystemClock()
        self._pending = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"seawall-{name}")

    @property
    def pending(self) -> int:
        """Calls submitted and not yet finished (running plus queued)."""
        return self._pending

    async def run(
        self, fn: Callable[P, T], deadline: float | None, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(*args, **kwargs)` on a worker thread; `deadline` is on this executor's clock."""
        if self._pending >= self._limit:
            raise OverloadedError(
                f"{self.name}: {self._pending} calls already pending "
                f"({self.workers} running, queue of {self.max_queue} full)",
                retry_after_s=self._retry_after_s,
            )
        future = self._pool.submit(self._guarded, partial(fn, *args, **kwargs), deadline)
        self._pending += 1
        # The slot is freed when the thread is done with the call, not when the caller stops
        # waiting: a cancelled caller's call may still be running and holding a thread.
        future.add_done_callback(partial(self._on_done, asyncio.get_running_loop()))
        return await asyncio.wrap_future(future)

    def _on_done(self, loop: asyncio.AbstractEventLoop, _future: Future[object]) -> None:
        with suppress(RuntimeError):  # the loop has closed: nobody is left to count for
            loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        self._pending -= 1

    def _guarded(self, call: Callable[[], T], deadline: float | None) -> T:
        if deadline is not None and self._clock.monotonic() >= deadline:
            raise BackendTimeoutError(f"{self.name}: deadline passed while queued; not run")
        return call()

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the threads; with `wait`, after the calls already running have finished."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
