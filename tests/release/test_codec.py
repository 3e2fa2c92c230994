"""Plans as JSON documents: every step and source round-trips; bad documents name the path."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from seawall.config.release import parse_plan
from seawall.release.codec import plan_from_json, plan_to_json
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

GUARDRAILS = (
    Guardrail("errors", MetricRef(MetricKind.ERROR_RATE), max=0.01),
    Guardrail("latency", MetricRef(MetricKind.LATENCY_P95_S), max=1.2, relative_to_stable=True),
    Guardrail("drift", MetricRef(MetricKind.DRIFT_SCORE), max=0.99),
    Guardrail(
        "conversion",
        MetricRef(MetricKind.BUSINESS, "conversion", query='sum(rate(x{version="{version}"}[1m]))'),
        min=0.02,
        max=0.5,
    ),
    Guardrail("revenue", MetricRef(MetricKind.BUSINESS, "revenue", function="m.f:g"), min=1.0),
    Guardrail("clicks", MetricRef(MetricKind.BUSINESS, "clicks", pushed=True), min=0.1),
)
PLAN = RolloutPlan(
    "iris",
    "3",
    "4",
    (
        SetWeight(10),
        Pause(60.5),
        Analysis(
            interval_s=30,
            count=3,
            guardrails=GUARDRAILS,
            failure_limit=1,
            consecutive_error_limit=2,
            inconclusive=Inconclusive.FAIL,
            metric_timeout_s=2.5,
        ),
        Pause(until_approved=True),
        SetWeight(50),
    ),
    approval_poll_s=12.0,
)


def test_every_step_and_metric_source_round_trips_through_json_text() -> None:
    document = plan_to_json(PLAN)
    assert plan_from_json(json.loads(json.dumps(document))) == PLAN
    assert document["steps"][0] == {"set_weight": 10.0}
    assert document["steps"][1] == {"pause": {"duration_s": 60.5}}
    assert document["steps"][3] == {"pause": {"until_approved": True}}
    analysis = document["steps"][2]["analysis"]
    assert (analysis["inconclusive"], analysis["metric_timeout_s"]) == ("fail", 2.5)
    assert analysis["guardrails"][5]["metric"] == {
        "kind": "business",
        "name": "clicks",
        "pushed": True,
    }


def test_the_document_is_a_plan_file_the_config_reads() -> None:
    assert parse_plan(plan_to_json(PLAN)) == PLAN


def _broken(**changes: Any) -> dict[str, Any]:
    document = plan_to_json(PLAN)
    document.update(changes)
    return document


def _analysis(**changes: Any) -> dict[str, Any]:
    document = plan_to_json(PLAN)
    document["steps"][2]["analysis"].update(changes)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "plan: expected an object, got list"),
        (_broken(extra=1), "plan: unknown field(s) extra"),
        (_broken(steps={}), "plan.steps: expected a list, got dict"),
        (_broken(model=""), "plan.model: must not be empty"),
        (_broken(model=3), "plan.model: expected a string, got 3"),
        (_broken(steps=[{"jump": 1}]), "plan.steps[0]: expected one of set_weight, pause"),
        (_broken(steps=[{"set_weight": 120}]), "plan.steps[0].set_weight: must be within 0..100"),
        (_broken(steps=[{"set_weight": "x"}]), "plan.steps[0].set_weight: expected a number"),
        (
            _broken(steps=[{"pause": {"duration_s": 1, "until": 2}}]),
            "plan.steps[0].pause: unknown field(s) until",
        ),
        (
            _broken(steps=[{"pause": {"duration_s": -1}}]),
            "plan.steps[0].pause.duration_s: must be a positive number",
        ),
        (_analysis(count=0), "plan.steps[2].analysis.count: must be at least 1"),
        (_analysis(count=True), "plan.steps[2].analysis.count: expected a whole number"),
        (_analysis(inconclusive="maybe"), "plan.steps[2].analysis.inconclusive: expected pause"),
        (
            _analysis(guardrails=[{"name": "e", "metric": {"kind": "speed"}, "max": 1}]),
            "plan.steps[2].analysis.guardrails[0].metric.kind: expected one of error_rate",
        ),
        (
            _analysis(guardrails=[{"name": "e", "metric": {"kind": "error_rate"}, "mx": 1}]),
            "plan.steps[2].analysis.guardrails[0]: unknown field(s) mx",
        ),
        (
            _analysis(guardrails=[{"name": "e", "metric": "error_rate", "max": 1}]),
            "plan.steps[2].analysis.guardrails[0].metric: expected an object, got str",
        ),
        (
            _analysis(guardrails=[{"name": "e", "metric": {"kind": "error_rate"}}]),
            "plan.steps[2].analysis.guardrails[0].max/min: give at least one bound",
        ),
        (
            _broken(steps=[{"analysis": plan_to_json(PLAN)["steps"][2]["analysis"]}]),
            "plan.steps[0].analysis: the canary gets no traffic here",
        ),
    ],
)
def test_a_bad_document_is_refused_naming_the_path(document: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        plan_from_json(document)
