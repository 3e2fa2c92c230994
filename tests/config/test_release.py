"""Rollout plans read from YAML: the documented shape, and errors naming each bad field's path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from seawall.config import release as release_config
from seawall.config.release import RolloutPlanSettings, parse_plan
from seawall.errors import ConfigError
from seawall.release.plan import (
    Analysis,
    Guardrail,
    Inconclusive,
    MetricKind,
    MetricRef,
    Pause,
    RolloutPlan,
    SetWeight,
)

DOCUMENTED = (release_config.__doc__ or "").split("```yaml")[1].split("```")[0]


def test_the_documented_example_parses_to_the_plan_it_describes() -> None:
    plan = parse_plan(yaml.safe_load(DOCUMENTED))
    query = 'sum(rate(purchases_total{version="{version}"}[{window}]))'
    assert plan == RolloutPlan(
        "iris",
        "3",
        "4",
        (
            SetWeight(10),
            Pause(60),
            Analysis(
                interval_s=30,
                count=3,
                failure_limit=1,
                guardrails=(
                    Guardrail("errors", MetricRef(MetricKind.ERROR_RATE), max=0.01),
                    Guardrail(
                        "latency",
                        MetricRef(MetricKind.LATENCY_P95_S),
                        max=1.2,
                        relative_to_stable=True,
                    ),
                    Guardrail("drift", MetricRef(MetricKind.DRIFT_SCORE), max=0.99),
                    Guardrail(
                        "conversion",
                        MetricRef(MetricKind.BUSINESS, "conversion", query=query),
                        min=0.02,
                    ),
                ),
            ),
            Pause(until_approved=True),
            SetWeight(50),
        ),
    )


def test_defaults_and_every_option() -> None:
    plan = parse_plan(
        {
            "model": "iris",
            "stable_version": "1",
            "canary_version": "2",
            "approval_poll_s": 5,
            "steps": [
                {"set_weight": 25},
                {
                    "analysis": {
                        "interval_s": 10,
                        "count": 4,
                        "failure_limit": 2,
                        "consecutive_error_limit": 0,
                        "inconclusive": "fail",
                        "metric_timeout_s": 2.5,
                        "guardrails": [
                            {
                                "name": "shift",
                                "metric": {"kind": "prediction_shift", "function": "m.x:f"},
                                "max": 0.1,
                            },
                            {
                                "name": "sales",
                                "metric": {"kind": "business", "name": "sales", "pushed": True},
                                "min": 0.9,
                                "relative_to_stable": True,
                            },
                        ],
                    }
                },
            ],
        }
    )
    assert plan.approval_poll_s == 5.0
    step = plan.steps[1]
    assert isinstance(step, Analysis)
    assert (step.failure_limit, step.consecutive_error_limit, step.metric_timeout_s) == (2, 0, 2.5)
    assert step.inconclusive is Inconclusive.FAIL
    assert plan.metrics() == (
        MetricRef(MetricKind.PREDICTION_SHIFT, function="m.x:f"),
        MetricRef(MetricKind.BUSINESS, "sales", pushed=True),
    )


def base(*steps: Any) -> dict[str, Any]:
    return {"model": "iris", "stable_version": "1", "canary_version": "2", "steps": list(steps)}


def analysis(**changes: Any) -> dict[str, Any]:
    fields = {
        "interval_s": 30,
        "count": 2,
        "guardrails": [{"name": "e", "metric": "error_rate", "max": 0.1}],
    }
    return {"analysis": fields | changes}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (base(), "steps: List should have at least 1 item after validation, not 0"),
        (
            base({"set_weight": 150}),
            "steps[0].set_weight: Input should be less than or equal to 100",
        ),
        (
            base({"set_weight": 5, "pause": {"duration_s": 5}}),
            "steps[0]: give exactly one of set_weight",
        ),
        (base({}), "steps[0]: give exactly one of set_weight, pause, analysis; got 0"),
        (base({"set_weight": 5}, {"wait": 5}), "steps[1].wait: unknown field (check the spelling)"),
        (
            base({"set_weight": 5}, {"pause": {"duration_s": 5, "until_approved": True}}),
            "steps[1].pause.duration_s: give either duration_s or until_approved: true, not both",
        ),
        (
            base({"set_weight": 5}, analysis(interval_s=0)),
            "steps[1].analysis.interval_s: Input should be greater than 0",
        ),
        (
            base({"set_weight": 5}, analysis(count=2, failure_limit=2)),
            "steps[1].analysis.failure_limit: must be within 0..count-1 (1)",
        ),
        (
            base(
                {"set_weight": 5},
                analysis(guardrails=[{"name": "e", "metric": "errors", "max": 1}]),
            ),
            "steps[1].analysis.guardrails[0].metric.kind: Input should be 'error_rate'",
        ),
        (
            base(
                {"set_weight": 5},
                analysis(guardrails=[{"name": "e", "metric": "business", "max": 1}]),
            ),
            "steps[1].analysis.guardrails[0].metric.name: a business metric needs a name",
        ),
        (
            base({"set_weight": 5}, analysis(guardrails=[{"name": "e", "metric": "error_rate"}])),
            "steps[1].analysis.guardrails[0].max/min: give at least one bound",
        ),
        (
            base({"pause": {"duration_s": 5}}, analysis()),
            "steps[1].analysis: the canary gets no traffic here (weight 0)",
        ),
    ],
)
def test_bad_plans_name_the_path_and_reason(document: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_plan(document, source="plans/iris.yaml")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem), caught.value.problems
    assert str(caught.value).startswith("plans/iris.yaml: 1 problem(s):\n  ")


def test_every_problem_is_listed() -> None:
    document = base({"set_weight": -1}, {"pause": {"duration_s": -5}}) | {"model": "no spaces"}
    with pytest.raises(ConfigError) as caught:
        parse_plan(document)
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "model",
        "steps[0].set_weight",
        "steps[1].pause.duration_s",
    ]


def test_settings_are_frozen_and_documented() -> None:
    settings = RolloutPlanSettings.model_validate(base({"set_weight": 5}))
    with pytest.raises(ValueError, match="frozen"):
        settings.model = "other"  # type: ignore[misc]
    schema = RolloutPlanSettings.model_json_schema()
    assert schema["properties"]["approval_poll_s"]["description"].startswith("How often")
