"""How `seawall rollout` prints the admin API's rollouts and decisions."""

from __future__ import annotations

from typing import Any

import pytest

from seawall.cli.rolloutview import (
    bounds,
    print_decisions,
    print_rollout,
    print_rollouts,
    summary,
)


def result(name: str, value: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "stable_value": None,
        "threshold": None,
        "threshold_min": None,
        "verdict": "pass",
        "reason": f"{name} fine",
        **extra,
    }


def rollout(**changes: Any) -> dict[str, Any]:
    runs = [
        {
            "step_index": 1,
            "at": 1_700_000_030.0,
            "verdict": "fail",
            "results": [
                result("errors", 0.05, threshold=0.01, verdict="fail", reason="0.05 > 0.01"),
                result("latency", 0.11, stable_value=0.1, threshold=0.12),
            ],
        },
        {
            "step_index": 3,
            "at": 1_700_000_090.0,
            "verdict": "error",
            "results": [result("conversion", None, threshold_min=0.02, verdict="error")],
        },
    ]
    return {
        "id": 4,
        "model": "iris",
        "stable_version": "1",
        "canary_version": "2",
        "status": "running",
        "step_index": 3,
        "weight": 12.5,
        "reason": "analysis",
        "plan": {"steps": [{}, {}, {}, {}, {}]},
        "state": {"analysis_runs": runs},
        "created_at": "2023-11-14T22:13:20+00:00",
        "created_by": "release",
        "updated_at": "2023-11-14T22:14:50.5+00:00",
        **changes,
    }


@pytest.mark.parametrize(
    ("low", "high", "text"),
    [
        (None, 0.01, "<= 0.01"),
        (0.02, None, ">= 0.02"),
        (0.5, 2.0, "0.5..2"),
        (None, None, "-"),
        (None, 1 / 3, "<= 0.333333"),
    ],
)
def test_bounds(low: float | None, high: float | None, text: str) -> None:
    assert bounds({"threshold_min": low, "threshold": high}) == text


def test_the_summary_counts_steps_from_one_and_stops_at_the_last() -> None:
    assert summary(rollout()) == "iris 1 -> 2: running, step 4/5, canary weight 12.5%"
    done = rollout(status="promoted", step_index=5, weight=100.0)
    assert summary(done) == "iris 1 -> 2: promoted, step 5/5, canary weight 100%"
    assert "step 4," in summary(rollout(plan={}))  # a plan of another shape: no total


def test_a_rollout_prints_its_runs_one_line_per_guardrail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_rollout(rollout())

    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "rollout 4: iris 1 -> 2: running, step 4/5, canary weight 12.5%",
        "  reason:  analysis",
        "  started: 2023-11-14T22:13:20+00:00 by release",
        "  updated: 2023-11-14T22:14:50+00:00",
    ]
    assert lines[4] == ""
    assert [line.split() for line in lines[6:]] == [
        [
            *("2", "1", "2023-11-14T22:13:50+00:00", "fail", "errors", "0.05", "-"),
            *("<=", "0.01", "fail", "0.05", ">", "0.01"),
        ],
        [
            *("2", "1", "2023-11-14T22:13:50+00:00", "fail", "latency", "0.11", "0.1"),
            *("<=", "0.12", "pass", "latency", "fine"),
        ],
        [
            *("4", "1", "2023-11-14T22:14:50+00:00", "error", "conversion", "-", "-"),
            *(">=", "0.02", "error", "conversion", "fine"),
        ],
    ]
    # Columns line up: every row's guardrail starts where the header's does.
    column = lines[5].index("guardrail")
    assert {line[column:].split()[0] for line in lines[6:]} == {"errors", "latency", "conversion"}


def test_a_rollout_without_runs_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    print_rollout(rollout(state={"analysis_runs": []}))
    assert capsys.readouterr().out.splitlines()[-1] == "no analysis runs yet"


def test_the_list_has_one_line_per_rollout(capsys: pytest.CaptureFixture[str]) -> None:
    print_rollouts([rollout(), rollout(model="wine", status="aborted", weight=0.0, reason="bad")])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        ["model", "stable", "canary", "status", "step", "weight", "updated", "reason"],
        ["iris", "1", "2", "running", "4/5", "12.5%", "2023-11-14T22:14:50+00:00", "analysis"],
        ["wine", "1", "2", "aborted", "4/5", "0%", "2023-11-14T22:14:50+00:00", "bad"],
    ]
    print_rollouts([])
    assert capsys.readouterr().out == "no rollouts\n"


def test_decisions_print_with_their_measurements_under_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    decision = {
        "at": "2023-11-14T22:13:50+00:00",
        "kind": "analysis",
        "step_index": 1,
        "status": "running",
        "weight": 10.0,
        "actor": "system",
        "reason": "run 1: pass",
        "results": [result("latency", 0.11, stable_value=0.1, threshold=0.12)],
    }
    paused = {**decision, "kind": "paused", "actor": "release", "reason": "why", "results": []}

    print_decisions([decision, paused])

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["at", "kind", "step", "status", "weight", "actor", "reason"]
    assert lines[1].split() == [
        *("2023-11-14T22:13:50+00:00", "analysis", "2", "running", "10%", "system"),
        *("run", "1:", "pass"),
    ]
    assert lines[2].strip() == "latency: 0.11 (stable 0.1), bounds <= 0.12: pass"
    assert lines[2].index("latency") == lines[0].index("reason") + 2
    assert lines[3].split()[1] == "paused"
    print_decisions([])
    assert capsys.readouterr().out == "no decisions\n"
