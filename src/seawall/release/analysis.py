"""One analysis run: every guardrail measured and judged, and the run's verdict.

A guardrail passes when the canary's value is within its bounds (inclusive), fails when it is
outside, and is an error when a value (the canary's, or the stable version's for a relative
guardrail) is unavailable or took longer than the metric timeout. The run fails if any guardrail
failed, is an error (inconclusive) if any errored and none failed, and passes otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from seawall.clock import Clock
from seawall.release.errors import MetricUnavailableError
from seawall.release.metrics import MetricSource, finite
from seawall.release.plan import Analysis, Guardrail, RolloutPlan

__all__ = ["AnalysisRun", "GuardrailResult", "Verdict", "judge", "run_analysis", "verdict_of"]


class Verdict(StrEnum):
    """The outcome of a guardrail or a run; the values are metric labels and JSON."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class GuardrailResult:
    """One guardrail's measurement: the values, the absolute bounds, the verdict and why."""

    name: str
    #: The canary's value (None when unavailable).
    value: float | None
    #: The stable version's value (relative guardrails only; None otherwise or if unavailable).
    stable_value: float | None
    #: The absolute upper bound the value was held to (for a relative one: max x stable value).
    threshold: float | None
    verdict: Verdict
    reason: str
    #: The absolute lower bound, if the guardrail has one.
    threshold_min: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The result in plain JSON types."""
        return {
            "name": self.name,
            "value": self.value,
            "stable_value": self.stable_value,
            "threshold": self.threshold,
            "threshold_min": self.threshold_min,
            "verdict": self.verdict.value,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuardrailResult:
        """The inverse of `to_json`."""
        return cls(
            name=str(data["name"]),
            value=_number(data["value"]),
            stable_value=_number(data["stable_value"]),
            threshold=_number(data["threshold"]),
            verdict=Verdict(data["verdict"]),
            reason=str(data["reason"]),
            threshold_min=_number(data["threshold_min"]),
        )


@dataclass(frozen=True, slots=True)
class AnalysisRun:
    """One measurement of every guardrail of the analysis at plan step `step_index`."""

    step_index: int
    #: Wall-clock seconds (Unix) when the run was made.
    at: float
    verdict: Verdict
    results: tuple[GuardrailResult, ...]

    def to_json(self) -> dict[str, Any]:
        """The run in plain JSON types."""
        return {
            "step_index": self.step_index,
            "at": self.at,
            "verdict": self.verdict.value,
            "results": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisRun:
        """The inverse of `to_json`."""
        return cls(
            step_index=int(data["step_index"]),
            at=float(data["at"]),
            verdict=Verdict(data["verdict"]),
            results=tuple(GuardrailResult.from_json(r) for r in data["results"]),
        )


def judge(guardrail: Guardrail, value: float, stable_value: float | None = None) -> GuardrailResult:
    """Hold `value` to the guardrail's bounds (relative ones scaled by `stable_value`)."""
    low, high = guardrail.bounds(stable_value)
    name = guardrail.metric.name
    if high is not None and value > high:
        verdict, reason = Verdict.FAIL, f"{name} {value:g} > {high:g}"
    elif low is not None and value < low:
        verdict, reason = Verdict.FAIL, f"{name} {value:g} < {low:g}"
    else:
        verdict, reason = Verdict.PASS, f"{name} {value:g} within {_range(low, high)}"
    if guardrail.relative_to_stable:
        ratios = _range(guardrail.min, guardrail.max)
        reason += f" ({ratios} x stable {stable_value:g})"
    return GuardrailResult(guardrail.name, value, stable_value, high, verdict, reason, low)


def verdict_of(results: Sequence[GuardrailResult]) -> Verdict:
    """Fail if any failed; error if any errored and none failed; pass otherwise."""
    verdicts = {r.verdict for r in results}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    return Verdict.ERROR if Verdict.ERROR in verdicts else Verdict.PASS


async def run_analysis(
    plan: RolloutPlan,
    step_index: int,
    *,
    metrics: MetricSource,
    clock: Clock,
) -> AnalysisRun:
    """Measure every guardrail of the analysis at `plan.steps[step_index]`, concurrently."""
    analysis = plan.steps[step_index]
    if not isinstance(analysis, Analysis):
        raise ValueError(f"step_index: steps[{step_index}] is not an analysis")
    at = clock.time()
    results = await asyncio.gather(
        *(_measure(g, plan, analysis, metrics, clock) for g in analysis.guardrails)
    )
    return AnalysisRun(step_index, at, verdict_of(results), tuple(results))


async def _measure(
    guardrail: Guardrail,
    plan: RolloutPlan,
    analysis: Analysis,
    metrics: MetricSource,
    clock: Clock,
) -> GuardrailResult:
    async def read(version: str) -> float:
        async with clock.timeout(analysis.metric_timeout_s):
            value = await metrics.value(guardrail.metric, version, analysis.interval_s)
        return finite(guardrail.metric, value)  # a custom source's NaN is unavailable too

    versions = [plan.canary_version]
    if guardrail.relative_to_stable:
        versions.append(plan.stable_version)
    outcomes = await asyncio.gather(*(read(v) for v in versions), return_exceptions=True)
    values = [None if isinstance(o, BaseException) else o for o in outcomes]
    problems = [_problem(o, analysis) for o in outcomes if isinstance(o, BaseException)]
    stable = values[1] if guardrail.relative_to_stable else None
    if values[0] is not None and not problems:
        return judge(guardrail, values[0], stable)
    low, high = (None, None) if guardrail.relative_to_stable else guardrail.bounds(None)
    reason = "unavailable: " + "; ".join(problems)
    return GuardrailResult(guardrail.name, values[0], stable, high, Verdict.ERROR, reason, low)


def _problem(outcome: BaseException, analysis: Analysis) -> str:
    if isinstance(outcome, MetricUnavailableError):
        return str(outcome)
    if isinstance(outcome, TimeoutError):
        return f"no value within {analysis.metric_timeout_s:g} s"
    raise outcome  # a bug in a source, not a missing value: do not hide it


def _range(low: float | None, high: float | None) -> str:
    if low is None:
        return f"<= {high:g}"
    if high is None:
        return f">= {low:g}"
    return f"{low:g}..{high:g}"


def _number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number or null, got {value!r}")
    return float(value)
