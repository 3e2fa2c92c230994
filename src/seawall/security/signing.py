"""Signed artifacts: `sign_artifact` writes `<artifact>.manifest.json`, `verify_artifact` checks it.

The manifest file is an envelope: `{"manifest": {...}, "signature": "<base64>", "key_id": ...}`.
The signature is ed25519 over `Manifest.signed_bytes()` (the manifest re-serialized
canonically), so what is checked is exactly what was parsed. Verification goes from the
cheapest and most telling check to the most expensive: the manifest is there and well formed,
its key is trusted, the signature holds, it is the model expected; then no file is missing or
extra, and each file has the signed size and sha256. The first failure raises an
`ArtifactVerificationError` naming the reason (and the file).

`ArtifactVerifier` is the gateway's side: trusted keys plus `require_signed`, called by an
in-process backend before it reads its model file.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from seawall.security.errors import ArtifactVerificationError, SecurityError
from seawall.security.errors import VerificationFailure as Why
from seawall.security.keys import TrustedKeys, key_id
from seawall.security.manifest import FileEntry, Manifest, hash_file, list_files

__all__ = [
    "MANIFEST_SUFFIX",
    "ArtifactVerifier",
    "manifest_path",
    "sign_artifact",
    "verify_artifact",
]

logger = logging.getLogger("seawall.security")

#: Appended to an artifact's name to name its manifest: `iris.joblib.manifest.json`.
MANIFEST_SUFFIX = ".manifest.json"
_ENVELOPE = {"manifest", "signature", "key_id"}


def manifest_path(artifact: str | Path) -> Path:
    """Where the manifest of `artifact` (a file or a directory) lives: beside it."""
    path = Path(os.path.abspath(artifact))  # normalized, but a link is not followed
    return path.with_name(path.name + MANIFEST_SUFFIX)


def sign_artifact(
    path: str | Path,
    private_key: Ed25519PrivateKey,
    *,
    name: str,
    version: str,
    manifest: str | Path | None = None,
    created_at: datetime | None = None,
) -> Manifest:
    """Hash every file of the artifact, sign the manifest, and write it (atomically)."""
    artifact = Path(path)
    if not name or not version:
        raise SecurityError("a signed artifact needs a model name and a version")
    if not artifact.exists():
        raise SecurityError(f"{artifact}: no such file or directory")
    files, others = list_files(artifact)
    if others:
        raise SecurityError(
            f"{artifact}: {others[0]} is a symbolic link or special file; sign regular files only"
        )
    if not files:
        raise SecurityError(f"{artifact}: the directory holds no files to sign")
    entries = tuple(FileEntry(rel, *hash_file(p)) for rel, p in sorted(files.items()))
    signed = Manifest(
        name=name,
        version=version,
        kind="directory" if artifact.is_dir() else "file",
        files=entries,
        created_at=(created_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        key_id=key_id(private_key.public_key()),
    )
    envelope = {
        "manifest": signed.to_json(),
        "signature": base64.b64encode(private_key.sign(signed.signed_bytes())).decode("ascii"),
        "key_id": signed.key_id,
    }
    _write_atomically(Path(manifest) if manifest else manifest_path(artifact), envelope)
    return signed


def verify_artifact(
    path: str | Path,
    trusted_keys: TrustedKeys | Iterable[Ed25519PublicKey],
    *,
    manifest: str | Path | None = None,
    name: str | None = None,
    version: str | None = None,
) -> Manifest:
    """The verified manifest; `ArtifactVerificationError` with the reason otherwise.

    `name` and `version`, when given, must be the signed ones (a validly signed artifact of
    another model, or an older version, is refused as the wrong model).
    """
    artifact = Path(path)
    trusted = trusted_keys if isinstance(trusted_keys, TrustedKeys) else TrustedKeys(trusted_keys)
    signed = _verified_manifest(artifact, Path(manifest or manifest_path(artifact)), trusted)
    for field, expected, actual in (
        ("name", name, signed.name),
        ("version", version, signed.version),
    ):
        if expected is not None and expected != actual:
            raise ArtifactVerificationError(
                str(artifact), Why.WRONG_MODEL, f"signed {field} is {actual!r}, not {expected!r}"
            )
    _check_files(artifact, signed)
    return signed


@dataclass(frozen=True, slots=True)
class ArtifactVerifier:
    """The gateway's rule: which artifacts must be verified, and against which keys."""

    trusted_keys: TrustedKeys
    #: Refuse artifacts without a manifest (else only those that have one are verified).
    require_signed: bool = False

    def verify(self, artifact: Path, manifest: Path | None = None) -> Manifest | None:
        """Verify `artifact` if required, or if it has a manifest; None if it was not checked.

        An explicitly given `manifest` is always checked: configuring one says it must exist.
        """
        where = manifest or manifest_path(artifact)
        if manifest is None and not self.require_signed and not where.exists():
            return None
        signed = verify_artifact(artifact, self.trusted_keys, manifest=where)
        logger.info(
            "artifact verified",
            extra={
                "artifact": str(artifact),
                "model": signed.name,
                "version": signed.version,
                "key_id": signed.key_id,
                "files": len(signed.files),
            },
        )
        return signed


