"""Rollout plans: metric references, guardrail bounds, steps, and the plan's own rules."""

from __future__ import annotations

import pytest

from seawall.release.plan import (
    DEFAULT_CONSECUTIVE_ERROR_LIMIT,
    DEFAULT_FAILURE_LIMIT,
    Analysis,
    Guardrail,
    Inconclusive,
    MetricKind,
    MetricRef,
    Origin,
    Pause,
    RolloutPlan,
    SetWeight,
)

ERRORS = MetricRef(MetricKind.ERROR_RATE)
GUARD = Guardrail("errors", ERRORS, max=0.01)


def test_a_builtin_metric_is_named_after_its_kind_and_comes_from_seawall() -> None:
    assert (ERRORS.name, ERRORS.origin) == ("error_rate", Origin.BUILTIN)
    assert MetricRef("latency_p95_s").kind is MetricKind.LATENCY_P95_S  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ref", "origin"),
    [
        (MetricRef(MetricKind.BUSINESS, "conversion", query="sum(x)"), Origin.PROMQL),
        (MetricRef(MetricKind.BUSINESS, "conversion", function="pkg.mod:fn"), Origin.CALLABLE),
        (MetricRef(MetricKind.BUSINESS, "conversion", pushed=True), Origin.PUSHED),
        (MetricRef(MetricKind.ERROR_RATE, query="rate(errors[{window}])"), Origin.PROMQL),
    ],
)
def test_the_origin_is_the_source_given(ref: MetricRef, origin: Origin) -> None:
    assert ref.origin is origin


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "latency"}, "kind: expected one of error_rate, latency_p95_s, drift_score"),
        ({"kind": MetricKind.BUSINESS, "query": "x"}, "name: a business metric needs a name"),
        ({"kind": MetricKind.BUSINESS, "name": "c"}, "query/function/pushed: a business metric"),
        (
            {"kind": MetricKind.ERROR_RATE, "query": "x", "pushed": True},
            "query/pushed: give at most one source, got 2",
        ),
        ({"kind": MetricKind.ERROR_RATE, "query": "  "}, "query: must not be empty"),
        ({"kind": MetricKind.ERROR_RATE, "function": "no_colon"}, "function: expected 'module"),
    ],
)
def test_bad_metric_references_are_refused_naming_the_field(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MetricRef(**kwargs)  # type: ignore[arg-type]


def test_absolute_bounds_are_the_guardrails_own() -> None:
    guard = Guardrail("lat", MetricRef(MetricKind.LATENCY_P95_S), max=0.5, min=0.01)
    assert guard.bounds(None) == (0.01, 0.5)
    assert guard.bounds(123.0) == (0.01, 0.5)  # the stable value is ignored


def test_relative_bounds_scale_with_the_stable_value() -> None:
    guard = Guardrail("lat", MetricRef(MetricKind.LATENCY_P95_S), max=1.2, relative_to_stable=True)
    assert guard.bounds(0.25) == (None, 0.3)
    assert guard.bounds(0.0) == (None, 0.0)
    with pytest.raises(ValueError, match="stable_value: a relative guardrail needs"):
        guard.bounds(None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name: must not be empty"),
        ({"max": None}, "max/min: give at least one bound"),
        ({"max": float("inf")}, "max: must be a finite number"),
        ({"max": 1.0, "min": 2.0}, "min: 2.0 is above max 1.0"),
        ({"max": -1.0, "relative_to_stable": True}, "max: a ratio to stable cannot be negative"),
        (
            {"metric": MetricRef(MetricKind.PREDICTION_SHIFT), "relative_to_stable": True},
            "relative_to_stable: prediction_shift already compares with stable",
        ),
    ],
)
def test_bad_guardrails_are_refused_naming_the_field(
    kwargs: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {"name": "g", "metric": ERRORS, "max": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        Guardrail(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("percent", [-1.0, 100.5, float("nan")])
def test_weights_outside_0_to_100_are_refused(percent: float) -> None:
    with pytest.raises(ValueError, match=r"percent: must be within 0\.\.100"):
        SetWeight(percent)


def test_weights_are_floats() -> None:
    assert SetWeight(10).percent == 10.0
    assert isinstance(SetWeight(10).percent, float)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "duration_s: give either duration_s or until_approved"),
        ({"duration_s": 5.0, "until_approved": True}, "duration_s: give either"),
        ({"duration_s": 0.0}, "duration_s: must be a positive number, got 0.0"),
    ],
)
def test_a_pause_is_a_duration_or_an_approval(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pause(**kwargs)  # type: ignore[arg-type]


def test_analysis_defaults_and_duration() -> None:
    step = Analysis(interval_s=30, count=3, guardrails=[GUARD])  # type: ignore[arg-type]
    assert step.guardrails == (GUARD,)
    assert (step.failure_limit, step.consecutive_error_limit) == (
        DEFAULT_FAILURE_LIMIT,
        DEFAULT_CONSECUTIVE_ERROR_LIMIT,
    )
    assert step.inconclusive is Inconclusive.PAUSE
    assert step.duration_s == 90.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval_s": 0}, "interval_s: must be a positive number, got 0"),
        ({"metric_timeout_s": float("nan")}, "metric_timeout_s: must be a positive number"),
        ({"count": 0}, "count: must be at least 1, got 0"),
        ({"failure_limit": 3}, r"failure_limit: must be within 0..count-1 \(2\)"),
        ({"consecutive_error_limit": -1}, "consecutive_error_limit: must be >= 0"),
        ({"guardrails": ()}, "guardrails: an analysis needs at least one guardrail"),
        (
            {"guardrails": (GUARD, GUARD)},
            r"guardrails: names must be unique, repeated: \['errors'\]",
        ),
        ({"inconclusive": "wait"}, "'wait' is not a valid Inconclusive"),
    ],
)
def test_bad_analyses_are_refused_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"interval_s": 30.0, "count": 3, "guardrails": (GUARD,), **kwargs}
    with pytest.raises(ValueError, match=message):
        Analysis(**fields)  # type: ignore[arg-type]


