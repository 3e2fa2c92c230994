"""A backup's `manifest.json`: what the backup holds, each file's size and sha256, its own checksum.

```json
{"format": "seawall-backup", "format_version": 1, "created_at": "2026-11-26T10:00:00+00:00",
 "seawall_version": "0.1.0",
 "database": {"dialect": "sqlite", "file": "database.sqlite3", "revision": "0005",
              "schema": null, "server_version": "3.40.1", "tables": {"audit_log": 12, ...}},
 "store": {"blobs": 2, "bytes": 5120, "left_out": {"<digest>": "<what it hashed to>"}},
 "files": {"database.sqlite3": {"size": 98304, "sha256": "..."}, "blobs/<digest>": {...}},
 "checksum": "<sha256 of the canonical JSON of everything above>"}
```

`files` lists every file of the backup but the manifest itself. `tables` counts each table's rows
in the snapshot the dump was taken from. `left_out` names blobs of the store that no longer
matched their digest when the backup was made (corrupt at the source, so not copied). The
checksum (over `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` of the
other fields) detects an edited or damaged manifest; it is not a signature.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from seawall.data.errors import BackupCorruptError
from seawall.store.blobs import is_digest

__all__ = [
    "BLOBS_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BackupManifest",
    "DatabaseInfo",
    "FileEntry",
    "database_file",
    "read_manifest",
    "write_manifest",
]

FORMAT = "seawall-backup"
#: Bumped when a reader of the old format could not restore the new one.
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
#: The directory of the store's blobs inside a backup, each file named by its sha256.
BLOBS_DIR = "blobs"
_DATABASE_FILES = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}


def database_file(dialect: str) -> str:
    """The name of the database dump in a backup of a `dialect` database."""
    return _DATABASE_FILES[dialect]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a backup: its size in bytes and its sha256."""

    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """The database a backup was taken from, as of its snapshot."""

    dialect: str
    #: The alembic revision the database was at (None: never migrated).
    revision: str | None
    #: Rows per table, counted in the dump's snapshot.
    tables: Mapping[str, int]
    #: The PostgreSQL schema dumped (None for SQLite).
    schema: str | None
    server_version: str

    @property
    def file(self) -> str:
        return database_file(self.dialect)


@dataclass(frozen=True, slots=True)
class BackupManifest:
    """What a backup holds; `files` maps each path, relative to the backup, to its entry."""

    created_at: datetime
    seawall_version: str
    database: DatabaseInfo
    files: Mapping[str, FileEntry]
    #: Blobs of the store left out because they no longer hashed to their name: digest → hash.
    left_out: Mapping[str, str]

    @property
    def blobs(self) -> list[str]:
        """The digests of the blobs in the backup, sorted."""
        prefix = f"{BLOBS_DIR}/"
        return sorted(p.removeprefix(prefix) for p in self.files if p.startswith(prefix))

    @property
    def blob_bytes(self) -> int:
        return sum(e.size for p, e in self.files.items() if p.startswith(f"{BLOBS_DIR}/"))

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON, with its checksum."""
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": self.created_at.isoformat(),
            "seawall_version": self.seawall_version,
            "database": {
                "dialect": self.database.dialect,
                "file": self.database.file,
                "revision": self.database.revision,
                "schema": self.database.schema,
                "server_version": self.database.server_version,
                "tables": dict(sorted(self.database.tables.items())),
            },
            "store": {
                "blobs": len(self.blobs),
                "bytes": self.blob_bytes,
                "left_out": dict(sorted(self.left_out.items())),
            },
            "files": {
                p: {"size": e.size, "sha256": e.sha256} for p, e in sorted(self.files.items())
            },
        }
        return {**body, "checksum": _checksum(body)}


def write_manifest(manifest: BackupManifest, directory: Path) -> Path:
    """Write `manifest.json` into `directory`, fsync'd; its path."""
    path = directory / MANIFEST_NAME
    with path.open("w", encoding="utf-8") as file:
        json.dump(manifest.to_json(), file, indent=2, ensure_ascii=False)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    return path


