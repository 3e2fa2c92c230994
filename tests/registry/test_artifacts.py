"""Artifacts into the blob store (signed or not) and back out, checked against their digests."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from seawall.registry import ArtifactInfo, Stage, VersionRecord, materialize, store_artifact
from seawall.security import (
    SecurityError,
    generate_signing_key,
    load_private_key,
    sign_artifact,
    verify_artifact,
)
from seawall.store import BlobStore
from seawall.store.blobs import BlobCorruptError, BlobNotFoundError

AT = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store")


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_signing_key(private, public)
    return private, public


def _record(info: ArtifactInfo, version: int = 1) -> VersionRecord:
    return VersionRecord(
        "iris",
        version,
        Stage.NONE,
        "sklearn",
        info,
        None,
        {},
        {},
        {},
        None,
        None,
        None,
        "",
        "cli:alice",
        AT,
        AT,
    )


def _model(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "iris.joblib"
    path.parent.mkdir()
    path.write_bytes(b"model bytes" * 100)
    return path


def test_a_signed_file_goes_in_and_comes_back_verifiable(
    tmp_path: Path, blobs: BlobStore, key: tuple[Path, Path]
) -> None:
    model = _model(tmp_path)
    info = store_artifact(
        blobs, model, name="iris", version=1, signing_key=load_private_key(key[0])
    )
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert info.kind == "file"
    assert info.files == {"iris.joblib": digest}
    assert info.total_bytes == 1100
    assert info.manifest_digest is not None
    assert blobs.has(info.manifest_digest)
    assert info.signed_by is not None
    built = materialize(blobs, _record(info), tmp_path / "cache")
    assert built.path.name == "iris.joblib"
    assert built.path.read_bytes() == model.read_bytes()
    assert built.manifest is not None
    from seawall.security import TrustedKeys
    from seawall.security.keys import read_public_key

    signed = verify_artifact(
        built.path,
        TrustedKeys([read_public_key(key[1])]),
        manifest=built.manifest,
        name="iris",
        version="1",
    )
    assert signed.key_id == info.signed_by
    again = materialize(blobs, _record(info), tmp_path / "cache")  # built once, reused
    assert again == built


def test_a_directory_keeps_its_layout(tmp_path: Path, blobs: BlobStore) -> None:
    model = tmp_path / "onnx"
    (model / "weights").mkdir(parents=True)
    (model / "model.onnx").write_bytes(b"graph")
    (model / "weights" / "w.bin").write_bytes(b"weights")
    info = store_artifact(blobs, model, name="m", version=2)
    assert info.kind == "directory"
    assert set(info.files) == {"model.onnx", "weights/w.bin"}
    assert info.manifest_digest is None
    built = materialize(blobs, _record(info, 2), tmp_path / "cache")
    assert (built.path / "weights" / "w.bin").read_bytes() == b"weights"
    assert built.manifest is None


def test_a_manifest_beside_the_artifact_is_used_if_it_matches(
    tmp_path: Path, blobs: BlobStore, key: tuple[Path, Path]
) -> None:
    model = _model(tmp_path)
    sign_artifact(model, load_private_key(key[0]), name="iris", version="4")
    info = store_artifact(blobs, model, name="iris", version=4)
    assert info.signed_by is not None
    with pytest.raises(
        SecurityError, match="signed for 'iris' version '4', not 'iris' version '5'"
    ):
        store_artifact(blobs, model, name="iris", version=5)
    model.write_bytes(b"changed")
    with pytest.raises(SecurityError, match="does not list exactly the artifact's files"):
        store_artifact(blobs, model, name="iris", version=4)


def test_missing_empty_and_linked_artifacts_are_refused(tmp_path: Path, blobs: BlobStore) -> None:
    with pytest.raises(SecurityError, match="no such file"):
        store_artifact(blobs, tmp_path / "nope", name="m", version=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SecurityError, match="holds no files"):
        store_artifact(blobs, tmp_path / "empty", name="m", version=1)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "real").write_bytes(b"x")
    os.symlink(linked / "real", linked / "alias")
    with pytest.raises(SecurityError, match="symbolic link"):
        store_artifact(blobs, linked, name="m", version=1)


def test_a_changed_or_missing_blob_is_never_materialized(tmp_path: Path, blobs: BlobStore) -> None:
    info = store_artifact(blobs, _model(tmp_path), name="iris", version=1)
    blob = Path(blobs.uri(info.files["iris.joblib"]))
    blob.chmod(0o644)
    blob.write_bytes(b"evil")
    with pytest.raises(BlobCorruptError, match="no longer matches its digest"):
        materialize(blobs, _record(info), tmp_path / "cache")
    assert not any((tmp_path / "cache" / "iris").glob("1-*"))  # nothing half-built is left
    blob.unlink()
    with pytest.raises((BlobNotFoundError, FileNotFoundError)):
        materialize(blobs, _record(info), tmp_path / "cache")
