"""`RolloutPlanSettings`: a rollout plan as YAML writes it; `parse_plan` turns one into a plan.

```yaml
model: iris
stable_version: "3"
canary_version: "4"
steps:
  - set_weight: 10
  - pause: {duration_s: 60}
  - analysis:
      interval_s: 30
      count: 3
      failure_limit: 1
      guardrails:
        - {name: errors, metric: error_rate, max: 0.01}
        - {name: latency, metric: latency_p95_s, max: 1.2, relative_to_stable: true}
        - {name: drift, metric: drift_score, max: 0.99}
        - name: conversion
          metric:
            kind: business
            name: conversion
            query: 'sum(rate(purchases_total{version="{version}"}[{window}]))'
          min: 0.02
  - pause: {until_approved: true}
  - set_weight: 50
```

A metric is its kind (`error_rate`), or a mapping with `kind` and at most one source (`query`,
`function`, `pushed: true`). See `seawall.release.plan` for what each kind's values mean.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from seawall.config.base import NAME_PATTERN, Settings
from seawall.errors import ConfigError
from seawall.release.plan import (
    DEFAULT_APPROVAL_POLL_S,
    DEFAULT_CONSECUTIVE_ERROR_LIMIT,
    DEFAULT_FAILURE_LIMIT,
    DEFAULT_METRIC_TIMEOUT_S,
    Analysis,
    Guardrail,
    Inconclusive,
    MetricKind,
    MetricRef,
    Pause,
    RolloutPlan,
    SetWeight,
    Step,
)

__all__ = [
    "AnalysisSettings",
    "GuardrailSettings",
    "MetricSettings",
    "PauseSettings",
    "RolloutPlanSettings",
    "StepSettings",
    "parse_plan",
]


class MetricSettings(Settings):
    """A metric a guardrail reads: its kind, and where the values come from."""

    kind: MetricKind
    """error_rate, latency_p95_s, drift_score, prediction_shift or business."""
    name: str | None = Field(None, pattern=NAME_PATTERN)
    """Name of a business or pushed metric (default: the kind)."""
    query: str | None = Field(None, min_length=1)
    """PromQL; `{model}`, `{version}` and `{window}` (e.g. `30s`) are filled in."""
    function: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    """`module:function` called with (model, version, window_s), returning a number or None."""
    pushed: bool = False
    """Values pushed through the admin API under `name`."""

    def ref(self) -> MetricRef:
        """The metric reference these settings describe."""
        return MetricRef(self.kind, self.name or "", self.query, self.function, self.pushed)


class GuardrailSettings(Settings):
    """Bounds a canary's metric must stay within (inclusive); at least one of max and min."""

    name: str = Field(pattern=NAME_PATTERN)
    """Names the guardrail in decisions and audit records."""
    metric: MetricSettings
    """The metric: a kind (`error_rate`) or a mapping with `kind` and a source."""
    max: float | None = None
    """Upper bound (with `relative_to_stable`: a ratio to the stable version's value)."""
    min: float | None = None
    """Lower bound (with `relative_to_stable`: a ratio to the stable version's value)."""
    relative_to_stable: bool = False
    """Bounds are ratios canary / stable (`max: 1.2` on latency: at most 1.2 x stable's)."""

    @field_validator("metric", mode="before")
    @classmethod
    def _kind_alone(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    def guardrail(self) -> Guardrail:
        """The guardrail these settings describe."""
        with _within("metric"):
            metric = self.metric.ref()
        return Guardrail(self.name, metric, self.max, self.min, self.relative_to_stable)


class PauseSettings(Settings):
    """Wait a duration, or until the canary is approved: exactly one."""

    duration_s: float | None = Field(None, gt=0)
    """Seconds to wait."""
    until_approved: bool = False
    """Wait until the registry says the canary version has its approvals."""

    def step(self) -> Pause:
        """The pause step."""
        return Pause(self.duration_s, self.until_approved)


class AnalysisSettings(Settings):
    """Measure the guardrails every interval until `count` runs concluded."""

    interval_s: float = Field(gt=0)
    """Seconds between runs; also the window each metric is measured over."""
    count: int = Field(ge=1)
    """Runs that must conclude (pass or fail) before the next step."""
    failure_limit: int = Field(DEFAULT_FAILURE_LIMIT, ge=0)
    """Failed runs tolerated; one more rolls the canary back."""
    consecutive_error_limit: int = Field(DEFAULT_CONSECUTIVE_ERROR_LIMIT, ge=0)
    """Runs in a row with an unavailable metric tolerated; one more is inconclusive."""
    inconclusive: Inconclusive = Inconclusive.PAUSE
    """pause (wait for a human to resume or abort) or fail (roll back)."""
    metric_timeout_s: float = Field(DEFAULT_METRIC_TIMEOUT_S, gt=0)
    """Longest wait for one metric value; slower counts as unavailable."""
    guardrails: list[GuardrailSettings] = Field(min_length=1)
    """What the canary is held to."""

    def step(self) -> Analysis:
        """The analysis step."""
        guardrails = []
        for i, settings in enumerate(self.guardrails):
            with _within(f"guardrails[{i}]"):
                guardrails.append(settings.guardrail())
        return Analysis(
            interval_s=self.interval_s,
            count=self.count,
            guardrails=tuple(guardrails),
            failure_limit=self.failure_limit,
            consecutive_error_limit=self.consecutive_error_limit,
            inconclusive=self.inconclusive,
            metric_timeout_s=self.metric_timeout_s,
        )


class StepSettings(Settings):
    """One step: exactly one of set_weight, pause, analysis."""

    set_weight: float | None = Field(None, ge=0, le=100)
    """Percent of the traffic the canary gets from now on."""
    pause: PauseSettings | None = None
    """Wait a duration or for approval."""
    analysis: AnalysisSettings | None = None
    """Measure guardrails."""

    @model_validator(mode="after")
    def _exactly_one(self) -> StepSettings:
        given = [k for k in ("set_weight", "pause", "analysis") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of set_weight, pause, analysis; got {given or 0}")
        return self

    def step(self) -> Step:
        """The step these settings describe."""
        if self.set_weight is not None:
            with _within("set_weight"):
                return SetWeight(self.set_weight)
        if self.pause is not None:
            with _within("pause"):
                return self.pause.step()
        assert self.analysis is not None  # _exactly_one
        with _within("analysis"):
            return self.analysis.step()


class RolloutPlanSettings(Settings):
    """A rollout of one model's canary version: the steps from stable to promoted."""

    model: str = Field(pattern=NAME_PATTERN)
    """The model whose traffic moves."""
    stable_version: str = Field(pattern=NAME_PATTERN)
    """The version serving now."""
    canary_version: str = Field(pattern=NAME_PATTERN)
    """The version being rolled out."""
    steps: list[StepSettings] = Field(min_length=1)
    """In order; after the last one the canary is promoted."""
    approval_poll_s: float = Field(DEFAULT_APPROVAL_POLL_S, gt=0)
    """How often an approval pause asks whether the canary was approved."""

    @model_validator(mode="after")
    def _plan_is_valid(self) -> RolloutPlanSettings:
        self.plan()  # the plan's own rules (across steps) fail at load, with their path
        return self

    def plan(self) -> RolloutPlan:
        """The plan these settings describe."""
        steps = []
        for i, settings in enumerate(self.steps):
            with _within(f"steps[{i}]"):
                steps.append(settings.step())
        return RolloutPlan(
            self.model, self.stable_version, self.canary_version, tuple(steps), self.approval_poll_s
        )


def parse_plan(mapping: Mapping[str, Any], *, source: str = "rollout plan") -> RolloutPlan:
    """The plan in `mapping` (YAML's shape); `ConfigError` naming each bad field's path."""
    try:
        return RolloutPlanSettings.model_validate(mapping).plan()
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
    lines = "\n".join(f"  {p}" for p in problems)
    raise ConfigError(f"{source}: {len(problems)} problem(s):\n{lines}", problems)


@contextmanager
def _within(path: str) -> Iterator[None]:
    """Prefix a ValueError raised inside with the path of the field it is about."""
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"{path}.{exc}") from exc


def _describe(error: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for part in error["loc"]:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}" if parts else str(part))
    where = "".join(parts)
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling)"
    elif error["type"] == "value_error":  # our own: drop pydantic's "Value error, "
        message = str(error.get("ctx", {}).get("error", message))
        if not where:  # raised by the plan: the message starts with the path
            return message
    return f"{where or '(top level)'}: {message}"
