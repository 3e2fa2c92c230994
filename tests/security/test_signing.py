"""Signing and verifying artifacts: every refusal reason, and tampering found every time."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.security import (
    ArtifactVerificationError,
    ArtifactVerifier,
    Manifest,
    SecurityError,
    TrustedKeys,
    VerificationFailure,
    key_id,
    manifest_path,
    sign_artifact,
    verify_artifact,
)
from seawall.security.manifest import FORMAT, SIGNING_CONTEXT, canonical_json

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SIGNER = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
TRUSTED = TrustedKeys([SIGNER.public_key()])


def make_dir(root: Path, files: dict[str, bytes]) -> Path:
    artifact = root / "model"
    for rel, data in files.items():
        path = artifact / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return artifact


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A signed directory artifact of three files, one in a subdirectory."""
    path = make_dir(
        tmp_path,
        {"model.onnx": b"\x08\x07onnx" * 100, "vocab.txt": b"a\nb\nc\n", "cfg/params.json": b"{}"},
    )
    sign_artifact(path, SIGNER, name="iris", version="3")
    return path


@pytest.fixture
def single(tmp_path: Path) -> Path:
    """A signed one-file artifact."""
    path = tmp_path / "iris.joblib"
    path.write_bytes(os.urandom(4096))
    sign_artifact(path, SIGNER, name="iris", version="1")
    return path


def reason(call: Callable[[], object]) -> ArtifactVerificationError:
    with pytest.raises(ArtifactVerificationError) as caught:
        call()
    return caught.value


