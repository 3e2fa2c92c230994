"""Backups of seawall's state: the database and the content-addressed store, with checksums.

A backup is a directory, simple to inspect and to copy elsewhere:

    manifest.json        what it holds and each file's size and sha256 (`backup_manifest`)
    database.sqlite3     or database.pgdump: one consistent snapshot of the database (`dump`)
    blobs/<sha256>       every blob of the store (models, snapshots, quarantines)

`create_backup` writes into a hidden sibling, `.<name>.partial-<random>`, and renames it into
place once the manifest, written last, is fsync'd: a crash never leaves a half backup that looks
whole. The database is dumped before the blobs are copied. A blob is stored before any row names
it and never changes, so every blob the dump refers to is in the backup (with perhaps a few newer
ones). Each blob is hashed as it is copied; one that no longer matches its name is left out and
named in the manifest, never copied as if it were good.

`verify_backup` re-hashes every file, finds missing, truncated and extra ones, checks the
manifest's own checksum and reads the dump. `restore_backup` verifies first, then refuses a
database that holds tables and, unless `merge_store`, a store that holds blobs the backup does
not. Nothing is ever overwritten: a restore goes into an empty place. It puts the blobs, restores
the database, checks every table's row count against the manifest and appends `backup.restore`
to the restored audit log, whose chain goes on from the backup's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from seawall import __version__
from seawall.clock import Clock, SystemClock
from seawall.data.backup_manifest import (
    BLOBS_DIR,
    MANIFEST_NAME,
    BackupManifest,
    DatabaseInfo,
    FileEntry,
    read_manifest,
    write_manifest,
)
from seawall.data.dump import (
    PgTools,
    check_dump,
    check_target,
    dump_database,
    restore_database,
    table_counts,
)
from seawall.data.errors import BackupCorruptError, BackupError
from seawall.errors import ConflictError, InvalidInputError
from seawall.store.audit import AuditLog
from seawall.store.blobs import CHUNK_BYTES, BlobNotFoundError, BlobStore
from seawall.store.engine import Database

__all__ = ["RestoreResult", "VerifyReport", "create_backup", "restore_backup", "verify_backup"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `verify_backup` found: every problem, `file: reason`; none means intact."""

    path: Path
    #: None when the manifest is missing or unreadable (then nothing else could be checked).
    manifest: BackupManifest | None
    problems: tuple[str, ...]
    files_checked: int
    bytes_checked: int

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What `restore_backup` did."""

    manifest: BackupManifest
    #: Blobs written to the store, and those it held already, intact.
    blobs_written: int
    blobs_present: int
    #: Blobs the store held but corrupt, replaced by the backup's good copy.
    blobs_repaired: int
    #: Blobs the store held that the backup does not (kept; only with `merge_store`).
    blobs_other: int


async def create_backup(
    database: Database,
    blobs: BlobStore,
    dest: str | os.PathLike[str],
    *,
    actor: str,
    clock: Clock | None = None,
    tools: PgTools | None = None,
) -> BackupManifest:
    """Back up `database` and `blobs` into the new directory `dest`; audited as `backup.create`.

    `dest` must not exist, or be an empty directory. Bad input is `InvalidInputError`; a failed
    dump or copy is `BackupError` (or `StoreError`), and leaves nothing at `dest`.
    """
    clock = clock or SystemClock()
    where = await asyncio.to_thread(Path(dest).absolute)
    partial = await asyncio.to_thread(_partial, where)
    try:
        created_at = datetime.fromtimestamp(clock.time(), UTC)
        # The dump holds a connection throughout: it runs on the database's own threads.
        info = await database.run(dump_database, database, partial, tools or PgTools())
        manifest = await asyncio.to_thread(_finish, blobs, partial, where, created_at, info)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, partial, ignore_errors=True)
        raise
    if "audit_log" in manifest.database.tables:
        details = {**_summary(manifest), "left_out": sorted(manifest.left_out)}
        await AuditLog(database, clock=clock).append(actor, "backup.create", str(where), details)
    return manifest


async def verify_backup(
    path: str | os.PathLike[str], *, tools: PgTools | None = None
) -> VerifyReport:
    """Check the backup at `path`; `InvalidInputError` if there is no directory there."""
    return await asyncio.to_thread(_verify, Path(path), tools or PgTools())


async def restore_backup(
    path: str | os.PathLike[str],
    database: Database,
    blobs: BlobStore,
    *,
    actor: str,
    merge_store: bool = False,
    clock: Clock | None = None,
    tools: PgTools | None = None,
) -> RestoreResult:
    """Restore the backup at `path` into the empty `database` and `blobs`.

    `BackupCorruptError` if it does not verify; `ConflictError` if the database holds tables,
    or the store other blobs (unless `merge_store`: they are kept); nothing is changed then.
    """
    clock, tools = clock or SystemClock(), tools or PgTools()
    source = await asyncio.to_thread(Path(path).absolute)
    manifest = _verified(await asyncio.to_thread(_verify, source, tools))
    await database.run(check_target, database, manifest.database)
    other = await asyncio.to_thread(_other_blobs, blobs, manifest, merge_store)
    counts = await asyncio.to_thread(_put_blobs, source, manifest, blobs)
    scratch = await asyncio.to_thread(tempfile.mkdtemp, prefix="seawall-restore-")
    try:
        # Restored from a copy checked again, not from a file that may change after the verify.
        dump = await asyncio.to_thread(_checked_copy, source, manifest, Path(scratch))
        await database.run(restore_database, dump, database, manifest.database, tools)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)
    await database.run(_check_restored, database, manifest)
    result = RestoreResult(manifest, *counts, blobs_other=len(other))
    if "audit_log" in manifest.database.tables:
        details = {**_summary(result.manifest), "blobs_written": result.blobs_written}
        await AuditLog(database, clock=clock).append(actor, "backup.restore", str(source), details)
    return result


def _summary(manifest: BackupManifest) -> dict[str, Any]:
    return {
        "created_at": manifest.created_at.isoformat(),
        "checksum": manifest.to_json()["checksum"],
        "dialect": manifest.database.dialect,
        "revision": manifest.database.revision,
        "rows": sum(manifest.database.tables.values()),
        "blobs": len(manifest.blobs),
        "blob_bytes": manifest.blob_bytes,
    }


# ------------------------------------------------------------------ create


def _partial(dest: Path) -> Path:
    """A new hidden directory beside `dest` to write the backup into."""
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise InvalidInputError("dest", f"{dest} exists: a backup goes into a new directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{uuid.uuid4().hex[:12]}")
    partial.mkdir()
    return partial


def _finish(
    blobs: BlobStore, partial: Path, dest: Path, created_at: datetime, info: DatabaseInfo
) -> BackupManifest:
    """Copy the blobs beside the dump, write the manifest last, and move it all to `dest`."""
    files = {info.file: _entry(partial / info.file)}
    copied, left_out = _copy_blobs(blobs, partial / BLOBS_DIR)
    files.update(copied)
    manifest = BackupManifest(created_at, __version__, info, files, left_out)
    write_manifest(manifest, partial)
    _fsync_dir(partial)
    os.rename(partial, dest)  # replaces an empty directory, atomically
    _fsync_dir(dest.parent)
    return manifest


def _copy_blobs(blobs: BlobStore, into: Path) -> tuple[dict[str, FileEntry], dict[str, str]]:
    """Copy every blob, hashing it; those that do not match their name are left out."""
    into.mkdir()
    files, left_out = {}, {}
    for digest in blobs.digests():
        target = into / digest
        try:
            with blobs.open(digest) as source, target.open("xb") as out:
                entry = _copy_hashing(source, out)
        except BlobNotFoundError:  # discarded since it was listed: not part of the store now
            target.unlink(missing_ok=True)
            continue
        if entry.sha256 != digest:
            target.unlink()
            left_out[digest] = entry.sha256
        else:
            files[f"{BLOBS_DIR}/{digest}"] = entry
    _fsync_dir(into)
    return files, left_out


def _copy_hashing(source: BinaryIO, out: BinaryIO) -> FileEntry:
    sha, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK_BYTES):
        sha.update(chunk)
        out.write(chunk)
        size += len(chunk)
    out.flush()
    os.fsync(out.fileno())
    return FileEntry(size, sha.hexdigest())


def _entry(path: Path) -> FileEntry:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            sha.update(chunk)
            size += len(chunk)
    return FileEntry(size, sha.hexdigest())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ verify


def _verify(path: Path, tools: PgTools) -> VerifyReport:
    if not path.is_dir():
        what = "not a directory" if path.exists() else "no such directory"
        raise InvalidInputError("path", f"{path}: {what}: a backup is a directory")
    try:
        manifest, intact = read_manifest(path / MANIFEST_NAME)
    except BackupCorruptError as exc:
        return VerifyReport(path, None, tuple(exc.problems), 0, 0)
    problems = [] if intact else [f"{MANIFEST_NAME}: checksum mismatch: edited or damaged"]
    checked = 0
    for name, entry in sorted(manifest.files.items()):
        problem = _check_file(path / name, entry)
        checked += entry.size if problem is None else 0
        if problem is not None:
            problems.append(f"{name}: {problem}")
    problems += [f"{name}: extra file, not in the manifest" for name in _extra(path, manifest)]
    dump = path / manifest.database.file
    if dump.is_file() and not dump.is_symlink():
        problems += check_dump(dump, manifest.database, tools)
    return VerifyReport(path, manifest, tuple(problems), len(manifest.files) + 1, checked)


def _check_file(path: Path, entry: FileEntry) -> str | None:
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return "not a regular file"
    try:
        found = _entry(path)
    except FileNotFoundError:
        return "missing"
    if found.size != entry.size:
        cut = " (truncated)" if found.size < entry.size else ""
        return f"{found.size} bytes, the manifest says {entry.size}{cut}"
    if not hmac.compare_digest(found.sha256, entry.sha256):
        return f"sha256 {found.sha256} does not match the manifest's {entry.sha256}"
    return None


def _extra(path: Path, manifest: BackupManifest) -> Iterator[str]:
    for directory, subdirs, names in os.walk(path):
        subdirs.sort()
        for name in sorted(names):
            relative = (Path(directory) / name).relative_to(path).as_posix()
            if relative != MANIFEST_NAME and relative not in manifest.files:
                yield relative


# ----------------------------------------------------------------- restore


def _verified(report: VerifyReport) -> BackupManifest:
    if report.manifest is None or not report.ok:
        shown = "; ".join(report.problems[:5]) + ("; ..." if len(report.problems) > 5 else "")
        raise BackupCorruptError(
            f"backup {report.path} does not verify, nothing restored: {shown}",
            list(report.problems),
        )
    return report.manifest


def _other_blobs(blobs: BlobStore, manifest: BackupManifest, merge_store: bool) -> list[str]:
    """The store's blobs that the backup does not hold; `ConflictError` unless merging."""
    other = sorted(set(blobs.digests()) - set(manifest.blobs))
    if other and not merge_store:
        raise ConflictError(
            f"blob store {blobs.root} holds {len(other)} blob(s) the backup does not "
            f"(such as {other[0]}): restore into an empty store, or merge into it on purpose"
        )
    return other


