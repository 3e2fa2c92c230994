"""`Manifest`: what a signature covers, i.e. every file of an artifact with its size and sha256.

An artifact is one file (its entry is the file's name) or a directory (one entry per file, by
POSIX path relative to it; symbolic links and special files inside it are refused, since what
they point at can change without the directory changing). The manifest also names the model
and version, when it was made, and the signer's key id. It is signed as canonical JSON (sorted
keys, no whitespace, UTF-8), after `SIGNING_CONTEXT`, so a signature over a manifest can never
pass for a signature over anything else the same key signs. Parsing is strict: an unknown field or
format is refused rather than ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

__all__ = [
    "FORMAT",
    "SIGNING_CONTEXT",
    "FileEntry",
    "Manifest",
    "canonical_json",
    "hash_file",
    "list_files",
]

#: The manifest format this seawall writes and reads.
FORMAT = "seawall.manifest/1"
#: Signed before the canonical manifest (domain separation).
SIGNING_CONTEXT = b"seawall artifact manifest v1\n"

ArtifactKind = Literal["file", "directory"]
_FIELDS = {"format", "kind", "name", "version", "created_at", "key_id", "files"}
_FILE_FIELDS = {"path", "size", "sha256"}


def canonical_json(value: Any) -> bytes:
    """`value` as canonical JSON: sorted keys, no whitespace, UTF-8, no NaN."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


@dataclass(frozen=True, slots=True, order=True)
class FileEntry:
    """One file of an artifact."""

    #: POSIX path relative to the artifact directory; the file's name for a one-file artifact.
    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class Manifest:
    """Every file of an artifact, the model it is, and who signed it (by key id)."""

    name: str
    version: str
    kind: ArtifactKind
    files: tuple[FileEntry, ...]
    #: ISO 8601 with a UTC offset.
    created_at: str
    key_id: str

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "key_id": self.key_id,
            "files": [f.to_json() for f in self.files],
        }

    def signed_bytes(self) -> bytes:
        """Exactly what the signature is over."""
        return SIGNING_CONTEXT + canonical_json(self.to_json())

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Parse a manifest object; `ValueError` saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("the manifest is not a JSON object")
        _exact_fields(data, _FIELDS, "manifest")
        if data["format"] != FORMAT:
            raise ValueError(f"format {data['format']!r} is not {FORMAT!r}")
        if data["kind"] not in ("file", "directory"):
            raise ValueError(f"kind {data['kind']!r} is not 'file' or 'directory'")
        for field in ("name", "version", "key_id", "created_at"):
            if not isinstance(data[field], str) or not data[field]:
                raise ValueError(f"{field} is not a non-empty string")
        try:
            datetime.fromisoformat(data["created_at"])
        except ValueError:
            raise ValueError(f"created_at {data['created_at']!r} is not ISO 8601") from None
        files = data["files"]
        if not isinstance(files, list) or not files:
            raise ValueError("files is not a non-empty list")
        entries = tuple(_entry(item, i) for i, item in enumerate(files))
        if len({e.path for e in entries}) != len(entries):
            raise ValueError("files lists a path twice")
        if data["kind"] == "file" and len(entries) != 1:
            raise ValueError("a one-file artifact lists more than one file")
        return cls(
            data["name"], data["version"], data["kind"], entries, data["created_at"], data["key_id"]
        )


def list_files(artifact: Path) -> tuple[dict[str, Path], list[str]]:
    """The artifact's regular files by relative POSIX path, and any other entries (links...).

    The artifact's own path may be a link (volume mounts are made of them): it is followed, as
    the loader follows it. Links inside a directory are not.
    """
    if not artifact.is_dir():
        mode = artifact.stat().st_mode
        return ({artifact.name: artifact}, []) if stat.S_ISREG(mode) else ({}, [artifact.name])
    files: dict[str, Path] = {}
    others: list[str] = []
    for top, dirs, names in os.walk(artifact, followlinks=False):
        here = Path(top)
        for name in [*dirs, *names]:
            path = here / name
            relative = path.relative_to(artifact).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                files[relative] = path
            elif not stat.S_ISDIR(mode):  # a link (to a file or a directory), a socket, a fifo
                others.append(relative)
    return files, sorted(others)


def hash_file(path: Path) -> tuple[int, str]:
    """The file's size and sha256, read in chunks."""
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return size, digest


def _exact_fields(data: dict[str, Any], fields: set[str], where: str) -> None:
    missing, unknown = fields - data.keys(), data.keys() - fields
    if missing:
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")


def _entry(item: Any, index: int) -> FileEntry:
    where = f"files[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} is not an object")
    _exact_fields(item, _FILE_FIELDS, where)
    path, size, digest = item["path"], item["size"], item["sha256"]
    if not isinstance(path, str) or not _safe_relative(path):
        raise ValueError(f"{where}.path {path!r} is not a relative path inside the artifact")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"{where}.size is not a whole number of bytes")
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ValueError(f"{where}.sha256 is not 64 lowercase hex digits")
    return FileEntry(path, size, digest)


def _safe_relative(path: str) -> bool:
    # Paths are joined to the artifact directory: none may lead out of it.
    if not path or "\\" in path or "\0" in path:
        return False
    pure = PurePosixPath(path)
    return (
        not pure.is_absolute()
        and bool(pure.parts)
        and pure.as_posix() == path
        and all(part not in ("", ".", "..") for part in pure.parts)
    )
