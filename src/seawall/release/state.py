"""A rollout's state (where it is in its plan) and the decisions that moved it there.

`RolloutState` is everything a controller needs to carry on after a restart: `to_json()` gives
plain JSON types and `from_json` restores the same state exactly (floats survive a JSON round
trip unchanged). Times are wall-clock seconds (`Clock.time()`), since they must mean the same
thing to the next process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from seawall.release.analysis import AnalysisRun, GuardrailResult

__all__ = ["STATE_FORMAT", "Decision", "DecisionKind", "RolloutState", "Status"]

#: The layout `RolloutState.to_json` writes and `from_json` reads.
STATE_FORMAT = 1

T = TypeVar("T")


class Status(StrEnum):
    """Where a rollout stands; the values are JSON and metric labels."""

    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        """Nothing happens to the rollout any more."""
        return self in (Status.PROMOTED, Status.ROLLED_BACK, Status.ABORTED)


class DecisionKind(StrEnum):
    """What a decision did; the values are audit record actions."""

    #: A pause or analysis step began (an approval pause: now waiting for it).
    STEP = "step"
    #: A `SetWeight` step set the canary's share of traffic.
    WEIGHT = "weight"
    #: An analysis run measured the guardrails.
    ANALYSIS = "analysis"
    #: The approval an approval pause waited for was given.
    APPROVED = "approved"
    #: Paused: by hand, or by an inconclusive analysis (the reason says which).
    PAUSED = "paused"
    RESUMED = "resumed"
    #: Guardrails failed (or an analysis was inconclusive with `inconclusive: fail`).
    ROLLED_BACK = "rolled_back"
    #: Rolled back by hand.
    ABORTED = "aborted"
    #: The canary became the stable version: after the last step, or by hand.
    PROMOTED = "promoted"


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Where the rollout of `canary_version` of `model` is in its plan.

    `weight` is the canary's share of traffic in percent: 100 once promoted, 0 once rolled back
    or aborted. `failures` and `consecutive_errors` count the current analysis step's runs.
    `step_started_at` is None until the step at `step_index` has begun; `paused_at` is set
    while paused, so resuming shifts the step's timers by the time spent paused.
    """

    model: str
    canary_version: str
    step_index: int = 0
    status: Status = Status.RUNNING
    weight: float = 0.0
    analysis_runs: tuple[AnalysisRun, ...] = ()
    failures: int = 0
    consecutive_errors: int = 0
    step_started_at: float | None = None
    next_analysis_at: float | None = None
    paused_at: float | None = None
    reason: str = ""

    def runs_at(self, step_index: int) -> tuple[AnalysisRun, ...]:
        """The analysis runs made at plan step `step_index`."""
        return tuple(r for r in self.analysis_runs if r.step_index == step_index)

    def to_json(self) -> dict[str, Any]:
        """The state in plain JSON types."""
        return {
            "format": STATE_FORMAT,
            "model": self.model,
            "canary_version": self.canary_version,
            "step_index": self.step_index,
            "status": self.status.value,
            "weight": self.weight,
            "analysis_runs": [r.to_json() for r in self.analysis_runs],
            "failures": self.failures,
            "consecutive_errors": self.consecutive_errors,
            "step_started_at": self.step_started_at,
            "next_analysis_at": self.next_analysis_at,
            "paused_at": self.paused_at,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutState:
        """The state `to_json` wrote; ValueError naming the field if the document is not one."""
        if not isinstance(data, Mapping) or data.get("format") != STATE_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(
                f"format: expected a rollout state of format {STATE_FORMAT}, got {found!r}"
            )
        return cls(
            model=_field(data, "model", _text),
            canary_version=_field(data, "canary_version", _text),
            step_index=_field(data, "step_index", _count),
            status=_field(data, "status", Status),
            weight=_field(data, "weight", _number),
            analysis_runs=_field(data, "analysis_runs", _runs),
            failures=_field(data, "failures", _count),
            consecutive_errors=_field(data, "consecutive_errors", _count),
            step_started_at=_field(data, "step_started_at", _time),
            next_analysis_at=_field(data, "next_analysis_at", _time),
            paused_at=_field(data, "paused_at", _time),
            reason=_field(data, "reason", _text),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """One change of a rollout's state, with the measurements behind it (for the audit log)."""

    kind: DecisionKind
    step_index: int
    status: Status
    weight: float
    reason: str
    results: tuple[GuardrailResult, ...]
    #: Wall-clock seconds (Unix) when it was made.
    at: float

    def to_json(self) -> dict[str, Any]:
        """The decision in plain JSON types (an audit record's detail)."""
        return {
            "kind": self.kind.value,
            "step_index": self.step_index,
            "status": self.status.value,
            "weight": self.weight,
            "reason": self.reason,
            "results": [r.to_json() for r in self.results],
            "at": self.at,
        }


def _field(data: Mapping[str, Any], name: str, parse: Callable[[Any], T]) -> T:
    if name not in data:
        raise ValueError(f"{name}: missing from the rollout state")
    try:
        return parse(data[name])
    except KeyError as exc:
        raise ValueError(f"{name}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None


def _runs(value: object) -> tuple[AnalysisRun, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of analysis runs, got {type(value).__name__}")
    return tuple(AnalysisRun.from_json(r) for r in value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a count (an integer >= 0), got {value!r}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _time(value: object) -> float | None:
    return None if value is None else _number(value)