def envelope(artifact: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(manifest_path(artifact).read_text(encoding="utf-8"))
    return loaded


def write_envelope(artifact: Path, data: dict[str, Any]) -> None:
    manifest_path(artifact).write_text(json.dumps(data), encoding="utf-8")


def resign(data: dict[str, Any], key: Ed25519PrivateKey) -> None:
    """Replace the envelope's signature with `key`'s over its (modified) manifest."""
    signed = SIGNING_CONTEXT + canonical_json(data["manifest"])
    data["signature"] = base64.b64encode(key.sign(signed)).decode()


# --- what signing writes -------------------------------------------------------------------


def test_a_directory_manifest_lists_every_file_with_size_and_sha256(artifact: Path) -> None:
    signed = verify_artifact(artifact, TRUSTED)

    assert (signed.name, signed.version, signed.kind) == ("iris", "3", "directory")
    assert [f.path for f in signed.files] == ["cfg/params.json", "model.onnx", "vocab.txt"]
    assert [f.size for f in signed.files] == [2, 600, 6]
    assert signed.key_id == key_id(SIGNER.public_key())
    assert signed.total_bytes == 608


def test_the_manifest_file_is_an_envelope_beside_the_artifact(artifact: Path) -> None:
    assert manifest_path(artifact) == artifact.with_name("model.manifest.json")
    data = envelope(artifact)

    assert set(data) == {"manifest", "signature", "key_id"}
    assert data["key_id"] == data["manifest"]["key_id"] == key_id(SIGNER.public_key())
    assert data["manifest"]["format"] == FORMAT
    assert len(base64.b64decode(data["signature"])) == 64  # an ed25519 signature


def test_the_signature_is_over_the_canonical_manifest(artifact: Path) -> None:
    data = envelope(artifact)
    canonical = json.dumps(data["manifest"], sort_keys=True, separators=(",", ":")).encode()

    SIGNER.public_key().verify(base64.b64decode(data["signature"]), SIGNING_CONTEXT + canonical)


def test_a_one_file_artifact_lists_the_file_by_its_name(single: Path) -> None:
    signed = verify_artifact(single, [SIGNER.public_key()])

    assert signed.kind == "file"
    assert [(f.path, f.size) for f in signed.files] == [("iris.joblib", 4096)]
    assert manifest_path(single).name == "iris.joblib.manifest.json"


def test_created_at_is_recorded_and_signing_again_replaces_the_manifest(single: Path) -> None:
    when = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    sign_artifact(single, SIGNER, name="iris", version="2", created_at=when)

    signed = verify_artifact(single, TRUSTED)

    assert signed.created_at == "2026-11-26T09:30:00+00:00"
    assert signed.version == "2"
    assert [p.name for p in single.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_manifest_can_be_kept_elsewhere(single: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "signatures" / "iris.json"
    elsewhere.parent.mkdir()
    sign_artifact(single, SIGNER, name="iris", version="1", manifest=elsewhere)

    assert verify_artifact(single, TRUSTED, manifest=elsewhere).version == "1"


# --- what cannot be signed -----------------------------------------------------------------


def test_signing_refuses_what_is_missing_empty_or_linked(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="no such file"):
        sign_artifact(tmp_path / "nope", SIGNER, name="m", version="1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SecurityError, match="holds no files"):
        sign_artifact(tmp_path / "empty", SIGNER, name="m", version="1")
    linked = make_dir(tmp_path, {"a.bin": b"a"})
    (linked / "b.bin").symlink_to(tmp_path / "outside.bin")
    with pytest.raises(SecurityError, match=r"b\.bin is a symbolic link"):
        sign_artifact(linked, SIGNER, name="m", version="1")
    with pytest.raises(SecurityError, match="name and a version"):
        sign_artifact(linked / "a.bin", SIGNER, name="", version="1")


# --- every refusal reason ------------------------------------------------------------------


def test_an_artifact_without_a_manifest_is_unsigned(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"weights")

    error = reason(lambda: verify_artifact(path, TRUSTED))

    assert error.reason is VerificationFailure.UNSIGNED
    assert "unsigned: no manifest at" in str(error)


def test_a_manifest_from_an_untrusted_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"weights")
    sign_artifact(path, STRANGER, name="m", version="1")

    error = reason(lambda: verify_artifact(path, TRUSTED))
    assert error.reason is VerificationFailure.UNTRUSTED_KEY
    assert key_id(STRANGER.public_key()) in str(error)

    nobody = reason(lambda: verify_artifact(path, TrustedKeys()))
    assert nobody.reason is VerificationFailure.UNTRUSTED_KEY
    assert "no keys are trusted" in str(nobody)


def test_claiming_a_trusted_key_id_does_not_make_a_signature_trusted(single: Path) -> None:
    data = envelope(single)
    resign(data, STRANGER)  # the key id still names the trusted key; the signature is not its
    write_envelope(single, data)

    assert reason(lambda: verify_artifact(single, TRUSTED)).reason is (
        VerificationFailure.BAD_SIGNATURE
    )


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: m.update(name="other"), id="name"),
        pytest.param(lambda m: m.update(version="4"), id="version"),
        pytest.param(lambda m: m.update(created_at="2020-01-01T00:00:00+00:00"), id="created_at"),
        pytest.param(lambda m: m["files"][0].update(size=m["files"][0]["size"] + 1), id="size"),
        pytest.param(lambda m: m["files"][1].update(sha256="0" * 64), id="sha256"),
        pytest.param(lambda m: m["files"][2].update(path="vocab2.txt"), id="path"),
        pytest.param(lambda m: m["files"].pop(), id="file removed"),
        pytest.param(lambda m: m["files"].reverse(), id="files reordered"),
    ],
)
def test_a_modified_manifest_fails_its_signature(
    artifact: Path, edit: Callable[[dict[str, Any]], object]
) -> None:
    data = envelope(artifact)
    edit(data["manifest"])
    write_envelope(artifact, data)

    error = reason(lambda: verify_artifact(artifact, TRUSTED))

    assert error.reason is VerificationFailure.BAD_SIGNATURE
    assert "bad signature" in str(error)


def test_a_modified_signature_fails(single: Path) -> None:
    data = envelope(single)
    signature = bytearray(base64.b64decode(data["signature"]))
    signature[10] ^= 0x40
    data["signature"] = base64.b64encode(bytes(signature)).decode()
    write_envelope(single, data)

    assert reason(lambda: verify_artifact(single, TRUSTED)).reason is (
        VerificationFailure.BAD_SIGNATURE
    )


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("not json", "not JSON"),
        ("[]", "exactly the fields"),
        ('{"manifest": {}, "signature": ""}', "exactly the fields"),
        ('{"manifest": {}, "signature": "", "key_id": "", "x": 1}', "exactly the fields"),
        ('{"manifest": [], "signature": "", "key_id": ""}', "not a JSON object"),
    ],
)
def test_an_unreadable_manifest_is_malformed(single: Path, text: str, detail: str) -> None:
    manifest_path(single).write_text(text, encoding="utf-8")

    error = reason(lambda: verify_artifact(single, TRUSTED))

    assert error.reason is VerificationFailure.MALFORMED
    assert detail in str(error)