def read_manifest(path: Path) -> tuple[BackupManifest, bool]:
    """The manifest at `path`, and whether its checksum matches; `BackupCorruptError` if bad."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise _bad("missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise _bad(f"a JSON object expected, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise _bad(f"format: {FORMAT!r} expected, got {data.get('format')!r}: not a seawall backup")
    if data.get("format_version") != FORMAT_VERSION:
        raise _bad(
            f"format_version: this seawall reads version {FORMAT_VERSION}, "
            f"got {data.get('format_version')!r}"
        )
    body = {k: v for k, v in data.items() if k != "checksum"}
    intact = data.get("checksum") == _checksum(body)
    try:
        return _parse(data), intact
    except (TypeError, ValueError) as exc:
        raise _bad(str(exc)) from None


def _parse(data: Mapping[str, Any]) -> BackupManifest:
    db = _get(data, "database", dict)
    dialect = _get(db, "dialect", str, "database.")
    if dialect not in _DATABASE_FILES:
        raise ValueError(f"database.dialect: sqlite or postgresql, got {dialect!r}")
    if _get(db, "file", str, "database.") != database_file(dialect):
        raise ValueError(f"database.file: {database_file(dialect)!r} for {dialect}")
    tables = _get(db, "tables", dict, "database.")
    manifest = BackupManifest(
        created_at=_moment(_get(data, "created_at", str)),
        seawall_version=_get(data, "seawall_version", str),
        database=DatabaseInfo(
            dialect=dialect,
            revision=_get(db, "revision", (str, type(None)), "database."),
            tables={str(t): _count(f"database.tables.{t}", n) for t, n in tables.items()},
            schema=_get(db, "schema", (str, type(None)), "database."),
            server_version=_get(db, "server_version", str, "database."),
        ),
        files=_files(_get(data, "files", dict)),
        left_out={
            str(k): str(v) for k, v in _get(_get(data, "store", dict), "left_out", dict).items()
        },
    )
    _check_consistent(manifest, _get(data, "store", dict))
    return manifest


def _check_consistent(manifest: BackupManifest, store: Mapping[str, Any]) -> None:
    for path, entry in manifest.files.items():
        if entry.size < 0 or not is_digest(entry.sha256):
            raise ValueError(f"files.{path}: a size >= 0 and a sha256 of 64 hex digits")
        if path.startswith(f"{BLOBS_DIR}/") and path.removeprefix(f"{BLOBS_DIR}/") != entry.sha256:
            raise ValueError(f"files.{path}: a blob is named by its sha256, got {entry.sha256}")
        if path != manifest.database.file and not path.startswith(f"{BLOBS_DIR}/"):
            raise ValueError(f"files.{path}: not a file a backup holds")
    if manifest.database.file not in manifest.files:
        raise ValueError(f"files: no entry for the database dump {manifest.database.file}")
    if store.get("blobs") != len(manifest.blobs) or store.get("bytes") != manifest.blob_bytes:
        raise ValueError(
            f"store: says {store.get('blobs')} blobs of {store.get('bytes')} bytes, files list "
            f"{len(manifest.blobs)} of {manifest.blob_bytes}"
        )


def _get(data: Mapping[str, Any], key: str, kind: Any, where: str = "") -> Any:
    if key not in data:
        raise ValueError(f"{where}{key}: missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{where}{key}: wrong type {type(value).__name__}")
    return value


def _count(where: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{where}: a row count >= 0, got {value!r}")
    return value


def _files(data: Mapping[str, Any]) -> dict[str, FileEntry]:
    files = {}
    for path, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"files.{path}: an object with size and sha256")
        where = f"files.{path}."
        files[str(path)] = FileEntry(
            _get(entry, "size", int, where), _get(entry, "sha256", str, where)
        )
    return files


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"created_at: an ISO 8601 time, got {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"created_at: a time with its UTC offset, got {text!r}")
    return moment


def _checksum(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _bad(reason: str) -> BackupCorruptError:
    problem = f"{MANIFEST_NAME}: {reason}"
    return BackupCorruptError(problem, [problem])
