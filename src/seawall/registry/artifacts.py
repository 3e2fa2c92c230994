"""Artifacts in and out of the content-addressed artifact store.

`store_artifact` puts every file of a model (one file or a directory) into the `BlobStore` by
its sha256, signs a manifest of them with the registrant's key when one is given (or takes the
manifest already beside the artifact), stores that manifest's envelope as a blob too, and
returns the `ArtifactInfo` a version is registered with.

`materialize` does the reverse for a gateway: it rebuilds the artifact's files under a cache
directory, named by the version and its digests, from blobs whose content is checked against
the digests registered (a blob that changed in the store is refused, not loaded), and writes
the manifest beside it, so the same `verify_artifact` that guards file-based models then checks
the signature against the trusted keys. Both block: call them off the event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from seawall.registry.records import ArtifactInfo, VersionRecord
from seawall.security import MANIFEST_SUFFIX, SecurityError, manifest_path, sign_artifact
from seawall.security.manifest import Manifest, hash_file, list_files
from seawall.store.blobs import BlobCorruptError, BlobStore

__all__ = ["Materialized", "materialize", "store_artifact"]


@dataclass(frozen=True, slots=True)
class Materialized:
    """A version's artifact rebuilt on local disk."""

    #: The model file (one-file artifact) or directory to load.
    path: Path
    #: Its manifest beside it (None: the version is unsigned).
    manifest: Path | None


def store_artifact(
    blobs: BlobStore,
    path: str | os.PathLike[str],
    *,
    name: str,
    version: int,
    signing_key: Ed25519PrivateKey | None = None,
    manifest: str | os.PathLike[str] | None = None,
) -> ArtifactInfo:
    """Put the artifact at `path` into `blobs`; sign it as `name` `version` if a key is given.

    Without a key, a manifest at `manifest` (default: beside the artifact) is used if present:
    it must list exactly these files with these digests, for this name and version
    (`SecurityError` otherwise). Without either, the version is registered unsigned.
    """
    artifact = Path(path)
    if not artifact.exists():
        raise SecurityError(f"{artifact}: no such file or directory")
    files, others = list_files(artifact)
    if others:
        raise SecurityError(f"{artifact}: {others[0]} is a symbolic link or special file")
    if not files:
        raise SecurityError(f"{artifact}: the directory holds no files")
    entries = {rel: hash_file(p) for rel, p in sorted(files.items())}
    envelope: bytes | None = None
    with tempfile.TemporaryDirectory(prefix="seawall-sign-") as scratch:
        if signing_key is not None:
            where = Path(scratch) / (artifact.name + MANIFEST_SUFFIX)
            sign_artifact(artifact, signing_key, name=name, version=str(version), manifest=where)
            envelope = where.read_bytes()
        else:
            where = Path(manifest) if manifest is not None else manifest_path(artifact)
            if where.exists():
                envelope = where.read_bytes()
    signed_by = None
    if envelope is not None:
        signed = _parse(envelope, where)
        _check_matches(signed, entries, name=name, version=str(version), where=where)
        signed_by = signed.key_id
    digests = {rel: blobs.put(p) for rel, p in sorted(files.items())}
    for rel, (_, expected) in entries.items():
        if digests[rel] != expected:  # the file changed while it was being stored
            raise SecurityError(f"{artifact}: {rel} changed while it was being stored; retry")
    return ArtifactInfo(
        kind="directory" if artifact.is_dir() else "file",
        files=digests,
        total_bytes=sum(size for size, _ in entries.values()),
        uri=blobs.root,
        manifest_digest=None if envelope is None else blobs.put(envelope),
        signed_by=signed_by,
    )


def materialize(
    blobs: BlobStore, record: VersionRecord, cache_dir: str | os.PathLike[str]
) -> Materialized:
    """Rebuild `record`'s artifact under `cache_dir` (once per content), checking every digest.

    Raises `BlobCorruptError` if a blob's content no longer matches its registered digest, and
    `BlobNotFoundError` if one is missing.
    """
    artifact = record.artifact
    identity = hashlib.sha256(
        json.dumps(
            [record.name, record.version, artifact.files, artifact.manifest_digest],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    root = Path(cache_dir) / record.name / f"{record.version}-{identity}"
    leaf = artifact.entry if artifact.kind == "file" else "artifact"
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
        try:
            _build(blobs, artifact, scratch, leaf)
            try:
                os.rename(scratch, root)
            except OSError:  # another process built it first: theirs is as good
                if not root.exists():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    path = root / leaf
    manifest = path.with_name(path.name + MANIFEST_SUFFIX)
    return Materialized(path, manifest if artifact.manifest_digest is not None else None)


def _build(blobs: BlobStore, artifact: ArtifactInfo, into: Path, leaf: str) -> None:
    base = into / leaf if artifact.kind == "directory" else into
    for rel, digest in artifact.files.items():
        target = base / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_checked(blobs, digest, target)
    if artifact.manifest_digest is not None:
        _copy_checked(blobs, artifact.manifest_digest, into / (leaf + MANIFEST_SUFFIX))


def _copy_checked(blobs: BlobStore, digest: str, target: Path) -> None:
    sha = hashlib.sha256()
    with blobs.open(digest) as source, target.open("wb") as out:
        while chunk := source.read(1 << 20):
            sha.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if sha.hexdigest() != digest:
        raise BlobCorruptError(f"blob {digest} in {blobs.root} no longer matches its digest")


def _parse(envelope: bytes, where: Path) -> Manifest:
    try:
        data = json.loads(envelope)
        return Manifest.from_json(data["manifest"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SecurityError(f"{where}: not a seawall manifest: {exc}") from None


def _check_matches(
    signed: Manifest,
    entries: dict[str, tuple[int, str]],
    *,
    name: str,
    version: str,
    where: Path,
) -> None:
    if (signed.name, signed.version) != (name, version):
        raise SecurityError(
            f"{where}: signed for {signed.name!r} version {signed.version!r}, "
            f"not {name!r} version {version!r} (sign again, or register with that version)"
        )
    listed = {f.path: (f.size, f.sha256) for f in signed.files}
    if listed != entries:
        raise SecurityError(f"{where}: does not list exactly the artifact's files and digests")