def test_a_signature_that_is_not_base64_is_malformed(single: Path) -> None:
    data = envelope(single)
    data["signature"] = "not base64!"
    write_envelope(single, data)

    assert reason(lambda: verify_artifact(single, TRUSTED)).reason is VerificationFailure.MALFORMED


def test_an_envelope_key_id_that_differs_from_the_signed_one_is_malformed(single: Path) -> None:
    data = envelope(single)
    data["key_id"] = key_id(STRANGER.public_key())
    write_envelope(single, data)

    error = reason(lambda: verify_artifact(single, TRUSTED))

    assert error.reason is VerificationFailure.MALFORMED
    assert "key_id differs" in str(error)


def test_a_removed_file_is_missing(artifact: Path) -> None:
    (artifact / "cfg" / "params.json").unlink()

    error = reason(lambda: verify_artifact(artifact, TRUSTED))

    assert (error.reason, error.path) == (VerificationFailure.FILE_MISSING, "cfg/params.json")
    assert "file missing: cfg/params.json" in str(error)


def test_a_removed_artifact_is_missing(single: Path) -> None:
    single.unlink()

    assert reason(lambda: verify_artifact(single, TRUSTED)).reason is (
        VerificationFailure.FILE_MISSING
    )


def test_a_file_swapped_for_a_directory_is_refused(single: Path) -> None:
    single.unlink()
    single.mkdir()
    (single / "iris.joblib").write_bytes(b"x")

    error = reason(lambda: verify_artifact(single, TRUSTED))

    assert error.reason is VerificationFailure.FILE_MISSING
    assert "signed as a file, found a directory" in str(error)


@pytest.mark.parametrize("where", ["extra.pkl", "cfg/extra.pkl", "new/deep/extra.pkl"])
def test_an_added_file_is_extra(artifact: Path, where: str) -> None:
    (artifact / where).parent.mkdir(parents=True, exist_ok=True)
    (artifact / where).write_bytes(b"import os; os.system('...')")

    error = reason(lambda: verify_artifact(artifact, TRUSTED))

    assert (error.reason, error.path) == (VerificationFailure.EXTRA_FILE, where)


