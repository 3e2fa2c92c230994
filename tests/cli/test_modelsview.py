"""How registry records read in a terminal: approvals, history lines, a version in full."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from seawall.cli.modelsview import (
    approval_line,
    event_summary,
    print_model,
    print_models,
    print_version,
)
from seawall.registry import (
    ApprovalRecord,
    ApprovalStatus,
    ArtifactInfo,
    EventRecord,
    ModelRecord,
    Stage,
    VersionRecord,
)

AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _status(**kwargs: Any) -> ApprovalStatus:
    values: dict[str, Any] = {
        "name": "iris",
        "version": 1,
        "required": 2,
        "approved_by": (),
        "expired": (),
        "rejected_by": (),
        "decisions": (),
    }
    return ApprovalStatus(**{**values, **kwargs})


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (_status(), "0 of 2: needs 2 more"),
        (_status(approved_by=("cli:bob",)), "1 of 2 (cli:bob): needs 1 more"),
        (
            _status(approved_by=("cli:bob",), expired=("cli:dan",)),
            "1 of 2 (cli:bob); expired: cli:dan: needs 1 more",
        ),
        (_status(approved_by=("a", "b")), "2 of 2 (a, b): may enter production"),
        (_status(required=0), "0 of 0: may enter production"),
        (
            _status(approved_by=("a", "b"), rejected_by=("c",)),
            "2 of 2 (a, b): rejected by c",
        ),
    ],
)
def test_the_approval_line_says_what_is_missing(status: ApprovalStatus, line: str) -> None:
    assert approval_line(status) == line


def _event(action: str, details: dict[str, Any], version: int | None = 1) -> EventRecord:
    return EventRecord(1, "iris", version, action, details, "cli:alice", AT)


@pytest.mark.parametrize(
    ("action", "details", "summary"),
    [
        (
            "model.create",
            {"description": "Iris", "required_approvals": 2, "tags": {}},
            "needs 2 approval(s): Iris",
        ),
        ("model.update", {"required_approvals": 3}, "required_approvals=3"),
        (
            "model.register",
            {"framework": "onnx", "artifact_files": {"a": "0", "b": "1"}, "signed_by": None},
            "onnx, 2 file(s), unsigned",
        ),
        (
            "model.stage",
            {"from": "staging", "to": "production", "comment": "", "approved_by": ["b"]},
            "staging → production (approved by b)",
        ),
        (
            "model.stage",
            {"from": "production", "to": "archived", "comment": "replaced by version 2"},
            "production → archived: replaced by version 2",
        ),
        ("model.alias", {"alias": "champion", "from": 1, "to": 2}, "@champion: 1 → 2"),
        ("model.alias", {"alias": "x", "from": 2, "to": None}, "@x: 2 → deleted"),
        ("model.approve", {"comment": "", "expires_at": "2026-12-03"}, ""),
        ("model.reject", {"comment": "drift", "expires_at": None}, "drift"),
        ("model.deploy", {"target": "gw-1", "traffic_share": 0.1}, "gw-1: 0.1 of traffic"),
        ("model.other", {"a": [1, 2], "b": "x"}, "a=[1,2], b=x"),
    ],
)
def test_history_details_read_as_words(action: str, details: dict[str, Any], summary: str) -> None:
    assert event_summary(_event(action, details)) == summary


def _version(**kwargs: Any) -> VersionRecord:
    values: dict[str, Any] = {
        "name": "iris",
        "version": 1,
        "stage": Stage.NONE,
        "framework": "sklearn",
        "artifact": ArtifactInfo("file", {"iris.joblib": "a" * 64}, 10, "/store"),
        "signature": None,
        "parameters": {},
        "metrics": {},
        "tags": {},
        "dataset_snapshot": None,
        "code_version": None,
        "parent_version": None,
        "description": "",
        "author": "cli:alice",
        "created_at": AT,
        "stage_changed_at": AT,
    }
    return VersionRecord(**{**values, **kwargs})


def test_an_unsigned_version_without_provenance_shows_dashes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_version(_version(), _status(required=1))

    assert capsys.readouterr().out == (
        "iris version 1 (models:/iris/1)\n"
        "  stage:         none since 2026-11-26T10:00:00+00:00\n"
        "  aliases:       none\n"
        "  framework:     sklearn\n"
        "  author:        cli:alice, 2026-11-26T10:00:00+00:00\n"
        "  dataset:       -\n"
        "  code version:  -\n"
        "  parent:        -\n"
        "  parameters:    -\n"
        "  metrics:       -\n"
        "  tags:          -\n"
        "  signature:     -\n"
        "  artifact:      file, 1 file(s), 10 bytes\n"
        "  store:         /store\n"
        f"  - iris.joblib  sha256:{'a' * 64}\n"
        "  signed by:     unsigned\n"
        "  approvals:     0 of 1: needs 1 more\n"
    )


def test_decisions_are_listed_under_the_approvals(capsys: pytest.CaptureFixture[str]) -> None:
    decisions = (
        ApprovalRecord(1, "iris", 1, "approve", "cli:bob", "ok", AT, AT),
        ApprovalRecord(2, "iris", 1, "reject", "cli:carol", "", AT, None),
    )

    print_version(_version(), _status(decisions=decisions, rejected_by=("cli:carol",)))

    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        "  - 2026-11-26T10:00:00+00:00 approve by cli:bob, expires 2026-11-26T10:00:00+00:00: ok",
        "  - 2026-11-26T10:00:00+00:00 reject by cli:carol",
    ]


def test_a_model_without_versions_and_an_empty_list(capsys: pytest.CaptureFixture[str]) -> None:
    model = ModelRecord("iris", "", 1, {"team": "ml"}, AT, "cli:alice")

    print_model(model, [])
    print_models([])

    assert capsys.readouterr().out == (
        "iris\n"
        "  approvals:     1 needed for production\n"
        "  aliases:       -\n"
        "  tags:          team=ml\n"
        "  created:       2026-11-26T10:00:00+00:00 by cli:alice\n"
        "no versions\n"
        "no registered models\n"
    )
