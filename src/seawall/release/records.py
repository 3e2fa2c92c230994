"""What the rollout store hands out: immutable records of rollouts and their decisions.

Each has `to_json()` (plain JSON types, times in ISO 8601 UTC) for the admin API, the CLI's
`--json` output and audit details.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from seawall.release.codec import plan_from_json
from seawall.release.plan import RolloutPlan
from seawall.release.state import DecisionKind, RolloutState, Status
from seawall.store.record import Record

__all__ = ["DecisionRecord", "RolloutRecord"]


@dataclass(frozen=True, slots=True)
class RolloutRecord(Record):
    """One rollout as stored: where it stands, its plan and the controller's state."""

    id: int
    model: str
    stable_version: str
    canary_version: str
    status: Status
    step_index: int
    #: The canary's share of traffic, percent.
    weight: float
    #: The reason of the latest decision.
    reason: str
    #: `plan_to_json(plan)`.
    plan: dict[str, Any]
    #: `RolloutState.to_json()`.
    state: dict[str, Any]
    created_at: datetime
    created_by: str
    updated_at: datetime
    #: Saves so far; a save must name the current one.
    revision: int

    @property
    def live(self) -> bool:
        """Not promoted, rolled back or aborted."""
        return not self.status.terminal

    def rollout_plan(self) -> RolloutPlan:
        """The plan, rebuilt."""
        return plan_from_json(self.plan)

    def rollout_state(self) -> RolloutState:
        """The controller's state, rebuilt."""
        return RolloutState.from_json(self.state)


@dataclass(frozen=True, slots=True)
class DecisionRecord(Record):
    """One stored decision of a rollout, with the guardrail results behind it."""

    id: int
    rollout_id: int
    model: str
    canary_version: str
    kind: DecisionKind
    step_index: int
    status: Status
    weight: float
    reason: str
    #: `GuardrailResult.to_json()` of each guardrail: value, stable_value, threshold, verdict.
    results: tuple[dict[str, Any], ...]
    at: datetime
    actor: str