def test_an_added_symbolic_link_is_refused(artifact: Path, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (artifact / "linked").symlink_to(tmp_path / "outside")

    error = reason(lambda: verify_artifact(artifact, TRUSTED))

    assert (error.reason, error.path) == (VerificationFailure.NOT_REGULAR, "linked")


def test_a_file_of_another_length_is_a_size_mismatch(artifact: Path) -> None:
    with (artifact / "vocab.txt").open("ab") as out:
        out.write(b"d\n")

    error = reason(lambda: verify_artifact(artifact, TRUSTED))

    assert (error.reason, error.path) == (VerificationFailure.SIZE_MISMATCH, "vocab.txt")
    assert "vocab.txt has 8 bytes; 6 were signed" in str(error)


def test_a_changed_byte_is_a_digest_mismatch_naming_the_file(artifact: Path) -> None:
    data = bytearray((artifact / "model.onnx").read_bytes())
    data[0] ^= 0xFF
    (artifact / "model.onnx").write_bytes(bytes(data))

    error = reason(lambda: verify_artifact(artifact, TRUSTED))

    assert (error.reason, error.path) == (VerificationFailure.DIGEST_MISMATCH, "model.onnx")
    assert "digest mismatch: model.onnx" in str(error)


def test_the_wrong_model_or_version_is_refused(single: Path) -> None:
    assert verify_artifact(single, TRUSTED, name="iris", version="1").name == "iris"

    other = reason(lambda: verify_artifact(single, TRUSTED, name="fraud"))
    older = reason(lambda: verify_artifact(single, TRUSTED, version="2"))

    assert other.reason is older.reason is VerificationFailure.WRONG_MODEL
    assert "signed version is '1', not '2'" in str(older)


# --- tampering, exhaustively ---------------------------------------------------------------

_FILES = st.dictionaries(
    st.sampled_from(["a.bin", "b.bin", "sub/c.bin", "sub/deep/d.bin", "e"]),
    st.binary(min_size=1, max_size=300),
    min_size=1,
)


@PROPERTY
@given(files=_FILES, data=st.data())
def test_any_single_changed_byte_of_any_file_is_detected(
    files: dict[str, bytes], data: st.DataObject
) -> None:
    victim = data.draw(st.sampled_from(sorted(files)), label="file")
    offset = data.draw(st.integers(0, len(files[victim]) - 1), label="offset")
    flip = data.draw(st.integers(1, 255), label="xor")
    with tempfile.TemporaryDirectory() as tmp:
        artifact = make_dir(Path(tmp), files)
        sign_artifact(artifact, SIGNER, name="m", version="1")
        assert verify_artifact(artifact, TRUSTED).name == "m"
        content = bytearray(files[victim])
        content[offset] ^= flip
        (artifact / victim).write_bytes(bytes(content))

        error = reason(lambda: verify_artifact(artifact, TRUSTED))

    assert (error.reason, error.path) == (VerificationFailure.DIGEST_MISMATCH, victim)


@PROPERTY
@given(files=_FILES, data=st.data())
def test_any_added_or_removed_file_is_detected(
    files: dict[str, bytes], data: st.DataObject
) -> None:
    remove = len(files) > 1 and data.draw(st.booleans(), label="remove")
    with tempfile.TemporaryDirectory() as tmp:
        artifact = make_dir(Path(tmp), files)
        sign_artifact(artifact, SIGNER, name="m", version="1")
        if remove:
            victim = data.draw(st.sampled_from(sorted(files)), label="removed")
            (artifact / victim).unlink()
            expected = (VerificationFailure.FILE_MISSING, victim)
        else:
            added = data.draw(
                st.sampled_from(["x.bin", "sub/x.bin", "new/x.bin", ".hidden"]), label="added"
            )
            (artifact / added).parent.mkdir(parents=True, exist_ok=True)
            (artifact / added).write_bytes(b"")
            expected = (VerificationFailure.EXTRA_FILE, added)

        error = reason(lambda: verify_artifact(artifact, TRUSTED))

    assert (error.reason, error.path) == expected


# --- the gateway's verifier ----------------------------------------------------------------


def test_the_verifier_skips_an_unsigned_artifact_unless_signing_is_required(
    tmp_path: Path,
) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"weights")

    assert ArtifactVerifier(TRUSTED, require_signed=False).verify(path) is None
    error = reason(lambda: ArtifactVerifier(TRUSTED, require_signed=True).verify(path))
    assert error.reason is VerificationFailure.UNSIGNED


def test_the_verifier_checks_any_artifact_that_has_a_manifest(single: Path) -> None:
    lenient = ArtifactVerifier(TRUSTED, require_signed=False)
    signed = lenient.verify(single)
    assert isinstance(signed, Manifest)
    assert signed.name == "iris"

    single.write_bytes(b"tampered")
    assert reason(lambda: lenient.verify(single)).reason is VerificationFailure.SIZE_MISMATCH


def test_the_verifier_always_checks_a_manifest_it_is_given(single: Path, tmp_path: Path) -> None:
    lenient = ArtifactVerifier(TRUSTED)

    error = reason(lambda: lenient.verify(single, tmp_path / "absent.json"))

    assert error.reason is VerificationFailure.UNSIGNED


def test_an_artifact_reached_through_a_link_verifies_beside_the_link(tmp_path: Path) -> None:
    # Kubernetes volume mounts: /models/iris.joblib -> ..data/iris.joblib, and so the manifest.
    (tmp_path / "..data").mkdir()
    (tmp_path / "..data" / "iris.joblib").write_bytes(b"weights")
    (tmp_path / "iris.joblib").symlink_to(tmp_path / "..data" / "iris.joblib")
    sign_artifact(tmp_path / "iris.joblib", SIGNER, name="iris", version="1")

    assert manifest_path(tmp_path / "iris.joblib") == tmp_path / "iris.joblib.manifest.json"
    assert verify_artifact(tmp_path / "iris.joblib", TRUSTED).files[0].path == "iris.joblib"
    (tmp_path / "..data" / "iris.joblib").write_bytes(b"weightz")
    assert reason(lambda: verify_artifact(tmp_path / "iris.joblib", TRUSTED)).reason is (
        VerificationFailure.DIGEST_MISMATCH
    )