def _put_blobs(path: Path, manifest: BackupManifest, blobs: BlobStore) -> tuple[int, int, int]:
    written = present = repaired = 0
    for digest in manifest.blobs:
        if blobs.has(digest):
            if blobs.verify(digest):
                present += 1
                continue
            blobs.discard(digest)  # corrupt in the store: the backup's good copy replaces it
            repaired += 1
        else:
            written += 1
        stored = blobs.put(path / BLOBS_DIR / digest)
        if stored != digest:
            blobs.discard(stored)
            raise BackupError(f"{BLOBS_DIR}/{digest}: changed while it was restored ({stored})")
    return written, present, repaired


def _checked_copy(path: Path, manifest: BackupManifest, scratch: Path) -> Path:
    name = manifest.database.file
    copy = scratch / name
    with (path / name).open("rb") as source, copy.open("xb") as out:
        entry = _copy_hashing(source, out)
    if entry != manifest.files[name]:
        raise BackupError(f"{name}: changed since it was verified; nothing of it restored")
    return copy


def _check_restored(database: Database, manifest: BackupManifest) -> None:
    with database.begin(read_only=True) as connection:
        found = table_counts(connection, manifest.database.schema)
    wrong = [
        f"{table}: {found.get(table)} rows, the backup {rows}"
        for table, rows in sorted(manifest.database.tables.items())
        if found.get(table) != rows
    ]
    if wrong:
        raise BackupError(f"database {database.url}: restored, but {'; '.join(wrong[:5])}")