def analysis(*guards: Guardrail) -> Analysis:
    return Analysis(interval_s=30.0, count=2, guardrails=guards or (GUARD,))


def test_a_plan_lists_its_metrics_once_each_and_sums_its_pauses() -> None:
    latency = Guardrail("lat", MetricRef(MetricKind.LATENCY_P95_S), max=1.0)
    plan = RolloutPlan(
        "iris",
        "1",
        "2",
        (
            SetWeight(10),
            Pause(60),
            analysis(GUARD, latency),
            Pause(until_approved=True),
            analysis(Guardrail("errors-again", ERRORS, max=0.02)),
            Pause(15.5),
        ),
    )
    assert plan.metrics() == (ERRORS, latency.metric)
    assert plan.pause_s == 75.5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": ""}, "model: must not be empty"),
        ({"canary_version": "1"}, "canary_version: is the stable version '1'"),
        ({"steps": ()}, "steps: a plan needs at least one step"),
        ({"approval_poll_s": 0.0}, "approval_poll_s: must be a positive number"),
        ({"steps": (SetWeight(10), {"set_weight": 5})}, r"steps\[1\]: expected SetWeight, Pause"),
        ({"steps": (Pause(10), analysis())}, r"steps\[1\]\.analysis: the canary gets no traffic"),
        (
            {"steps": (SetWeight(10), SetWeight(0), Pause(5), analysis())},
            r"steps\[3\]\.analysis: the canary gets no traffic here \(weight 0\)",
        ),
    ],
)
def test_bad_plans_are_refused_naming_the_step_and_field(
    changes: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "model": "iris",
        "stable_version": "1",
        "canary_version": "2",
        "steps": (SetWeight(10), analysis()),
        **changes,
    }
    with pytest.raises(ValueError, match=message):
        RolloutPlan(**fields)  # type: ignore[arg-type]