def _verified_manifest(artifact: Path, where: Path, trusted: TrustedKeys) -> Manifest:
    label = str(artifact)
    envelope = _read_envelope(artifact, where)
    try:
        signed = Manifest.from_json(envelope["manifest"])
        signature = base64.b64decode(envelope["signature"], validate=True)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ArtifactVerificationError(label, Why.MALFORMED, f"{where}: {exc}") from None
    if envelope["key_id"] != signed.key_id:
        raise ArtifactVerificationError(
            label, Why.MALFORMED, f"{where}: key_id differs from the signed key_id"
        )
    public_key = trusted.get(signed.key_id)
    if public_key is None:
        known = f"{len(trusted)} trusted key(s)" if trusted else "no keys are trusted"
        raise ArtifactVerificationError(
            label, Why.UNTRUSTED_KEY, f"signed by key {signed.key_id}, not one of {known}"
        )
    try:
        public_key.verify(signature, signed.signed_bytes())
    except InvalidSignature:
        raise ArtifactVerificationError(
            label,
            Why.BAD_SIGNATURE,
            f"the manifest {where.name} is not as key {signed.key_id} signed it",
        ) from None
    return signed


def _read_envelope(artifact: Path, where: Path) -> dict[str, Any]:
    label = str(artifact)
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactVerificationError(label, Why.UNSIGNED, f"no manifest at {where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactVerificationError(label, Why.MALFORMED, f"{where}: {exc}") from None
    try:
        envelope = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactVerificationError(label, Why.MALFORMED, f"{where}: not JSON: {exc}") from None
    if not isinstance(envelope, dict) or envelope.keys() != _ENVELOPE:
        raise ArtifactVerificationError(
            label, Why.MALFORMED, f"{where}: expected exactly the fields {sorted(_ENVELOPE)}"
        )
    return envelope


def _check_files(artifact: Path, signed: Manifest) -> None:
    label = str(artifact)
    if not artifact.exists():
        raise ArtifactVerificationError(label, Why.FILE_MISSING, "the artifact does not exist")
    kind = "directory" if artifact.is_dir() else "file"
    if kind != signed.kind:
        raise ArtifactVerificationError(
            label, Why.FILE_MISSING, f"signed as a {signed.kind}, found a {kind}"
        )
    files, others = list_files(artifact)
    if others:
        rel = others[0]
        raise ArtifactVerificationError(
            label, Why.NOT_REGULAR, f"{rel} is a symbolic link or special file", path=rel
        )
    missing = [entry.path for entry in signed.files if entry.path not in files]
    if missing:
        raise ArtifactVerificationError(label, Why.FILE_MISSING, missing[0], path=missing[0])
    extra = sorted(files.keys() - {entry.path for entry in signed.files})
    if extra:
        raise ArtifactVerificationError(label, Why.EXTRA_FILE, extra[0], path=extra[0])
    for entry in signed.files:
        _check_file(label, entry, files[entry.path])


def _check_file(label: str, entry: FileEntry, path: Path) -> None:
    # Sizes first: a stat is enough to refuse a file of the wrong length without reading it.
    size = path.stat().st_size
    if size == entry.size:
        size, digest = hash_file(path)
        if size == entry.size:
            if hmac.compare_digest(digest, entry.sha256):
                return
            raise ArtifactVerificationError(
                label,
                Why.DIGEST_MISMATCH,
                f"{entry.path} has sha256 {digest[:16]}…; {entry.sha256[:16]}… was signed",
                path=entry.path,
            )
    raise ArtifactVerificationError(
        label,
        Why.SIZE_MISMATCH,
        f"{entry.path} has {size} bytes; {entry.size} were signed",
        path=entry.path,
    )


def _write_atomically(path: Path, envelope: dict[str, Any]) -> None:
    text = json.dumps(envelope, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
