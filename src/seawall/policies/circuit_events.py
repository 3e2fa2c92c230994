"""What the circuit breaker tells the outside: its states, the events it emits, its snapshot.

Telemetry subscribes to the events and the admin API shows the snapshot; `circuit.py` re-exports
every name here, next to the options and the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CircuitClosed",
    "CircuitForced",
    "CircuitHalfOpened",
    "CircuitMode",
    "CircuitOpened",
    "CircuitRejected",
    "CircuitSnapshot",
    "CircuitState",
    "TripReason",
]


class CircuitState(StrEnum):
    """Where the breaker is; the values are metric labels."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitMode(StrEnum):
    """Automatic, or held open or closed by an operator."""

    AUTOMATIC = "automatic"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


class TripReason(StrEnum):
    """Why the breaker opened."""

    FAILURE_RATE = "failure_rate"
    SLOW_CALL_RATE = "slow_call_rate"
    CONSECUTIVE_FAILURES = "consecutive_failures"
    PROBE_FAILURE_RATE = "probe_failure_rate"
    PROBE_SLOW_CALL_RATE = "probe_slow_call_rate"


@dataclass(frozen=True, slots=True)
class CircuitOpened:
    """The breaker opened for `open_for_s` seconds; the rates and calls are what tripped it."""

    target: str
    failure_rate: float
    slow_call_rate: float
    calls: int
    open_for_s: float
    reason: TripReason


@dataclass(frozen=True, slots=True)
class CircuitHalfOpened:
    """The open duration ended: up to `probes` calls will test the backend."""

    target: str
    probes: int


@dataclass(frozen=True, slots=True)
class CircuitClosed:
    """The probes passed: `calls` probes ended with these rates, below the thresholds."""

    target: str
    calls: int
    failure_rate: float
    slow_call_rate: float


@dataclass(frozen=True, slots=True)
class CircuitRejected:
    """A call was refused without reaching the backend."""

    target: str
    state: CircuitState
    mode: CircuitMode
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class CircuitForced:
    """An operator forced the breaker open or closed, or reset it to automatic (and CLOSED)."""

    target: str
    mode: CircuitMode


@dataclass(frozen=True, slots=True)
class CircuitSnapshot:
    """The breaker now, for metrics and the admin API.

    The counts and rates are the sliding window's, or while HALF_OPEN the ended probes'.
    `open_until` is a time on the breaker's clock (`Clock.monotonic()`), set only while OPEN
    automatically; `retry_after_s` is the time left until then.
    """

    state: CircuitState
    mode: CircuitMode
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    consecutive_failures: int
    probes_in_flight: int
    open_for_s: float
    open_until: float | None
    retry_after_s: float | None
