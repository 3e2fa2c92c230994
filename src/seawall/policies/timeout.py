"""Timeouts: each call gets at most `timeout_s`, and never more than the request has left.

The limit of one call is `min(timeout_s, ctx.deadline - now)`, so a per-call timeout and the
end-to-end deadline combine the way Envoy's `per_try_timeout` and route timeout do. When the
limit passes, the call is cancelled for real (Polly's and resilience4j's time limiters with
cancellation): whatever the backend call awaited is cancelled too, and the caller gets
`BackendTimeoutError` (504). A call with no time left is not started at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError
from seawall.pipeline import EventSink, Handler, discard

__all__ = ["CallTimedOut", "TimeoutOptions", "TimeoutPolicy"]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

DEFAULT_TIMEOUT_S: float | None = 30.0


@dataclass(frozen=True, slots=True)
class TimeoutOptions:
    """How long one call may take."""

    #: Seconds one call may take (Polly's default: 30); None: only the request's deadline limits it.
    timeout_s: float | None = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not (
            math.isfinite(self.timeout_s) and self.timeout_s > 0
        ):
            raise ValueError(f"timeout_s: must be a positive number or None, got {self.timeout_s}")


@dataclass(frozen=True, slots=True)
class CallTimedOut:
    """A call was cancelled at its limit, or not started because the deadline had passed."""

    target: str
    #: The limit that applied (0 when the deadline had already passed).
    timeout_s: float
    #: True if the request's deadline set the limit, False if `timeout_s` did.
    by_deadline: bool


class TimeoutPolicy(Generic[RequestT, ResponseT]):
    """Cancels a call at `min(timeout_s, time left before ctx.deadline)`; 504 when it does."""

    name = "timeout"

    def __init__(
        self,
        options: TimeoutOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = options or TimeoutOptions()
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._target = target

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        limit_s, by_deadline = self.limit_s(ctx)
        if limit_s is None:
            return await call_next(request, ctx)
        if limit_s <= 0:
            self._on_event(CallTimedOut(self._target, 0.0, by_deadline=True))
            raise BackendTimeoutError(
                f"{_subject(self._target)} was not called: the request's deadline had passed"
            )
        try:
            async with self._clock.timeout(limit_s):
                return await call_next(request, ctx)
        except TimeoutError as exc:
            self._on_event(CallTimedOut(self._target, limit_s, by_deadline))
            reason = ": the request's deadline passed" if by_deadline else ""
            raise BackendTimeoutError(
                f"{_subject(self._target)} did not answer within {_ms(limit_s)}{reason}"
            ) from exc

    def limit_s(self, ctx: CallContext) -> tuple[float | None, bool]:
        """The time a call made now may take (None: unlimited), and whether the deadline sets it."""
        timeout_s = self.options.timeout_s
        left_s = ctx.time_left(self._clock.monotonic())
        if left_s is None:
            return timeout_s, False
        if timeout_s is None or left_s < timeout_s:
            return left_s, True
        return timeout_s, False

    def __repr__(self) -> str:
        return f"TimeoutPolicy({self._target!r}, timeout_s={self.options.timeout_s})"


def _subject(target: str) -> str:
    return f"model {target!r}" if target else "the model"


def _ms(seconds: float) -> str:
    millis = seconds * 1000
    return f"{millis:.0f} ms" if millis >= 10 else f"{millis:.3g} ms"
