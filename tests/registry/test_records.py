"""Registry records: JSON views and the small properties callers rely on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from seawall.registry import ApprovalRecord, ApprovalStatus, ArtifactInfo, Stage, VersionRecord

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _version() -> VersionRecord:
    return VersionRecord(
        name="iris",
        version=3,
        stage=Stage.STAGING,
        framework="sklearn",
        artifact=ArtifactInfo("file", {"iris.joblib": "a" * 64}, 10, "/store"),
        signature=None,
        parameters={"c": 1.0},
        metrics={"accuracy": 0.97},
        tags={},
        dataset_snapshot="snap",
        code_version=None,
        parent_version=2,
        description="",
        author="cli:alice",
        created_at=AT,
        stage_changed_at=AT,
        aliases=("challenger",),
    )


def test_a_version_is_plain_json_with_iso_times() -> None:
    data = _version().to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["created_at"] == "2026-11-26T12:00:00+00:00"
    assert data["stage"] == "staging"
    assert data["artifact"]["files"] == {"iris.joblib": "a" * 64}
    assert data["aliases"] == ["challenger"]


def test_a_version_names_its_uri_and_a_file_artifact_its_entry() -> None:
    version = _version()
    assert version.uri == "models:/iris/3"
    assert version.artifact.entry == "iris.joblib"
    assert ArtifactInfo("directory", {"a/b": "b" * 64}, 1, "/s").entry == ""


def test_approval_status_is_satisfied_by_enough_approvals_and_no_rejection() -> None:
    decision = ApprovalRecord(1, "iris", 3, "approve", "bob", "", AT, None)
    status = ApprovalStatus("iris", 3, 1, ("bob",), (), (), (decision,))
    assert status.satisfied
    assert not ApprovalStatus("iris", 3, 2, ("bob",), (), (), (decision,)).satisfied
    assert not ApprovalStatus("iris", 3, 1, ("bob",), (), ("carol",), (decision,)).satisfied
    assert ApprovalStatus("iris", 3, 0, (), (), (), ()).satisfied
