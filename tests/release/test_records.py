"""Rollout and decision records: plain JSON out, the plan and state rebuilt from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from seawall.release.codec import plan_to_json
from seawall.release.plan import RolloutPlan, SetWeight
from seawall.release.records import DecisionRecord, RolloutRecord
from seawall.release.state import DecisionKind, RolloutState, Status

AT = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
PLAN = RolloutPlan("iris", "1", "2", (SetWeight(10),))
STATE = RolloutState("iris", "2", step_index=1, status=Status.PAUSED, weight=10.0, paused_at=5.0)


def rollout(status: Status) -> RolloutRecord:
    return RolloutRecord(
        7, "iris", "1", "2", status, 1, 10.0, "held", plan_to_json(PLAN), STATE.to_json(),
        AT, "alice", AT, 3,
    )  # fmt: skip


def test_a_rollout_record_is_plain_json_and_rebuilds_its_plan_and_state() -> None:
    record = rollout(Status.PAUSED)
    out = json.loads(json.dumps(record.to_json()))
    assert out["status"] == "paused"
    assert out["created_at"] == "2027-01-02T03:04:05+00:00"
    assert out["plan"]["steps"] == [{"set_weight": 10.0}]
    assert out["state"]["paused_at"] == 5.0
    assert (out["id"], out["revision"], out["reason"]) == (7, 3, "held")
    assert record.rollout_plan() == PLAN
    assert record.rollout_state() == STATE


def test_live_means_not_promoted_rolled_back_or_aborted() -> None:
    assert {s for s in Status if rollout(s).live} == {
        Status.RUNNING,
        Status.WAITING_APPROVAL,
        Status.PAUSED,
    }


def test_a_decision_record_is_plain_json() -> None:
    result = {"name": "errors", "value": 0.2, "threshold": 0.01, "verdict": "fail"}
    record = DecisionRecord(
        1, 7, "iris", "2", DecisionKind.ROLLED_BACK, 3, Status.ROLLED_BACK, 0.0, "bad",
        (result,), AT, "system",
    )  # fmt: skip
    out = json.loads(json.dumps(record.to_json()))
    assert (out["kind"], out["status"], out["at"]) == (
        "rolled_back",
        "rolled_back",
        "2027-01-02T03:04:05+00:00",
    )
    assert out["results"] == [result]
