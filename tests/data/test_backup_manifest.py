"""`manifest.json`: written and read back unchanged, its checksum catches edits, and every bad
field is named by its path."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from seawall.data.backup_manifest import (
    BackupManifest,
    DatabaseInfo,
    FileEntry,
    database_file,
    read_manifest,
    write_manifest,
)
from seawall.data.errors import BackupCorruptError

BLOB = hashlib.sha256(b"blob").hexdigest()
DUMP = hashlib.sha256(b"dump").hexdigest()


def manifest() -> BackupManifest:
    return BackupManifest(
        created_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
        seawall_version="0.1.0",
        database=DatabaseInfo("sqlite", "0005", {"audit_log": 3, "spend": 0}, None, "3.40.1"),
        files={"database.sqlite3": FileEntry(8192, DUMP), f"blobs/{BLOB}": FileEntry(4, BLOB)},
        left_out={"b" * 64: "c" * 64},
    )


def test_a_manifest_reads_back_as_written(tmp_path: Path) -> None:
    written = manifest()
    path = write_manifest(written, tmp_path)

    read, intact = read_manifest(path)

    assert (read, intact) == (written, True)
    assert read.blobs == [BLOB]
    assert read.blob_bytes == 4
    data = json.loads(path.read_text())
    assert data["store"] == {"blobs": 1, "bytes": 4, "left_out": {"b" * 64: "c" * 64}}
    assert data["database"]["file"] == "database.sqlite3"
    assert len(data["checksum"]) == 64


def test_database_files_are_named_by_dialect() -> None:
    assert database_file("sqlite") == "database.sqlite3"
    assert database_file("postgresql") == "database.pgdump"


def edited(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = write_manifest(manifest(), tmp_path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_any_edit_breaks_the_checksum(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["database"]["tables"]["audit_log"] = 2

    read, intact = read_manifest(edited(tmp_path, change))

    assert intact is False
    assert read.database.tables["audit_log"] == 2


def test_reordering_and_reindenting_keep_the_checksum(tmp_path: Path) -> None:
    path = write_manifest(manifest(), tmp_path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps(dict(reversed(list(data.items())))))

    assert read_manifest(path)[1] is True


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(":")
        for key in parents:
            data = data[key]
        if value is KeyError:
            del data[last]
        else:
            data[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_set("format_version", 2), "format_version: this seawall reads version 1, got 2"),
        (_set("created_at", KeyError), "created_at: missing"),
        (_set("created_at", "yesterday"), "created_at: an ISO 8601 time, got 'yesterday'"),
        (
            _set("created_at", "2026-11-26T10:00:00"),
            "created_at: a time with its UTC offset, got '2026-11-26T10:00:00'",
        ),
        (_set("database:dialect", "mysql"), "database.dialect: sqlite or postgresql, got 'mysql'"),
        (_set("database:file", "db.bin"), "database.file: 'database.sqlite3' for sqlite"),
        (_set("database:tables:spend", -1), "database.tables.spend: a row count >= 0, got -1"),
        (_set("database:revision", 5), "database.revision: wrong type int"),
        (
            _set("files:database.sqlite3:size", "8192"),
            "files.database.sqlite3.size: wrong type str",
        ),
        (_set("files:database.sqlite3", [8192]), "files.database.sqlite3: an object with size"),
        (
            _set("files:database.sqlite3:sha256", "xyz"),
            "files.database.sqlite3: a size >= 0 and a sha256 of 64 hex digits",
        ),
        (
            _set(f"files:blobs/{BLOB}:sha256", DUMP),
            f"files.blobs/{BLOB}: a blob is named by its sha256, got {DUMP}",
        ),
        (
            _set("files:blobs/../../etc/passwd", {"size": 1, "sha256": DUMP}),
            "files.blobs/../../etc/passwd: a blob is named by its sha256",
        ),
        (
            _set("files:notes.txt", {"size": 1, "sha256": DUMP}),
            "files.notes.txt: not a file a backup holds",
        ),
        (
            _set("files:database.sqlite3", KeyError),
            "files: no entry for the database dump database.sqlite3",
        ),
        (_set("store:blobs", 2), "store: says 2 blobs of 4 bytes, files list 1 of 4"),
    ],
)
def test_a_bad_field_is_named_with_its_path(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    path = edited(tmp_path, change)

    with pytest.raises(BackupCorruptError) as caught:
        read_manifest(path)

    assert caught.value.problems[0].startswith(f"manifest.json: {reason}")
    assert str(caught.value) == caught.value.problems[0]


def test_a_manifest_that_is_not_there_or_not_json_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(BackupCorruptError, match=r"^manifest.json: missing$"):
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_bytes(b"\xff\xfe")
    with pytest.raises(BackupCorruptError, match=r"manifest.json: unreadable: "):
        read_manifest(tmp_path / "manifest.json")
