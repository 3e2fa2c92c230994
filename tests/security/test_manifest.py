"""`Manifest`: canonical bytes, strict parsing (no path leads out), and listing an artifact."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from seawall.security.manifest import (
    FORMAT,
    SIGNING_CONTEXT,
    FileEntry,
    Manifest,
    canonical_json,
    hash_file,
    list_files,
)

DIGEST = "ab" * 32


def manifest_json(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": FORMAT,
        "kind": "directory",
        "name": "iris",
        "version": "1",
        "created_at": "2026-11-26T09:30:00+00:00",
        "key_id": "0123456789abcdef",
        "files": [{"path": "model.onnx", "size": 10, "sha256": DIGEST}],
    }
    data.update(changes)
    return data


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == (
        '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()
    )
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_json({"x": float("nan")})


def test_a_manifest_round_trips_and_signs_its_canonical_form() -> None:
    manifest = Manifest.from_json(manifest_json())

    assert manifest.files == (FileEntry("model.onnx", 10, DIGEST),)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.signed_bytes() == SIGNING_CONTEXT + canonical_json(manifest_json())


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "not a JSON object"),
        (manifest_json(extra=1), r"unknown field\(s\) extra"),
        ({k: v for k, v in manifest_json().items() if k != "files"}, "lacks files"),
        (manifest_json(format="seawall.manifest/2"), "is not 'seawall.manifest/1'"),
        (manifest_json(kind="tarball"), "kind 'tarball'"),
        (manifest_json(name=""), "name is not a non-empty string"),
        (manifest_json(version=3), "version is not a non-empty string"),
        (manifest_json(created_at="yesterday"), "not ISO 8601"),
        (manifest_json(files=[]), "files is not a non-empty list"),
        (manifest_json(files=["model.onnx"]), r"files\[0\] is not an object"),
        (
            manifest_json(files=[{"path": "a", "size": 1, "sha256": DIGEST, "mode": 1}]),
            r"files\[0\] has unknown field\(s\) mode",
        ),
        (manifest_json(files=[{"path": "a", "size": True, "sha256": DIGEST}]), "size"),
        (manifest_json(files=[{"path": "a", "size": -1, "sha256": DIGEST}]), "size"),
        (manifest_json(files=[{"path": "a", "size": 1, "sha256": DIGEST.upper()}]), "sha256"),
        (manifest_json(files=[{"path": "a", "size": 1, "sha256": DIGEST[:-1]}]), "sha256"),
        (
            manifest_json(files=[{"path": "a", "size": 1, "sha256": DIGEST}] * 2),
            "lists a path twice",
        ),
        (
            manifest_json(
                kind="file",
                files=[
                    {"path": "a", "size": 1, "sha256": DIGEST},
                    {"path": "b", "size": 1, "sha256": DIGEST},
                ],
            ),
            "more than one file",
        ),
    ],
)
def test_parsing_is_strict(data: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Manifest.from_json(data)


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "../outside", "a/../../b", "a/./b", "a//b", "a/", ".", "a\\b", "a\0b"],
)
def test_no_listed_path_may_lead_out_of_the_artifact(path: str) -> None:
    data = manifest_json(files=[{"path": path, "size": 1, "sha256": DIGEST}])

    with pytest.raises(ValueError, match="is not a relative path inside the artifact"):
        Manifest.from_json(data)


def test_listing_a_directory_gives_posix_paths_and_sets_links_apart(tmp_path: Path) -> None:
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "a.bin").write_bytes(b"a")
    (tmp_path / "m" / "sub" / "b.bin").write_bytes(b"b")
    (tmp_path / "m" / "empty").mkdir()
    (tmp_path / "m" / "link").symlink_to(tmp_path / "m" / "a.bin")
    (tmp_path / "m" / "dirlink").symlink_to(tmp_path / "m" / "sub")
    os.mkfifo(tmp_path / "m" / "fifo")

    files, others = list_files(tmp_path / "m")

    assert files == {
        "a.bin": tmp_path / "m" / "a.bin",
        "sub/b.bin": tmp_path / "m" / "sub" / "b.bin",
    }
    assert others == ["dirlink", "fifo", "link"]


def test_listing_a_file_gives_the_file_by_its_name(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"x")
    (tmp_path / "alias.joblib").symlink_to(tmp_path / "model.joblib")

    assert list_files(tmp_path / "model.joblib") == (
        {"model.joblib": tmp_path / "model.joblib"},
        [],
    )
    # The artifact's own path may be a link (a volume mount): it is followed, as a loader does.
    assert list_files(tmp_path / "alias.joblib") == (
        {"alias.joblib": tmp_path / "alias.joblib"},
        [],
    )


def test_hash_file_gives_size_and_sha256(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "blob").write_bytes(data)

    assert hash_file(tmp_path / "blob") == (len(data), hashlib.sha256(data).hexdigest())
