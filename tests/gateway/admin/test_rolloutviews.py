"""The rollout views have exactly their records' fields; what no database could store is refused."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from seawall.gateway.admin.rolloutviews import (
    AnalysisRunView,
    DecisionView,
    GuardrailResultView,
    MetricPush,
    PlanDocument,
    RolloutCommand,
    RolloutStateView,
    RolloutView,
    rollout_view,
)
from seawall.release.analysis import AnalysisRun, GuardrailResult, Verdict
from seawall.release.records import DecisionRecord, RolloutRecord
from seawall.release.state import DecisionKind, RolloutState, Status

RESULT = GuardrailResult("latency", 0.11, 0.1, 0.12, Verdict.PASS, "within", None)
RUN = AnalysisRun(1, 1_700_000_030.0, Verdict.PASS, (RESULT,))
STATE = RolloutState("iris", "2", step_index=1, weight=10.0, analysis_runs=(RUN,))
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RECORD = RolloutRecord(
    id=7,
    model="iris",
    stable_version="1",
    canary_version="2",
    status=Status.RUNNING,
    step_index=1,
    weight=10.0,
    reason="analysis",
    plan={"model": "iris", "steps": [{"set_weight": 10.0}]},
    state=STATE.to_json(),
    created_at=AT,
    created_by="release",
    updated_at=AT,
    revision=3,
)


def fields(view: type[BaseModel]) -> set[str]:
    return set(view.model_fields)


def test_the_views_have_exactly_the_records_fields() -> None:
    assert fields(RolloutView) == {f.name for f in dataclasses.fields(RolloutRecord)}
    assert fields(DecisionView) == {f.name for f in dataclasses.fields(DecisionRecord)}
    assert fields(RolloutStateView) == set(STATE.to_json())
    assert fields(AnalysisRunView) == set(RUN.to_json())
    assert fields(GuardrailResultView) == set(RESULT.to_json())


def test_a_record_becomes_its_view_with_typed_analysis_runs() -> None:
    view = rollout_view(RECORD)

    assert (view.id, view.status, view.weight, view.revision) == (7, Status.RUNNING, 10.0, 3)
    assert view.created_at == AT
    [run] = view.state.analysis_runs
    assert (run.step_index, run.at, run.verdict) == (1, 1_700_000_030.0, Verdict.PASS)
    assert run.results[0].model_dump() == RESULT.to_json()
    assert view.model_dump(mode="json")["state"] == STATE.to_json()


def test_a_decision_record_becomes_its_view() -> None:
    record = DecisionRecord(
        id=1,
        rollout_id=7,
        model="iris",
        canary_version="2",
        kind=DecisionKind.ANALYSIS,
        step_index=1,
        status=Status.RUNNING,
        weight=10.0,
        reason="run 1: pass",
        results=(RESULT.to_json(),),
        at=AT,
        actor="system",
    )
    view = DecisionView.model_validate(record.to_json())
    assert (view.kind, view.actor, view.results[0].threshold) == (
        DecisionKind.ANALYSIS,
        "system",
        0.12,
    )


PLAN_DOCUMENT: TypeAdapter[dict[str, Any]] = TypeAdapter(PlanDocument)


def nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return {"steps": value}


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"model": "a\x00b"}, "text contains a NUL character"),
        ({"mo\x00del": "a"}, "text contains a NUL character"),
        ({"model": "\ud800"}, r"is not UTF-8 \(a lone surrogate\)"),
        ({"steps": [{"analysis": {"query": "\udfff"}}]}, "is not UTF-8"),
        (nested(20), "nested more than 20 levels deep"),
    ],
)
def test_a_plan_no_database_could_store_is_refused(document: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        PLAN_DOCUMENT.validate_python(document)


def test_a_storable_plan_passes_unchanged() -> None:
    document = {"model": "iris", **nested(19)}
    assert PLAN_DOCUMENT.validate_python(document) == document


@pytest.mark.parametrize("value", ["0.5", True, float("inf"), float("nan"), None])
def test_a_pushed_value_is_a_finite_json_number(value: Any) -> None:
    with pytest.raises(ValidationError, match="value"):
        MetricPush.model_validate({"name": "conversion", "version": "2", "value": value})
    assert MetricPush.model_validate({"name": "c", "version": "2", "value": 3}).value == 3.0


def test_a_command_reason_is_optional_bounded_and_storable() -> None:
    assert RolloutCommand().reason == ""
    assert RolloutCommand.model_validate({"reason": "dashboards"}).reason == "dashboards"
    for bad in ("x" * 10_001, "a\x00", "\ud800"):
        with pytest.raises(ValidationError, match="reason"):
            RolloutCommand.model_validate({"reason": bad})
