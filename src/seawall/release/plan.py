"""A rollout plan: the steps that move traffic to a canary version and the guardrails judging it.

Steps run in order: `SetWeight` sends a share of the traffic to the canary, `Pause` waits (a
duration, or until the registry approves the canary), `Analysis` measures guardrails at an
interval. When the last step is done the canary is promoted; a failed analysis rolls it back.

Metric kinds and what their values mean:

- `error_rate`: share of the version's calls in the window that failed (0..1);
- `latency_p95_s`: the version's 95th-percentile latency in the window, seconds;
- `drift_score`: the data guard's verdict on the version's live inputs, in 0..1: 1.0 when its
  latest drift report says drifting (the Bonferroni-corrected verdict), otherwise the report's
  score (largest PSI of any feature or output) capped at 1.0. So `max: 0.99` fails exactly the
  drifting versions, and a lower `max` (0.2, say) fails large PSIs that are not yet significant;
- `prediction_shift`: distance between the canary's and the stable version's prediction
  distributions (from shadow or variant samples), as the source supplies it;
- `business`: a named metric from a PromQL query, a Python function or pushed values.

Any metric may name a source (`query`, `function` or `pushed`); without one, the four built-in
kinds come from seawall itself (gateway windows, drift reports, shadow comparison).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFAULT_APPROVAL_POLL_S",
    "DEFAULT_CONSECUTIVE_ERROR_LIMIT",
    "DEFAULT_FAILURE_LIMIT",
    "DEFAULT_METRIC_TIMEOUT_S",
    "Analysis",
    "Guardrail",
    "Inconclusive",
    "MetricKind",
    "MetricRef",
    "Origin",
    "Pause",
    "RolloutPlan",
    "SetWeight",
    "Step",
]

#: How often a `Pause(until_approved=True)` step asks whether the canary was approved.
DEFAULT_APPROVAL_POLL_S = 30.0
#: Failed analysis runs tolerated; one more rolls the canary back.
DEFAULT_FAILURE_LIMIT = 0
#: Consecutive runs with an unavailable metric tolerated; one more makes the analysis inconclusive.
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
#: Longest wait for one metric value; a slower source counts as unavailable.
DEFAULT_METRIC_TIMEOUT_S = 10.0

#: `module.path:function` (the function may be a dotted attribute path).
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class MetricKind(StrEnum):
    """What a guardrail measures; the values are the YAML spelling."""

    ERROR_RATE = "error_rate"
    LATENCY_P95_S = "latency_p95_s"
    DRIFT_SCORE = "drift_score"
    PREDICTION_SHIFT = "prediction_shift"
    BUSINESS = "business"


class Origin(StrEnum):
    """Where a metric's values come from."""

    BUILTIN = "builtin"
    PROMQL = "promql"
    CALLABLE = "callable"
    PUSHED = "pushed"


class Inconclusive(StrEnum):
    """What an analysis does when its metrics stay unavailable: wait for a human, or fail."""

    PAUSE = "pause"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class MetricRef:
    """A metric a guardrail reads: its kind, name, and at most one explicit source."""

    kind: MetricKind
    #: Names pushed values and business metrics; defaults to the kind.
    name: str = ""
    #: PromQL text; `{model}`, `{version}` and `{window}` (a duration, `30s`) are filled in.
    query: str | None = None
    #: `module:function` called as `function(model, version, window_s) -> float | None`.
    function: str | None = None
    #: Values pushed by name (the admin API).
    pushed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _kind(self.kind))
        sources = [s for s in ("query", "function", "pushed") if getattr(self, s)]
        if len(sources) > 1:
            raise ValueError(f"{'/'.join(sources)}: give at most one source, got {len(sources)}")
        if self.kind is MetricKind.BUSINESS and not self.name:
            raise ValueError("name: a business metric needs a name")
        if self.kind is MetricKind.BUSINESS and not sources:
            raise ValueError("query/function/pushed: a business metric needs one of these sources")
        if self.query is not None and not self.query.strip():
            raise ValueError("query: must not be empty")
        if self.function is not None and not _FUNCTION.match(self.function):
            raise ValueError(f"function: expected 'module.path:function', got {self.function!r}")
        if not self.name:
            object.__setattr__(self, "name", self.kind.value)

    @property
    def origin(self) -> Origin:
        """The source the values come from."""
        if self.query is not None:
            return Origin.PROMQL
        if self.function is not None:
            return Origin.CALLABLE
        return Origin.PUSHED if self.pushed else Origin.BUILTIN


