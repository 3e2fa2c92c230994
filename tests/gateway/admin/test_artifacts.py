"""Blobs uploaded over HTTP: stored only if they hash to the path's digest and fit the cap,
audited once; and a version's artifact computed from the store (sizes, root, the signer of its
manifest), not taken from the client."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from seawall.errors import InvalidInputError, PayloadTooLargeError
from seawall.gateway import Gateway
from seawall.gateway.admin import artifacts
from seawall.gateway.admin.artifacts import ArtifactSpec, _BodyReader, artifact_info
from seawall.security import sign_artifact
from seawall.security.keys import key_id
from seawall.store import BlobStore

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.gateway.admin.conftest import Serve

DEPLOYER = {"x-api-key": "dep-secret-0123456789"}
CONFIG = """
database_url: "{url}"
auth:
  keys:
    - {{name: dep, key: dep-secret-0123456789, roles: [deployer]}}
    - {{name: view, key: view-secret-0123456789, roles: [viewer]}}
models: []
"""
DATA = bytes(range(256)) * 4099  # ~1 MiB, not a multiple of any chunk size
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
async def started(serve: Serve, database_url: str) -> tuple[Gateway, httpx.AsyncClient]:
    return await serve(CONFIG.format(url=database_url))


@pytest.fixture
def http(started: tuple[Gateway, httpx.AsyncClient]) -> httpx.AsyncClient:
    return started[1]


def store_of(tmp_path: Path) -> Path:
    """The gateway's artifact store (`registry.artifact_store`, relative to the config)."""
    return tmp_path / "seawall-artifacts"


