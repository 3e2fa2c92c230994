"""Circuit breaker: stop calling a backend that keeps failing, then probe it before trusting it.

The state machine is resilience4j's CircuitBreaker. CLOSED passes calls and records their outcomes
in a sliding window (`window.py`); once it holds `minimum_calls` calls, a failure rate or slow-call
rate at or above its threshold opens the breaker, as does a run of `consecutive_failures` failures
at any traffic (Envoy's consecutive_5xx, for a single backend with few calls). OPEN refuses calls
at once with `CircuitOpenError` (503, `Retry-After` = time left open). The first call after the
open duration moves it to HALF_OPEN (lazily, as resilience4j without automatic transition), which
admits at most `half_open_max_calls` probes. When they have all ended, the window's two thresholds
judge them, as in resilience4j: both rates below close the breaker, else it re-opens for
`backoff_multiplier` times longer, up to `max_open_duration_s` (closing resets the duration). With
the default single probe, the probe must succeed and not be slow.

A call that returns is a success; an exception for which `is_failure` holds is a failure (default:
any but a `RejectedError`); other exceptions and cancellation are not recorded and give back a
probe's slot. An outcome counts only if the state has not changed since the call was admitted, so a
call started while CLOSED never passes for a probe. Admission and recording never await: on one
event loop each check-and-update is atomic. An operator may force the breaker open or closed
(outcomes are recorded, it never trips) and `reset()` it to automatic, CLOSED and empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NoReturn, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import CircuitOpenError, RejectedError
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.circuit_events import (
    CircuitClosed,
    CircuitForced,
    CircuitHalfOpened,
    CircuitMode,
    CircuitOpened,
    CircuitRejected,
    CircuitSnapshot,
    CircuitState,
    TripReason,
)
from seawall.policies.window import CountWindow, TimeWindow, WindowCounts

__all__ = [
    "CircuitBreakerOptions",
    "CircuitBreakerPolicy",
    "CircuitClosed",
    "CircuitForced",
    "CircuitHalfOpened",
    "CircuitMode",
    "CircuitOpened",
    "CircuitRejected",
    "CircuitSnapshot",
    "CircuitState",
    "TripReason",
    "counts_as_failure",
]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


def counts_as_failure(exc: Exception) -> bool:
    """The default failure predicate: every exception but a `RejectedError` (timeouts included)."""
    return not isinstance(exc, RejectedError)


#: The calls the rates are computed over.
DEFAULT_WINDOW = CountWindow(size_calls=100)
#: Calls the window must hold before its rates may open the breaker.
DEFAULT_MINIMUM_CALLS = 20
#: Fraction of failed calls (0..1] that opens the breaker.
DEFAULT_FAILURE_RATE_THRESHOLD = 0.5
#: Fraction of slow calls (0..1] that opens the breaker.
DEFAULT_SLOW_CALL_RATE_THRESHOLD = 1.0
#: Seconds from which a call is slow.
DEFAULT_SLOW_CALL_DURATION_S = 60.0
#: Failures in a row that open the breaker regardless of the window (Envoy's consecutive_5xx).
DEFAULT_CONSECUTIVE_FAILURES = 5
#: Seconds the breaker first stays open (Envoy's base_ejection_time).
DEFAULT_OPEN_DURATION_S = 30.0
#: Factor applied to the open duration at each re-opening from HALF_OPEN.
DEFAULT_BACKOFF_MULTIPLIER = 2.0
#: Longest open duration, in seconds (Envoy's max_ejection_time).
DEFAULT_MAX_OPEN_DURATION_S = 300.0
#: Probe calls let through while HALF_OPEN (one, as Polly and gobreaker).
DEFAULT_HALF_OPEN_MAX_CALLS = 1
#: `Retry-After` seconds for a call refused because the half-open probes are all taken.
HALF_OPEN_RETRY_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class CircuitBreakerOptions:
    """When the breaker opens, for how long, and how many probes decide whether it closes."""

    #: The calls the rates are computed over: `CountWindow(size_calls)` or `TimeWindow(duration_s)`.
    window: CountWindow | TimeWindow = DEFAULT_WINDOW
    #: Calls the window must hold before a rate may open the breaker (at least 1).
    minimum_calls: int = DEFAULT_MINIMUM_CALLS
    #: Opens when at least this fraction (0..1] of the window's calls failed.
    failure_rate_threshold: float = DEFAULT_FAILURE_RATE_THRESHOLD
    #: Opens when at least this fraction (0..1] of the window's calls were slow.
    slow_call_rate_threshold: float = DEFAULT_SLOW_CALL_RATE_THRESHOLD
    #: A call that took at least this many seconds is slow, success or failure; None: none is.
    slow_call_duration_s: float | None = DEFAULT_SLOW_CALL_DURATION_S
    #: Opens after this many failures in a row, even below `minimum_calls`; 0 turns it off.
    consecutive_failures: int = DEFAULT_CONSECUTIVE_FAILURES
    #: Seconds the breaker stays open after it opens from CLOSED.
    open_duration_s: float = DEFAULT_OPEN_DURATION_S
    #: Each re-opening from HALF_OPEN multiplies the open duration by this (at least 1).
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    #: Cap on the growing open duration, in seconds.
    max_open_duration_s: float = DEFAULT_MAX_OPEN_DURATION_S
    #: Probes let through while HALF_OPEN; when all have ended, their rates decide.
    half_open_max_calls: int = DEFAULT_HALF_OPEN_MAX_CALLS
    #: Which exceptions are failures; the others are not recorded (default: rejections).
    is_failure: Callable[[Exception], bool] = counts_as_failure

    def __post_init__(self) -> None:
        size = self.window.size_calls if isinstance(self.window, CountWindow) else math.inf
        slow_s, base_s, cap_s = (
            self.slow_call_duration_s,
            self.open_duration_s,
            self.max_open_duration_s,
        )
        fraction, at_least_base = (
            "must be in (0, 1]",
            f"must be at least open_duration_s ({base_s})",
        )
        checks = (
            ("minimum_calls", self.minimum_calls >= 1, "must be at least 1"),
            ("minimum_calls", self.minimum_calls <= size, f"must be at most the window's {size}"),
            ("failure_rate_threshold", 0 < self.failure_rate_threshold <= 1, fraction),
            ("slow_call_rate_threshold", 0 < self.slow_call_rate_threshold <= 1, fraction),
            ("slow_call_duration_s", slow_s is None or _positive(slow_s), "must be positive"),
            ("consecutive_failures", self.consecutive_failures >= 0, "must be 0 or more"),
            ("open_duration_s", _positive(base_s), "must be positive"),
            ("backoff_multiplier", 1 <= self.backoff_multiplier < math.inf, "must be at least 1"),
            ("max_open_duration_s", _positive(cap_s) and cap_s >= base_s, at_least_base),
            ("half_open_max_calls", self.half_open_max_calls >= 1, "must be at least 1"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name}: {rule}, got {getattr(self, name)}")


def _positive(seconds: float) -> bool:
    return math.isfinite(seconds) and seconds > 0


@dataclass(frozen=True, slots=True)
class _Permit:
    """An admitted call: the breaker period it belongs to, whether it probes, when it started."""

    period: int
    probe: bool
    started: float


class CircuitBreakerPolicy(Generic[RequestT, ResponseT]):
    """Refuses calls while the backend is failing or slow; probes it before closing again."""

    name = "circuit_breaker"

    def __init__(
        self,
        options: CircuitBreakerOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = opts = options or CircuitBreakerOptions()
        self.target = target
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._window = opts.window.new()
        self._probes = CountWindow(opts.half_open_max_calls).new()
        self._probes_in_flight = 0
        self._state = CircuitState.CLOSED
        self._mode = CircuitMode.AUTOMATIC
        # Bumped at every change of state or mode: outcomes of calls admitted before are dropped.
        self._period = 0
        self._consecutive = 0
        self._open_for_s = opts.open_duration_s
        self._open_until = 0.0
        self._why = ""

    @property
    def state(self) -> CircuitState:
        """CLOSED, OPEN or HALF_OPEN (OPEN lasts until a call arrives after its duration)."""
        return self._state

    @property
    def mode(self) -> CircuitMode:
        """AUTOMATIC, or forced open or closed by an operator."""
        return self._mode

    def snapshot(self) -> CircuitSnapshot:
        """State, mode, counts and rates now."""
        now = self._clock.monotonic()
        half_open = self._state is CircuitState.HALF_OPEN
        counts = (self._probes if half_open else self._window).counts(now)
        timed = self._state is CircuitState.OPEN and self._mode is CircuitMode.AUTOMATIC
        return CircuitSnapshot(
            self._state,
            self._mode,
            counts.calls,
            counts.failures,
            counts.slow_calls,
            counts.failure_rate,
            counts.slow_call_rate,
            self._consecutive,
            self._probes_in_flight,
            self._open_for_s,
            self._open_until if timed else None,
            max(0.0, self._open_until - now) if timed else None,
        )

    def force_open(self) -> None:
        """Refuse every call until `force_closed()` or `reset()`."""
        self._force(CircuitMode.FORCED_OPEN, CircuitState.OPEN)

    def force_closed(self) -> None:
        """Let every call through, never tripping, until `force_open()` or `reset()`."""
        self._force(CircuitMode.FORCED_CLOSED, CircuitState.CLOSED)

    def reset(self) -> None:
        """Back to automatic and CLOSED, with empty windows and the base open duration."""
        self._window.clear()
        self._open_for_s = self.options.open_duration_s
        self._force(CircuitMode.AUTOMATIC, CircuitState.CLOSED)

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        permit = self._admit()
        try:
            response = await call_next(request, ctx)
        except Exception as exc:
            if self.options.is_failure(exc):
                self._record(permit, failed=True)
            else:
                self._release(permit)
            raise
        except BaseException:  # cancelled: the caller gave up, which says nothing of the backend
            self._release(permit)
            raise
        self._record(permit, failed=False)
        return response

    def _admit(self) -> _Permit:
        now = self._clock.monotonic()
        if self._mode is CircuitMode.FORCED_OPEN:
            self._reject(self.options.open_duration_s, "is forced open by an operator")
        if self._state is CircuitState.OPEN:
            if now < self._open_until:
                self._reject(self._open_until - now, f"is open: {self._why}")
            self._half_open()
        if self._state is CircuitState.HALF_OPEN:
            limit = self.options.half_open_max_calls
            if self._probes_in_flight + self._probes.counts(now).calls >= limit:
                self._reject(
                    HALF_OPEN_RETRY_AFTER_S, f"is half-open and its {limit} probes are taken"
                )
            self._probes_in_flight += 1
            return _Permit(self._period, True, now)
        return _Permit(self._period, False, now)

    def _reject(self, retry_after_s: float, why: str) -> NoReturn:
        self._on_event(CircuitRejected(self.target, self._state, self._mode, retry_after_s))
        prefix = f"model {self.target!r}: " if self.target else ""
        raise CircuitOpenError(
            f"{prefix}the circuit breaker {why}; retry in {retry_after_s:.1f} s",
            retry_after_s=retry_after_s,
        )

    def _release(self, permit: _Permit) -> None:
        if permit.probe and permit.period == self._period:
            self._probes_in_flight -= 1

    def _record(self, permit: _Permit, *, failed: bool) -> None:
        if permit.period != self._period:
            return
        now = self._clock.monotonic()
        slow_s = self.options.slow_call_duration_s
        slow = slow_s is not None and now - permit.started >= slow_s
        if permit.probe:
            self._probes_in_flight -= 1
            self._probes.record(now, failed=failed, slow=slow)
            probes = self._probes.counts(now)
            if probes.calls >= self.options.half_open_max_calls:
                self._judge_probes(now, probes)
            return
        self._window.record(now, failed=failed, slow=slow)
        self._consecutive = self._consecutive + 1 if failed else 0
        if self._mode is CircuitMode.AUTOMATIC:
            self._check_window(now)

    def _check_window(self, now: float) -> None:
        opts = self.options
        counts = self._window.counts(now)
        if counts.calls >= opts.minimum_calls:
            if counts.failure_rate >= opts.failure_rate_threshold:
                self._open(now, counts, TripReason.FAILURE_RATE, opts.open_duration_s)
                return
            if counts.slow_call_rate >= opts.slow_call_rate_threshold:
                self._open(now, counts, TripReason.SLOW_CALL_RATE, opts.open_duration_s)
                return
        if opts.consecutive_failures and self._consecutive >= opts.consecutive_failures:
            self._open(now, counts, TripReason.CONSECUTIVE_FAILURES, opts.open_duration_s)

    def _judge_probes(self, now: float, probes: WindowCounts) -> None:
        opts = self.options
        longer_s = min(self._open_for_s * opts.backoff_multiplier, opts.max_open_duration_s)
        if probes.failure_rate >= opts.failure_rate_threshold:
            self._open(now, probes, TripReason.PROBE_FAILURE_RATE, longer_s)
        elif probes.slow_call_rate >= opts.slow_call_rate_threshold:
            self._open(now, probes, TripReason.PROBE_SLOW_CALL_RATE, longer_s)
        else:
            self._window.clear()
            self._open_for_s = opts.open_duration_s
            self._move(CircuitState.CLOSED)
            self._on_event(
                CircuitClosed(self.target, probes.calls, probes.failure_rate, probes.slow_call_rate)
            )

    def _open(
        self, now: float, counts: WindowCounts, reason: TripReason, open_for_s: float
    ) -> None:
        self._why = _explain(reason, counts, self._consecutive)
        self._open_for_s = open_for_s
        self._open_until = now + open_for_s
        self._move(CircuitState.OPEN)
        rates = (counts.failure_rate, counts.slow_call_rate)
        self._on_event(CircuitOpened(self.target, *rates, counts.calls, open_for_s, reason))

    def _half_open(self) -> None:
        self._window.clear()
        self._move(CircuitState.HALF_OPEN)
        self._on_event(CircuitHalfOpened(self.target, self.options.half_open_max_calls))

    def _force(self, mode: CircuitMode, state: CircuitState) -> None:
        self._mode = mode
        self._move(state)
        self._on_event(CircuitForced(self.target, mode))

    def _move(self, state: CircuitState) -> None:
        self._state = state
        self._period += 1
        self._consecutive = 0
        self._probes.clear()
        self._probes_in_flight = 0


def _explain(reason: TripReason, counts: WindowCounts, consecutive: int) -> str:
    """Why the breaker opened, as a clause for the refusal message."""
    calls, failures, slow = counts.calls, counts.failures, counts.slow_calls
    if reason is TripReason.CONSECUTIVE_FAILURES:
        return f"the last {consecutive} calls failed"
    if reason is TripReason.FAILURE_RATE:
        return f"{failures} of the last {calls} calls failed ({counts.failure_rate:.0%})"
    if reason is TripReason.SLOW_CALL_RATE:
        return f"{slow} of the last {calls} calls were slow ({counts.slow_call_rate:.0%})"
    if reason is TripReason.PROBE_FAILURE_RATE:
        return f"{failures} of {calls} probe calls failed"
    return f"{slow} of {calls} probe calls were slow"
