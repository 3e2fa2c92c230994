"""Rollouts as the admin API shows them, and the requests that start and steer them.

`RolloutView` and `DecisionView` have exactly the fields of the rollout service's records
(`to_json()`), with the state's analysis runs typed, so the schema shows each guardrail's value,
the stable version's, the thresholds and the verdict. Texts that end up in the database and the
audit log (a plan, a reason) are refused when no database could store them (NUL, a lone
surrogate, nesting deeper than `MAX_DEPTH`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from seawall.gateway.admin.records import MAX_DEPTH, MAX_TEXT, MODEL_NAME_PATTERN, Metric
from seawall.release.analysis import Verdict
from seawall.release.state import DecisionKind, Status

if TYPE_CHECKING:
    from seawall.release.records import RolloutRecord

__all__ = [
    "AnalysisRunView",
    "DecisionView",
    "GuardrailResultView",
    "MetricPush",
    "PlanDocument",
    "RolloutCommand",
    "RolloutStateView",
    "RolloutView",
    "rollout_view",
]


def _storable(value: Any) -> Any:
    """`value`, if every text in it can be stored (UTF-8, no NUL) and it nests at most
    `MAX_DEPTH` deep: a plan and a reason go to the database and the audit log as they are."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text contains a NUL character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"text {item!r} is not UTF-8 (a lone surrogate)") from None
        elif isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


PlanDocument = Annotated[dict[str, Any], AfterValidator(_storable)]
Reason = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_storable)]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GuardrailResultView(_View):
    """One guardrail measured once: the values, the bounds they were held to, the verdict."""

    name: str
    value: float | None
    """The canary's value; null when it was unavailable."""
    stable_value: float | None
    """The stable version's value (relative guardrails only)."""
    threshold: float | None
    """The upper bound the value was held to (relative: `max` x the stable value)."""
    threshold_min: float | None
    """The lower bound, if the guardrail has one."""
    verdict: Verdict
    """pass, fail, or error (a value was unavailable)."""
    reason: str


class AnalysisRunView(_View):
    """One analysis run: every guardrail of the step measured at the same time."""

    step_index: int
    at: float
    """Unix seconds."""
    verdict: Verdict
    """fail if any guardrail failed; error if one was unavailable and none failed; else pass."""
    results: list[GuardrailResultView]


class RolloutStateView(_View):
    """Where a rollout is in its plan (what a restarted controller carries on from)."""

    format: int
    model: str
    canary_version: str
    step_index: int
    status: Status
    weight: float
    analysis_runs: list[AnalysisRunView]
    """Every run so far, oldest first."""
    failures: int
    """Failed runs of the current analysis step."""
    consecutive_errors: int
    """Runs in a row of the current analysis step with an unavailable metric."""
    step_started_at: float | None
    next_analysis_at: float | None
    paused_at: float | None
    reason: str


class RolloutView(_View):
    """A rollout of a model's canary version, and where it stands."""

    id: int
    model: str
    stable_version: str
    canary_version: str
    status: Status
    """running, waiting_approval, paused, promoted, rolled_back or aborted."""
    step_index: int
    """The plan step it is at (0-based; the step count once done)."""
    weight: float
    """Percent of the model's traffic the canary gets now."""
    reason: str
    """Why it is in its status (the last decision's reason)."""
    plan: dict[str, Any]
    """The plan, in the shape it was started with."""
    state: RolloutStateView
    created_at: datetime
    created_by: str
    """Who started it: an API key's name, or `cli:<user>`."""
    updated_at: datetime
    revision: int
    """Changes stored so far."""


class DecisionView(_View):
    """One change of a rollout's state, with the measurements behind it."""

    id: int
    rollout_id: int
    model: str
    canary_version: str
    kind: DecisionKind
    """step, weight, analysis, approved, paused, resumed, rolled_back, aborted or promoted."""
    step_index: int
    status: Status
    """The rollout's status after it."""
    weight: float
    """The canary's share of traffic after it, in percent."""
    reason: str
    results: list[GuardrailResultView]
    """The guardrails measured (analysis runs and the rollbacks they caused)."""
    at: datetime
    actor: str
    """An API key's name, `cli:<user>`, or `system` (the controller itself)."""


class RolloutCommand(_View):
    """Why: kept in the decision and the audit log."""

    reason: Reason = ""
    """Empty: `<command> by hand`."""


class MetricPush(_View):
    """A business metric's current value for one version of the model."""

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    """The metric, as a plan's guardrail names it (`metric: {kind: business, name: ..., pushed:
    true}`)."""
    version: str = Field(pattern=MODEL_NAME_PATTERN)
    """The model version the value is about (the stable or the canary one)."""
    value: Metric


def rollout_view(record: RolloutRecord) -> RolloutView:
    """The view of a rollout record."""
    return RolloutView.model_validate(record.to_json())