def stored(tmp_path: Path) -> list[str]:
    """Every file in the store, blobs and temporary ones."""
    root = store_of(tmp_path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    """`data` as a chunked body (no content-length)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_blob_is_created_once_then_found_and_its_upload_audited(
    started: tuple[Gateway, httpx.AsyncClient], tmp_path: Path
) -> None:
    gateway, http = started
    first = await http.put(f"/admin/artifacts/{DIGEST}", content=DATA, headers=DEPLOYER)
    assert (first.status_code, first.json()) == (201, {"sha256": DIGEST, "bytes": len(DATA)})
    # Streamed in odd-sized chunks: the same bytes, found in the store already.
    again = await http.put(
        f"/admin/artifacts/{DIGEST}", content=chunks(DATA, 7_777), headers=DEPLOYER
    )
    assert (again.status_code, again.json()) == (200, {"sha256": DIGEST, "bytes": len(DATA)})
    assert stored(tmp_path) == [f"sha256/{DIGEST[:2]}/{DIGEST}"]
    blob = store_of(tmp_path) / "sha256" / DIGEST[:2] / DIGEST
    assert blob.read_bytes() == DATA

    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    audit = await gateway.assembly.shared.control.audit()
    records = await audit.records(after_seq=0, limit=10)
    assert [(r.actor, r.action, r.target, r.details) for r in records] == [
        ("dep", "artifact.put", f"blob:{DIGEST}", {"bytes": len(DATA)})
    ]
    viewer = await http.put(
        f"/admin/artifacts/{DIGEST}", content=DATA, headers={"x-api-key": "view-secret-0123456789"}
    )
    assert viewer.status_code == 403


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_body_that_is_not_the_digest_is_422_and_nothing_is_kept(
    http: httpx.AsyncClient, tmp_path: Path, streamed: bool
) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    body = chunks(DATA, 65_536) if streamed else DATA
    response = await http.put(f"/admin/artifacts/{wrong}", content=body, headers=DEPLOYER)
    assert response.status_code == 422
    assert response.json() == {
        "error": f"sha256: the body ({len(DATA)} bytes) hashes to {DIGEST}, not {wrong}"
    }
    assert stored(tmp_path) == []


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_body_over_the_cap_is_413_and_nothing_is_kept(
    http: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    monkeypatch.setattr(artifacts, "MAX_BLOB_BYTES", len(DATA) - 1)

    # With a content-length it is refused before a byte is read; without, once past the cap.
    def body() -> bytes | AsyncIterator[bytes]:
        return chunks(DATA, 100_000) if streamed else DATA

    response = await http.put(f"/admin/artifacts/{DIGEST}", content=body(), headers=DEPLOYER)
    assert response.status_code == 413
    assert response.json() == {"error": f"body: larger than the limit of {len(DATA) - 1} bytes"}
    assert stored(tmp_path) == []
    claims = {**DEPLOYER, "content-length": "9" * 5000}  # more digits than int() reads
    huge = await http.put(f"/admin/artifacts/{DIGEST}", content=b"x", headers=claims)
    assert huge.status_code == 413
    monkeypatch.setattr(artifacts, "MAX_BLOB_BYTES", len(DATA))  # exactly the cap: taken
    taken = await http.put(f"/admin/artifacts/{DIGEST}", content=body(), headers=DEPLOYER)
    assert taken.status_code == 201


async def test_the_body_reader_hands_out_at_most_what_is_asked() -> None:
    reader = _BodyReader(chunks(b"abcdefgh", 5), asyncio.get_running_loop(), "0" * 64, 100)

    def read_all() -> list[bytes]:
        got = []
        while part := reader.read(3):
            got.append(part)
        return got

    with pytest.raises(artifacts._DigestMismatchError):
        await asyncio.to_thread(read_all)
    exact = hashlib.sha256(b"abcdefgh").hexdigest()
    reader = _BodyReader(chunks(b"abcdefgh", 5), asyncio.get_running_loop(), exact, 100)
    assert await asyncio.to_thread(read_all) == [b"abc", b"de", b"fgh"]
    assert reader.size == 8
    small = _BodyReader(chunks(b"abcdefgh", 5), asyncio.get_running_loop(), exact, 7)
    assert await asyncio.to_thread(small.read, 100) == b"abcde"
    with pytest.raises(PayloadTooLargeError):
        await asyncio.to_thread(small.read, 100)


# --- artifact_info: what is computed from the store ------------------------------------------


@pytest.fixture
def signed(tmp_path: Path) -> tuple[BlobStore, ArtifactSpec, str]:
    """A one-file model signed as iris version 4, in a store with its manifest."""
    model = tmp_path / "model.joblib"
    model.write_bytes(DATA)
    key = Ed25519PrivateKey.generate()
    manifest = tmp_path / "model.joblib.manifest.json"
    sign_artifact(model, key, name="iris", version="4", manifest=manifest)
    blobs = BlobStore(tmp_path / "store")
    spec = ArtifactSpec(
        kind="file",
        files={"model.joblib": blobs.put(model)},
        manifest_digest=blobs.put(manifest),
    )
    return blobs, spec, key_id(key.public_key())


def test_sizes_and_the_store_come_from_the_store(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "store")
    files = {"a.bin": blobs.put(b"12345"), "dir/b.bin": blobs.put(DATA)}
    spec = ArtifactSpec(kind="directory", files=files)
    info, version = artifact_info(blobs, "iris", None, spec)
    assert (info.total_bytes, info.uri, info.files, version) == (
        5 + len(DATA),
        blobs.root,
        files,
        None,
    )
    assert (info.kind, info.manifest_digest, info.signed_by) == ("directory", None, None)
    missing = ArtifactSpec(kind="file", files={"m": "b" * 64})
    with pytest.raises(InvalidInputError) as refused:
        artifact_info(blobs, "iris", None, missing)
    assert str(refused.value) == (
        f"artifact.files: m: blob {'b' * 64} is not in the artifact store "
        f"(PUT /admin/artifacts/{'b' * 64})"
    )


def test_a_manifest_names_the_signer_and_the_version(
    signed: tuple[BlobStore, ArtifactSpec, str],
) -> None:
    blobs, spec, signer = signed
    info, version = artifact_info(blobs, "iris", None, spec)
    assert (info.signed_by, info.manifest_digest, version) == (signer, spec.manifest_digest, 4)
    assert artifact_info(blobs, "iris", 4, spec)[1] == 4


@pytest.mark.parametrize(
    ("name", "version", "error"),
    [
        ("iris", 5, "signed for 'iris' version '4', not 'iris' version 5"),
        ("wine", None, "signed for 'iris' version '4', not 'wine' version 4"),
    ],
)
def test_a_manifest_for_another_model_or_version_is_refused(
    signed: tuple[BlobStore, ArtifactSpec, str], name: str, version: int | None, error: str
) -> None:
    blobs, spec, _ = signed
    with pytest.raises(InvalidInputError) as refused:
        artifact_info(blobs, name, version, spec)
    assert str(refused.value).startswith(f"artifact.manifest_digest: {error}")


def test_a_manifest_must_list_exactly_the_files(
    signed: tuple[BlobStore, ArtifactSpec, str],
) -> None:
    blobs, spec, _ = signed
    renamed = spec.model_copy(update={"files": {"other.joblib": spec.files["model.joblib"]}})
    other = spec.model_copy(update={"files": {"model.joblib": blobs.put(b"not the model")}})
    for wrong in (renamed, other, spec.model_copy(update={"kind": "directory"})):
        with pytest.raises(InvalidInputError) as refused:
            artifact_info(blobs, "iris", 4, wrong)
        assert str(refused.value) == (
            "artifact.manifest_digest: does not list exactly the artifact's files and digests"
        )


@pytest.mark.parametrize(
    ("envelope", "error"),
    [
        (b"not json", "artifact.manifest_digest: not a seawall manifest envelope"),
        (b'{"manifest": {"format": "x"}}', "artifact.manifest_digest: not a seawall manifest"),
        (b"x" * 2000, "artifact.manifest_digest: 2000 bytes; a manifest is at most 1000"),
    ],
)
def test_a_manifest_that_is_none_is_refused(
    signed: tuple[BlobStore, ArtifactSpec, str],
    monkeypatch: pytest.MonkeyPatch,
    envelope: bytes,
    error: str,
) -> None:
    blobs, spec, _ = signed
    monkeypatch.setattr(artifacts, "MAX_MANIFEST_BYTES", 1000)
    bad = spec.model_copy(update={"manifest_digest": blobs.put(envelope)})
    with pytest.raises(InvalidInputError) as refused:
        artifact_info(blobs, "iris", 4, bad)
    assert str(refused.value).startswith(error)


@pytest.mark.parametrize("signed_version", ["0", "v4", "99999999999", "2147483648"])
def test_a_manifest_version_that_is_no_version_number_needs_one_given(
    signed: tuple[BlobStore, ArtifactSpec, str], signed_version: str
) -> None:
    blobs, spec, _ = signed
    assert spec.manifest_digest is not None
    with blobs.open(spec.manifest_digest) as stream:
        envelope = json.load(stream)
    envelope["manifest"]["version"] = signed_version
    odd = spec.model_copy(update={"manifest_digest": blobs.put(json.dumps(envelope).encode())})
    with pytest.raises(InvalidInputError) as refused:
        artifact_info(blobs, "iris", None, odd)
    assert str(refused.value) == (
        f"version: the manifest's version {signed_version!r} is not a version number"
    )


async def test_a_signed_version_registers_under_the_number_it_was_signed_for(
    http: httpx.AsyncClient, signed: tuple[BlobStore, ArtifactSpec, str]
) -> None:
    blobs, spec, signer = signed
    uploads = [*spec.files.values(), spec.manifest_digest]
    for digest in uploads:
        assert digest is not None
        with blobs.open(digest) as stream:
            data = stream.read()
        response = await http.put(f"/admin/artifacts/{digest}", content=data, headers=DEPLOYER)
        assert response.status_code == 201
    assert (await http.post("/admin/models", json={"name": "iris"}, headers=DEPLOYER)).is_success
    body = {"framework": "sklearn", "artifact": spec.model_dump()}
    registered = await http.post("/admin/models/iris/versions", json=body, headers=DEPLOYER)
    assert registered.status_code == 201, registered.text
    version = registered.json()
    assert (version["version"], version["artifact"]["signed_by"]) == (4, signer)
    assert version["artifact"]["total_bytes"] == len(DATA)
