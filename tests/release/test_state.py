"""Rollout state: the exact JSON round trip, refusing documents that are not a state, decisions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.release.analysis import AnalysisRun, GuardrailResult, Verdict
from seawall.release.state import STATE_FORMAT, Decision, DecisionKind, RolloutState, Status

times = st.floats(0, 4e9, allow_nan=False)
maybe_numbers = st.none() | st.floats(allow_nan=False, allow_infinity=False)
results = st.builds(
    GuardrailResult,
    name=st.text(min_size=1, max_size=8),
    value=maybe_numbers,
    stable_value=maybe_numbers,
    threshold=maybe_numbers,
    verdict=st.sampled_from(list(Verdict)),
    reason=st.text(max_size=20),
    threshold_min=maybe_numbers,
)
runs = st.builds(
    AnalysisRun,
    step_index=st.integers(0, 20),
    at=times,
    verdict=st.sampled_from(list(Verdict)),
    results=st.lists(results, max_size=3).map(tuple),
)
states = st.builds(
    RolloutState,
    model=st.text(min_size=1, max_size=10),
    canary_version=st.text(min_size=1, max_size=5),
    step_index=st.integers(0, 20),
    status=st.sampled_from(list(Status)),
    weight=st.floats(0, 100),
    analysis_runs=st.lists(runs, max_size=4).map(tuple),
    failures=st.integers(0, 10),
    consecutive_errors=st.integers(0, 10),
    step_started_at=st.none() | times,
    next_analysis_at=st.none() | times,
    paused_at=st.none() | times,
    reason=st.text(max_size=30),
)


@given(states)
def test_any_state_survives_a_json_round_trip_exactly(state: RolloutState) -> None:
    text = json.dumps(state.to_json(), allow_nan=False)
    assert RolloutState.from_json(json.loads(text)) == state


def test_the_document_layout() -> None:
    state = RolloutState("iris", "2", step_index=3, weight=40.0, next_analysis_at=1.5)
    assert state.to_json() == {
        "format": STATE_FORMAT,
        "model": "iris",
        "canary_version": "2",
        "step_index": 3,
        "status": "running",
        "weight": 40.0,
        "analysis_runs": [],
        "failures": 0,
        "consecutive_errors": 0,
        "step_started_at": None,
        "next_analysis_at": 1.5,
        "paused_at": None,
        "reason": "",
    }


def document(**changes: Any) -> dict[str, Any]:
    return RolloutState("iris", "2").to_json() | changes


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "format: expected a rollout state of format 1, got 'list'"),
        (document(format=2), "format: expected a rollout state of format 1, got 2"),
        (
            {k: v for k, v in document().items() if k != "weight"},
            "weight: missing from the rollout state",
        ),
        (document(step_index=-1), r"step_index: expected a count \(an integer >= 0\), got -1"),
        (document(failures=True), "failures: expected a count"),
        (document(status="done"), "status: 'done' is not a valid Status"),
        (document(weight="10"), "weight: expected a number, got '10'"),
        (document(paused_at="noon"), "paused_at: expected a number, got 'noon'"),
        (document(model=7), "model: expected a string, got 7"),
        (document(analysis_runs={}), "analysis_runs: expected a list of analysis runs, got dict"),
        (document(analysis_runs=[{"step_index": 1}]), "analysis_runs: missing key 'at'"),
    ],
)
def test_documents_that_are_not_a_state_are_refused_naming_the_field(
    data: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RolloutState.from_json(data)  # type: ignore[arg-type]


def test_terminal_statuses() -> None:
    assert {s for s in Status if s.terminal} == {
        Status.PROMOTED,
        Status.ROLLED_BACK,
        Status.ABORTED,
    }


def test_runs_at_selects_one_steps_runs() -> None:
    a, b = AnalysisRun(1, 10.0, Verdict.PASS, ()), AnalysisRun(3, 20.0, Verdict.FAIL, ())
    state = RolloutState("iris", "2", analysis_runs=(a, b, a))
    assert state.runs_at(1) == (a, a)
    assert state.runs_at(2) == ()


def test_a_decision_in_json_carries_its_measurements() -> None:
    measured = GuardrailResult("errors", 0.2, None, 0.01, Verdict.FAIL, "error_rate 0.2 > 0.01")
    decision = Decision(
        DecisionKind.ROLLED_BACK, 3, Status.ROLLED_BACK, 0.0, "1 failed run", (measured,), 1.7e9
    )
    assert decision.to_json() == {
        "kind": "rolled_back",
        "step_index": 3,
        "status": "rolled_back",
        "weight": 0.0,
        "reason": "1 failed run",
        "results": [
            {
                "name": "errors",
                "value": 0.2,
                "stable_value": None,
                "threshold": 0.01,
                "threshold_min": None,
                "verdict": "fail",
                "reason": "error_rate 0.2 > 0.01",
            }
        ],
        "at": 1.7e9,
    }
