"""The admin API's registry views: the registry's records field for field, its bounds and
patterns; JSON objects that no database could store are refused naming the field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

from seawall.gateway.admin import records as views
from seawall.registry import (
    AliasRecord,
    ApprovalRecord,
    ApprovalStatus,
    ArtifactInfo,
    DeploymentRecord,
    EventRecord,
    LineageNode,
    ModelRecord,
    Stage,
    VersionRecord,
)
from seawall.registry import fields as registry_fields

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("view", "record", "extra"),
    [
        (views.ModelView, ModelRecord, set()),
        (views.VersionView, VersionRecord, {"uri"}),
        (views.VersionDetail, VersionRecord, {"uri", "approvals"}),
        (views.ArtifactView, ArtifactInfo, set()),
        (views.ApprovalView, ApprovalRecord, set()),
        (views.ApprovalStatusView, ApprovalStatus, {"satisfied"}),
        (views.AliasView, AliasRecord, set()),
        (views.EventView, EventRecord, set()),
        (views.LineageNodeView, LineageNode, set()),
        (views.DeploymentView, DeploymentRecord, set()),
    ],
)
def test_each_view_has_its_records_fields(
    view: type[BaseModel], record: type[Any], extra: set[str]
) -> None:
    fields = {f.name for f in dataclasses.fields(record)}
    assert set(view.model_fields) == fields | extra


def test_the_bounds_are_the_registrys() -> None:
    assert set(get_args(views.Stage)) == {s.value for s in Stage}
    assert views.MODEL_NAME_PATTERN == registry_fields.MODEL_NAME_PATTERN
    assert views.ALIAS_PATTERN == registry_fields.ALIAS_PATTERN
    assert views.MAX_TEXT == registry_fields.MAX_TEXT
    assert views.MAX_REQUIRED_APPROVALS == registry_fields.MAX_REQUIRED_APPROVALS


def test_a_version_shows_its_uri_and_approvals_whether_satisfied() -> None:
    artifact = ArtifactInfo("file", {"m.onnx": "a" * 64}, 10, "/store")
    record = VersionRecord(
        "iris", 3, Stage.STAGING, "onnx", artifact, None, {}, {"auc": 0.9}, {}, None, None,
        None, "", "lead", NOW, NOW, ("candidate",),
    )  # fmt: skip
    view = views.version_view(record)
    assert (view.uri, view.stage, view.aliases, view.artifact.total_bytes) == (
        "models:/iris/3",
        "staging",
        ["candidate"],
        10,
    )
    approval = ApprovalRecord(1, "iris", 3, "approve", "alice", "", NOW, NOW + timedelta(days=7))
    status = ApprovalStatus("iris", 3, 2, ("alice",), (), (), (approval,))
    shown = views.approval_status_view(status)
    assert (shown.satisfied, shown.decisions[0].approver) == (False, "alice")
    assert views.approval_status_view(dataclasses.replace(status, required=1)).satisfied


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    ("tags", "error"),
    [
        ({"a": "\ud800"}, "text '\\ud800' is not UTF-8 (a lone surrogate)"),
        ({"\udfff": 1}, "text '\\udfff' is not UTF-8 (a lone surrogate)"),
        ({"a": [{"b": ["\ud800"]}]}, "is not UTF-8"),
        (deep(22), "nested more than 20 levels deep"),
    ],
)
def test_json_objects_that_cannot_be_stored_are_refused(tags: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as refused:
        views.ModelCreate(name="iris", tags=tags)
    ((problem,),) = [refused.value.errors()]
    assert problem["loc"] == ("tags",)
    assert error in problem["msg"]


def test_json_objects_the_registry_takes_pass() -> None:
    tags = {"team": "ml", "n": [1, 2.5, None, True], "nested": deep(19), "ünï": "côdé"}
    assert views.ModelCreate(name="iris", tags=tags).tags == tags


def test_numbers_are_strict_and_bounded() -> None:
    with pytest.raises(ValidationError, match="valid integer"):
        views.AliasChange.model_validate({"version": True})
    with pytest.raises(ValidationError, match="less than or equal to 2147483647"):
        views.AliasChange.model_validate({"version": 2**31})
    with pytest.raises(ValidationError, match="finite number"):
        views.VersionCreate.model_validate(
            {
                "framework": "onnx",
                "artifact": {"kind": "file", "files": {"m": "a" * 64}},
                "metrics": {"auc": float("inf")},
            }
        )
