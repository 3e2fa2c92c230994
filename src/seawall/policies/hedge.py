"""Hedged requests: when the first attempt is slow, start another; the first success wins.

Opt-in, for idempotent calls only ("The Tail at Scale", Dean and Barroso; Polly's hedging
strategy; Finagle's `BackupRequestFilter`). If no attempt has answered `delay` seconds after
the last one started, another starts, up to `max_hedges` extra attempts. The first successful
answer wins; every other attempt is cancelled and awaited before the call returns. A failure
while another attempt is still running waits for that one; when every attempt started has
failed, the first attempt's error is raised (failures are not retried here: that is the retry
policy's job). No hedge starts at or after `ctx.deadline`. Attempts share the request and the
context: backends treat requests as read-only.

The delay is `delay_s`, or by default the `quantile` (p95) of the latencies of recent
successful calls, never below `min_delay_s` (`initial_delay_s` until `min_samples` are known).
Latency is measured from the start of the call, as the client sees it: then the share of calls
that hedge settles near 1 - quantile. Measuring each attempt on its own would record the fast
hedge instead of the slow first attempt, pull the quantile down and hedge ever more often.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.pipeline import EventSink, Handler, discard

__all__ = ["HedgeOptions", "HedgePolicy", "HedgeStarted", "HedgeWon"]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

DEFAULT_DELAY_S: float | None = None
DEFAULT_MAX_HEDGES = 1
DEFAULT_QUANTILE = 0.95
DEFAULT_MIN_DELAY_S = 0.01
DEFAULT_INITIAL_DELAY_S = 0.1
DEFAULT_WINDOW_SIZE = 100
DEFAULT_MIN_SAMPLES = 20


@dataclass(frozen=True, slots=True)
class HedgeOptions:
    """When extra attempts start and how many."""

    #: Seconds before a hedge starts; None: the observed `quantile` of recent latencies.
    delay_s: float | None = DEFAULT_DELAY_S
    #: Extra attempts at most, one delay apart.
    max_hedges: int = DEFAULT_MAX_HEDGES
    #: Which latency quantile sets the delay when `delay_s` is None (0.95: p95).
    quantile: float = DEFAULT_QUANTILE
    #: Seconds: the shortest observed delay used (a floor against a burst of fast answers).
    min_delay_s: float = DEFAULT_MIN_DELAY_S
    #: Seconds: the delay used until `min_samples` latencies are known.
    initial_delay_s: float = DEFAULT_INITIAL_DELAY_S
    #: How many recent successful latencies are kept.
    window_size: int = DEFAULT_WINDOW_SIZE
    #: How many latencies are needed before the observed quantile is trusted.
    min_samples: int = DEFAULT_MIN_SAMPLES

    def __post_init__(self) -> None:
        if self.delay_s is not None and not _seconds(self.delay_s):
            raise ValueError(
                f"delay_s: must be a number of seconds >= 0 or None, got {self.delay_s}"
            )
        for name in ("min_delay_s", "initial_delay_s"):
            if not _seconds(getattr(self, name)):
                raise ValueError(
                    f"{name}: must be a number of seconds >= 0, got {getattr(self, name)}"
                )
        if self.max_hedges < 1:
            raise ValueError(f"max_hedges: must be at least 1, got {self.max_hedges}")
        if not 0 < self.quantile <= 1:
            raise ValueError(f"quantile: must be in (0, 1], got {self.quantile}")
        if self.window_size < 1:
            raise ValueError(f"window_size: must be at least 1, got {self.window_size}")
        if not 1 <= self.min_samples <= self.window_size:
            raise ValueError(
                f"min_samples: must be between 1 and window_size ({self.window_size}), "
                f"got {self.min_samples}"
            )


def _seconds(value: float) -> bool:
    return math.isfinite(value) and value >= 0


@dataclass(frozen=True, slots=True)
class HedgeStarted:
    """No attempt had answered after `delay_s`, so attempt number `attempt` started."""

    target: str
    attempt: int
    delay_s: float


@dataclass(frozen=True, slots=True)
class HedgeWon:
    """A hedge (attempt 2 or later) answered first; the others were cancelled."""

    target: str
    attempt: int


class HedgePolicy(Generic[RequestT, ResponseT]):
    """Starts another attempt when the first is slower than the delay; the first success wins."""

    name = "hedge"

    def __init__(
        self,
        options: HedgeOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = options or HedgeOptions()
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._target = target
        self._latencies: deque[float] = deque(maxlen=self.options.window_size)
        self._observed_s: float | None = None  # the quantile of `_latencies`, until one is added

    def delay_s(self) -> float:
        """The delay before a hedge starts, for a call starting now."""
        options = self.options
        if options.delay_s is not None:
            return options.delay_s
        if len(self._latencies) < options.min_samples:
            return options.initial_delay_s
        if self._observed_s is None:
            ordered = sorted(self._latencies)
            rank = max(1, math.ceil(options.quantile * len(ordered)))  # nearest-rank quantile
            self._observed_s = max(options.min_delay_s, ordered[rank - 1])
        return self._observed_s

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        start = self._clock.monotonic()
        delay_s = self.delay_s()
        attempts = [self._start(call_next, request, ctx)]
        try:
            while True:
                won = _first_success(attempts)
                if won is not None:
                    return self._won(won, attempts, start, ctx)
                running = [a for a in attempts if not a.done()]
                if not running:
                    raise _first_error(attempts)
                hedge_at = self._next_hedge_at(start, delay_s, len(attempts), ctx)
                if hedge_at is None:
                    await self._timed_out(running, None)
                elif await self._timed_out(running, hedge_at - self._clock.monotonic()):
                    self._on_event(HedgeStarted(self._target, len(attempts) + 1, delay_s))
                    attempts.append(self._start(call_next, request, ctx))
        finally:
            await _cancel_all(attempts)

    def _next_hedge_at(
        self, start: float, delay_s: float, started: int, ctx: CallContext
    ) -> float | None:
        if started > self.options.max_hedges:
            return None
        hedge_at = start + started * delay_s
        if ctx.deadline is not None and hedge_at >= ctx.deadline:
            return None
        return hedge_at

    def _start(
        self, call_next: Handler[RequestT, ResponseT], request: RequestT, ctx: CallContext
    ) -> asyncio.Task[ResponseT]:
        async def attempt() -> ResponseT:
            return await call_next(request, ctx)

        return asyncio.create_task(attempt(), name=f"hedge {self._target}")

    async def _timed_out(
        self, running: Sequence[asyncio.Task[ResponseT]], wait_s: float | None
    ) -> bool:
        """Wait until an attempt finishes (False) or `wait_s` passes (True)."""
        if wait_s is not None and wait_s <= 0:
            return True
        try:
            async with self._clock.timeout(wait_s):
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            return True
        return False

    def _won(
        self,
        won: tuple[int, ResponseT],
        attempts: Sequence[asyncio.Task[ResponseT]],
        start: float,
        ctx: CallContext,
    ) -> ResponseT:
        number, response = won
        self._latencies.append(self._clock.monotonic() - start)
        self._observed_s = None
        if number > 1:
            self._on_event(HedgeWon(self._target, number))
        if len(attempts) > 1:
            ctx.annotations["hedges"] = len(attempts) - 1
        return response

    def __repr__(self) -> str:
        return f"HedgePolicy({self._target!r}, delay_s={self.options.delay_s})"


def _first_success(attempts: Sequence[asyncio.Task[ResponseT]]) -> tuple[int, ResponseT] | None:
    for number, attempt in enumerate(attempts, 1):
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            return number, attempt.result()
    return None


def _first_error(attempts: Sequence[asyncio.Task[ResponseT]]) -> BaseException:
    for attempt in attempts:
        error = None if attempt.cancelled() else attempt.exception()
        if error is not None:
            return error
    return asyncio.CancelledError()  # every attempt was cancelled by someone else


async def _cancel_all(attempts: Sequence[asyncio.Task[ResponseT]]) -> None:
    """Cancel the attempts still running and wait until every one has finished."""
    for attempt in attempts:
        attempt.cancel()
    interrupted = False
    while running := [a for a in attempts if not a.done()]:
        try:
            await asyncio.wait(running)
        except asyncio.CancelledError:
            interrupted = True  # finish the clean-up first, then pass the cancellation on
    for attempt in attempts:
        if not attempt.cancelled():
            attempt.exception()  # retrieved: a loser's failure is not logged as unhandled
    if interrupted:
        raise asyncio.CancelledError