@dataclass(frozen=True, slots=True)
class Guardrail:
    """Bounds a metric of the canary must stay within.

    With `relative_to_stable` the bounds are ratios to the stable version's value of the same
    metric over the same window: `max: 1.2` on `latency_p95_s` means at most 1.2 x stable's p95.
    """

    name: str
    metric: MetricRef
    max: float | None = None
    min: float | None = None
    relative_to_stable: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        if self.max is None and self.min is None:
            raise ValueError("max/min: give at least one bound")
        for bound, value in (("max", self.max), ("min", self.min)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{bound}: must be a finite number, got {value}")
            if value is not None and self.relative_to_stable and value < 0:
                raise ValueError(f"{bound}: a ratio to stable cannot be negative, got {value}")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min: {self.min} is above max {self.max}")
        if self.relative_to_stable and self.metric.kind is MetricKind.PREDICTION_SHIFT:
            raise ValueError("relative_to_stable: prediction_shift already compares with stable")

    def bounds(self, stable_value: float | None) -> tuple[float | None, float | None]:
        """The absolute (min, max) the canary's value is held to."""
        if not self.relative_to_stable:
            return self.min, self.max
        if stable_value is None:
            raise ValueError("stable_value: a relative guardrail needs the stable version's value")
        low = None if self.min is None else self.min * stable_value
        high = None if self.max is None else self.max * stable_value
        return low, high


@dataclass(frozen=True, slots=True)
class SetWeight:
    """Send `percent` of the model's traffic to the canary; done at once."""

    percent: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "percent", float(self.percent))
        if not (math.isfinite(self.percent) and 0 <= self.percent <= 100):
            raise ValueError(f"percent: must be within 0..100, got {self.percent}")


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait `duration_s`, or until the canary version is approved (exactly one)."""

    duration_s: float | None = None
    until_approved: bool = False

    def __post_init__(self) -> None:
        if (self.duration_s is None) == (not self.until_approved):
            raise ValueError("duration_s: give either duration_s or until_approved: true, not both")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise ValueError(f"duration_s: must be a positive number, got {self.duration_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """Measure every guardrail each `interval_s` until `count` runs concluded.

    A run fails when any guardrail fails; more than `failure_limit` failed runs roll the canary
    back. A run in which a metric was unavailable (and none failed) is an error: it does not
    count towards `count` and is retried next interval; more than `consecutive_error_limit` of
    them in a row make the analysis inconclusive, which pauses for a human (or fails).
    """

    interval_s: float
    count: int
    guardrails: tuple[Guardrail, ...]
    failure_limit: int = DEFAULT_FAILURE_LIMIT
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    inconclusive: Inconclusive = Inconclusive.PAUSE
    metric_timeout_s: float = DEFAULT_METRIC_TIMEOUT_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "guardrails", tuple(self.guardrails))
        object.__setattr__(self, "inconclusive", Inconclusive(self.inconclusive))
        object.__setattr__(self, "interval_s", float(self.interval_s))
        for name in ("interval_s", "metric_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number, got {value}")
        if self.count < 1:
            raise ValueError(f"count: must be at least 1, got {self.count}")
        if not 0 <= self.failure_limit < self.count:
            raise ValueError(
                f"failure_limit: must be within 0..count-1 ({self.count - 1}) or the analysis "
                f"can never fail, got {self.failure_limit}"
            )
        if self.consecutive_error_limit < 0:
            raise ValueError(
                f"consecutive_error_limit: must be >= 0, got {self.consecutive_error_limit}"
            )
        if not self.guardrails:
            raise ValueError("guardrails: an analysis needs at least one guardrail")
        names = [g.name for g in self.guardrails]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"guardrails: names must be unique, repeated: {repeated}")

    @property
    def duration_s(self) -> float:
        """How long the analysis takes when every run concludes: `interval_s` x `count`."""
        return self.interval_s * self.count


Step = SetWeight | Pause | Analysis


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """The steps moving `model`'s traffic from `stable_version` to `canary_version`."""

    model: str
    stable_version: str
    canary_version: str
    steps: tuple[Step, ...]
    approval_poll_s: float = DEFAULT_APPROVAL_POLL_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        for name in ("model", "stable_version", "canary_version"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must not be empty")
        if self.canary_version == self.stable_version:
            raise ValueError(f"canary_version: is the stable version {self.stable_version!r}")
        if not (math.isfinite(self.approval_poll_s) and self.approval_poll_s > 0):
            raise ValueError(
                f"approval_poll_s: must be a positive number, got {self.approval_poll_s}"
            )
        if not self.steps:
            raise ValueError("steps: a plan needs at least one step")
        _check_steps(self.steps)

    def metrics(self) -> tuple[MetricRef, ...]:
        """Every metric the plan's guardrails read, once each, in plan order."""
        refs = (g.metric for s in self.steps if isinstance(s, Analysis) for g in s.guardrails)
        return tuple(dict.fromkeys(refs))

    @property
    def pause_s(self) -> float:
        """The sum of the timed pauses (approval waits excluded)."""
        return sum(s.duration_s or 0.0 for s in self.steps if isinstance(s, Pause))


def _check_steps(steps: tuple[Step, ...]) -> None:
    weight = 0.0
    for i, step in enumerate(steps):
        if not isinstance(step, SetWeight | Pause | Analysis):
            raise ValueError(f"steps[{i}]: expected SetWeight, Pause or Analysis, got {step!r}")
        if isinstance(step, SetWeight):
            weight = step.percent
        elif isinstance(step, Analysis) and weight <= 0:
            raise ValueError(
                f"steps[{i}].analysis: the canary gets no traffic here (weight {weight:g}); "
                "set a weight above 0 before analysing it"
            )


def _kind(value: object) -> MetricKind:
    try:
        return MetricKind(str(value))
    except ValueError:
        kinds = ", ".join(k.value for k in MetricKind)
        raise ValueError(f"kind: expected one of {kinds}, got {value!r}") from None
