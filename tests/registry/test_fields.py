"""Field checks: each refusal is an InvalidInputError that names its field and the reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from seawall.errors import InvalidInputError
from seawall.registry import ArtifactInfo, parse_model_uri
from seawall.registry.fields import (
    MAX_JSON_DEPTH,
    MAX_REQUIRED_APPROVALS,
    MAX_TEXT,
    MAX_VERSION,
    MODEL_NAME_PATTERN,
    check_alias,
    check_artifact,
    check_framework,
    check_metrics,
    check_name,
    check_object,
    check_optional_text,
    check_required,
    check_text,
    new_version_columns,
)
from seawall.store import BlobStore

from .conftest import ARTIFACT

#: new_version_columns' keywords when every field is good.
GOOD: dict[str, Any] = {
    "framework": "sklearn",
    "signature": None,
    "parameters": None,
    "metrics": None,
    "tags": None,
    "dataset_snapshot": None,
    "code_version": None,
    "parent_version": None,
    "description": "",
    "author": "alice",
}


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


def test_the_model_name_pattern_is_the_configs() -> None:
    from seawall.config.base import NAME_PATTERN

    assert MODEL_NAME_PATTERN == NAME_PATTERN


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/iris/3", ("iris", 3, None)),
        ("models:/iris@champion", ("iris", None, "champion")),
        ("models:/fraud.v2@challenger-1", ("fraud.v2", None, "challenger-1")),
    ],
)
def test_model_uris_parse(uri: str, expected: tuple[str, int | None, str | None]) -> None:
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    "uri", ["iris@champion", "models:/iris", "models:/iris@3", "models:/iris/x", "models:/@a"]
)
def test_bad_model_uris_are_refused_with_the_reason(uri: str) -> None:
    with pytest.raises(InvalidInputError, match=r"^(uri|alias|name):"):
        parse_model_uri(uri)


@pytest.mark.parametrize("name", ["iris", "fraud.v2", "A-1_b", "x" * 128])
def test_model_names_that_match_pass(name: str) -> None:
    check_name(name)


@pytest.mark.parametrize("name", ["", "bad name", "-iris", ".iris", "x" * 129, "a/b", 7])
def test_other_model_names_are_refused_naming_name(name: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^name: must match") as caught:
        check_name(name)  # type: ignore[arg-type]
    assert caught.value.field == "name"


@pytest.mark.parametrize("alias", ["champion", "challenger-1", "b_2", "a" * 64])
def test_aliases_that_match_pass(alias: str) -> None:
    check_alias(alias)


@pytest.mark.parametrize("alias", ["42", "Champion", "1st", "a" * 65, "", "a b", None])
def test_other_aliases_are_refused_naming_alias(alias: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^alias: a lower-case word .* not a number"):
        check_alias(alias)  # type: ignore[arg-type]


@pytest.mark.parametrize("framework", ["Sk Learn", "", "ONNX", "9lives", "x" * 33, None])
def test_bad_frameworks_are_refused_naming_framework(framework: object) -> None:
    with pytest.raises(InvalidInputError, match=r"^framework: a lower-case name"):
        check_framework(framework)  # type: ignore[arg-type]
    check_framework("sklearn")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, f"0 to {MAX_REQUIRED_APPROVALS}, got -1"),
        (MAX_REQUIRED_APPROVALS + 1, f"got {MAX_REQUIRED_APPROVALS + 1}"),
        (True, "a whole number, got True"),
        (1.0, "a whole number, got 1.0"),
    ],
)
def test_required_approvals_are_bounded(value: object, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=rf"^required_approvals: .*{reason}"):
        check_required(value)  # type: ignore[arg-type]


def test_required_approvals_in_bounds_are_returned() -> None:
    assert [check_required(n) for n in (0, 1, MAX_REQUIRED_APPROVALS)] == [0, 1, 10]


def test_text_is_bounded_and_names_its_field() -> None:
    assert check_text("comment", "x" * MAX_TEXT) == "x" * MAX_TEXT
    with pytest.raises(InvalidInputError, match=rf"^comment: at most {MAX_TEXT} characters, got"):
        check_text("comment", "x" * (MAX_TEXT + 1))
    with pytest.raises(InvalidInputError, match=r"^description: contains a NUL character"):
        check_text("description", "a\x00b")
    with pytest.raises(InvalidInputError, match=r"^code_version: text, got int"):
        check_text("code_version", 3)  # type: ignore[arg-type]
    assert check_optional_text("code_version", None) is None
    with pytest.raises(InvalidInputError, match=r"^target: contains a NUL"):
        check_optional_text("target", "\x00")


def test_json_objects_are_copied() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": (1, 2)}}
    checked = check_object("tags", value)
    assert checked == value
    assert checked is not value
    assert check_object("tags", None) == {}
    check_object("tags", _nested(MAX_JSON_DEPTH))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([1, 2], "a JSON object with text keys"),
        ({1: "x"}, "a JSON object with text keys"),
        ({"x": float("nan")}, "nan is not a JSON number"),
        ({"x": [float("inf")]}, "inf is not a JSON number"),
        ({"x": "a\x00"}, "contains a NUL character"),
        ({"x": {"k\x00": 1}}, "is not text"),
        ({"x": {2: 1}}, "key 2 is not text"),
        ({"x": {1, 2}}, "set is not JSON"),
        ({"x": object()}, "object is not JSON"),
        (_nested(MAX_JSON_DEPTH + 1), f"nested more than {MAX_JSON_DEPTH} levels deep"),
    ],
)
def test_what_json_cannot_hold_is_refused_naming_the_field(value: Any, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=f"^parameters: .*{reason}"):
        check_object("parameters", value)


def test_metrics_are_numbers_named_by_their_key() -> None:
    assert check_metrics({"auc": 1, "loss": 0.25}) == {"auc": 1.0, "loss": 0.25}
    assert isinstance(check_metrics({"auc": 1})["auc"], float)
    assert check_metrics(None) == {}
    with pytest.raises(InvalidInputError, match=r"^metrics.accuracy: a number, got 'high'"):
        check_metrics({"accuracy": "high"})
    with pytest.raises(InvalidInputError, match=r"^metrics.ok: a number, got True"):
        check_metrics({"ok": True})
    with pytest.raises(InvalidInputError, match=r"^metrics: .*nan is not a JSON number"):
        check_metrics({"x": float("nan")})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "zip"}, "artifact.kind: 'file' or 'directory', got 'zip'"),
        ({"files": {}}, "artifact.files: at least one file"),
        ({"files": {"a": "a" * 64, "b": "b" * 64}}, "artifact.files: a one-file artifact"),
        ({"files": {"/etc/passwd": "a" * 64}}, "artifact.files: '/etc/passwd' is not a relative"),
        ({"files": {"a/../b": "a" * 64}}, "artifact.files: 'a/../b' is not a relative"),
        ({"files": {"a\\b": "a" * 64}}, "artifact.files: .* is not a relative"),
        ({"files": {"": "a" * 64}}, "artifact.files: '' is not a relative"),
        ({"files": {"m": "A" * 64}}, "artifact.files: m: 'A+' is not a sha256"),
        ({"manifest_digest": "xyz"}, "artifact.manifest_digest: not a sha256"),
        ({"total_bytes": -1}, "artifact.total_bytes: must be >= 0"),
    ],
)
def test_bad_artifacts_are_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=f"^{message}"):
        check_artifact(dataclasses.replace(ARTIFACT, **changes))


def test_a_directory_artifact_may_hold_many_files() -> None:
    check_artifact(
        ArtifactInfo("directory", {"a/model.onnx": "a" * 64, "b.json": "b" * 64}, 3, "mem")
    )


def test_with_a_blob_store_every_blob_and_the_manifest_must_be_in_it(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    digest = blobs.put(b"model bytes")
    stored = ArtifactInfo("file", {"m.joblib": digest}, 11, blobs.root)
    check_artifact(stored, blobs)
    with pytest.raises(InvalidInputError, match=r"^artifact.files: m.joblib: blob a{64} is not in"):
        check_artifact(dataclasses.replace(stored, files={"m.joblib": "a" * 64}), blobs)
    unsigned_manifest = dataclasses.replace(stored, manifest_digest="b" * 64)
    with pytest.raises(InvalidInputError, match=r"^artifact.files: manifest: blob b{64} is not"):
        check_artifact(unsigned_manifest, blobs)
    check_artifact(unsigned_manifest)  # without a store, only the digests' form is checked


def test_a_new_versions_columns() -> None:
    columns = new_version_columns(
        "iris",
        None,
        dataclasses.replace(ARTIFACT, manifest_digest="b" * 64, signed_by="key"),
        None,
        **{**GOOD, "metrics": {"auc": 1}, "parent_version": 2, "description": "d"},
    )
    assert columns == {
        "framework": "sklearn",
        "artifact_kind": "file",
        "artifact_files": {"model.joblib": "a" * 64},
        "artifact_bytes": 10,
        "artifact_uri": "mem",
        "manifest_digest": "b" * 64,
        "signed_by": "key",
        "signature": None,
        "parameters": {},
        "metrics": {"auc": 1.0},
        "tags": {},
        "dataset_snapshot": None,
        "code_version": None,
        "parent_version": 2,
        "description": "d",
        "author": "alice",
    }


@pytest.mark.parametrize(
    ("name", "version", "changes", "message"),
    [
        ("bad name", 0, {"framework": "X"}, "name: must match"),
        ("iris", 0, {"framework": "X"}, f"version: a whole number, 1 to {MAX_VERSION}, got 0"),
        ("iris", MAX_VERSION + 1, {}, "version: a whole number"),
        ("iris", None, {"parent_version": 0, "framework": "X"}, "parent_version: a version"),
        ("iris", None, {"parent_version": "1"}, "parent_version: a version number, got '1'"),
        ("iris", None, {"framework": "X", "tags": []}, "framework: a lower-case name"),
        ("iris", None, {"signature": {"x": object()}}, "signature: object is not JSON"),
        ("iris", None, {"dataset_snapshot": 1}, "dataset_snapshot: text, got int"),
        ("iris", None, {"code_version": "\x00"}, "code_version: contains a NUL"),
        ("iris", None, {"description": None}, "description: text, got NoneType"),
    ],
)
def test_a_new_versions_first_bad_field_is_named(
    name: str, version: Any, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"^{message}"):
        new_version_columns(name, version, ARTIFACT, None, **{**GOOD, **changes})


def test_the_artifact_is_checked_before_the_other_fields() -> None:
    bad = dataclasses.replace(ARTIFACT, kind="zip")
    with pytest.raises(InvalidInputError, match=r"^artifact.kind"):
        new_version_columns("iris", None, bad, None, **{**GOOD, "tags": {"x": float("nan")}})
