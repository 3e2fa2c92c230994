"""Backups on SQLite and PostgreSQL: an exact round trip of every table and blob, every kind of
damage found by verify, restores that refuse to overwrite, a consistent backup under writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url

from seawall.data.backup import create_backup, restore_backup, verify_backup
from seawall.data.contract import Contract
from seawall.data.dump import PgTools
from seawall.data.errors import BackupCorruptError, BackupError
from seawall.data.ingest import Ingestor
from seawall.data.snapshots import SnapshotStore
from seawall.data.sources import FrameSource
from seawall.errors import ConflictError, InvalidInputError
from seawall.registry import Registry, store_artifact
from seawall.store import AuditLog, BlobStore, Database

if TYPE_CHECKING:
    from tests.data.conftest import Guard, Until

Rows = dict[str, list[tuple[Any, ...]]]


@contextlib.contextmanager
def fresh_database(url: str | URL) -> Iterator[URL]:
    """A new, empty database on `url`'s PostgreSQL server, as `url` with its name; dropped after."""
    base = make_url(url)
    name = f"backup_restore_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.set(database=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            statement = sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            connection.execute(statement)


@pytest.fixture
def target(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """An empty database of the source's kind (PostgreSQL: a new database, same search_path)."""
    with contextlib.ExitStack() as stack:
        if database_url.startswith("sqlite"):
            url: str | URL = f"sqlite:///{tmp_path / 'restored.db'}"
        else:
            url = stack.enter_context(fresh_database(database_url))
        database = Database(url)
        stack.callback(database.close)
        yield database


def table_rows(database: Database) -> Rows:
    """Every row of every table, in a stable order."""
    with database.begin(read_only=True) as connection:
        rows = {}
        quote = connection.dialect.identifier_preparer.quote_identifier
        for name in inspect(connection).get_table_names():
            found = connection.exec_driver_sql(f"SELECT * FROM {quote(name)}")
            rows[name] = sorted((tuple(row) for row in found), key=_order)
    return rows


def _order(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Rows in their values' order (numbers as numbers), whatever the types."""
    plain = (int, float, Decimal, str, bytes, datetime)
    return tuple((v is None, v if isinstance(v, plain) else repr(v)) for v in row)


def rot(blobs: BlobStore, digest: str, data: bytes) -> None:
    """Overwrite a stored blob behind the store's back."""
    path = Path(blobs.uri(digest))
    path.chmod(0o644)
    path.write_bytes(data)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def blob_contents(blobs: BlobStore) -> dict[str, bytes]:
    contents = {}
    for digest in blobs.digests():
        with blobs.open(digest) as stream:
            contents[digest] = stream.read()
    return contents


async def populate(guard: Guard, contract: Contract, iris: pd.DataFrame, tmp_path: Path) -> str:
    """A snapshot with a quarantine, a signed-off model version trained on it, audit records."""
    frame = iris.copy()
    frame.loc[3, "species"] = "unknown"  # quarantined
    result = await guard.ingestor.ingest(contract, FrameSource(frame, "iris"), actor="cli:alice")
    assert result.snapshot is not None
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(5000))
    registry = Registry(guard.database, clock=guard.clock, blobs=guard.blobs)
    info = store_artifact(guard.blobs, model, name="iris", version=1)
    await registry.register_version(
        "iris", info, actor="cli:alice", framework="sklearn", dataset_snapshot=result.snapshot.id
    )
    await registry.set_alias("iris", "candidate", 1, actor="cli:alice")
    return result.snapshot.id


async def test_a_restore_into_an_empty_place_round_trips_exactly(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, tmp_path: Path, target: Database
) -> None:
    snapshot = await populate(guard, iris_contract, iris, tmp_path)
    before, blobs_before = table_rows(guard.database), blob_contents(guard.blobs)

    manifest = await create_backup(
        guard.database, guard.blobs, tmp_path / "backup", actor="cli:ops", clock=guard.clock
    )
    restored_blobs = BlobStore(tmp_path / "restored-store")
    result = await restore_backup(tmp_path / "backup", target, restored_blobs, actor="cli:ops")

    after = table_rows(target)
    assert set(after) == set(before)
    for table in sorted(set(before) - {"audit_log", "audit_head"}):
        assert after[table] == before[table], table
    # The restored log is the backed-up one and one more record: the restore.
    assert after["audit_log"][:-1] == before["audit_log"]
    assert after["audit_log"][-1][2:4] == ("cli:ops", "backup.restore")
    assert (await AuditLog(target).verify()).ok
    assert blob_contents(restored_blobs) == blobs_before
    assert len(blobs_before) == 3  # the snapshot, its quarantine, the model file
    assert manifest.database.tables == {t: len(r) for t, r in before.items()}
    assert (result.blobs_written, result.blobs_present, result.blobs_other) == (3, 0, 0)
    # The source's log records the backup after the moment it shows.
    source_log = await AuditLog(guard.database).records(limit=10_000)
    assert source_log[-1].action == "backup.create"
    assert source_log[-1].details["checksum"] == manifest.to_json()["checksum"]
    # The restored data guard works: the snapshot reads back, digest-checked.
    frame = await SnapshotStore(target, restored_blobs).read(snapshot, actor="cli:bob")
    assert len(frame) == 149


async def test_a_restored_database_takes_new_writes_after_the_old_ones(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, tmp_path: Path, target: Database
) -> None:
    await populate(guard, iris_contract, iris, tmp_path)
    await create_backup(guard.database, guard.blobs, tmp_path / "b", actor="ops")
    restored_blobs = BlobStore(tmp_path / "restored-store")
    await restore_backup(tmp_path / "b", target, restored_blobs, actor="ops")

    again = await Ingestor(target, restored_blobs).ingest(
        iris_contract, FrameSource(iris.head(20), "more"), actor="cli:alice"
    )

    assert again.ingestion.id == 2  # the sequence went on from the backup (PostgreSQL)
    registry = Registry(target)
    version = await registry.register_version(
        "iris", (await registry.get_version("iris", 1)).artifact, actor="x", framework="sklearn"
    )
    assert version.version == 2


async def test_postgresql_public_schema_round_trips_between_databases(
    postgres_url: str, tmp_path: Path
) -> None:
    with fresh_database(postgres_url) as source_url, fresh_database(postgres_url) as target_url:
        source, target = Database(source_url.set(query={})), Database(target_url.set(query={}))
        try:
            source.upgrade()
            blobs = BlobStore(tmp_path / "store")
            await AuditLog(source).append("alice", "model.promote", blobs.put(b"model"))
            manifest = await create_backup(source, blobs, tmp_path / "b", actor="ops")
            await restore_backup(tmp_path / "b", target, BlobStore(tmp_path / "r"), actor="ops")

            assert manifest.database.schema == "public"
            assert target.revision() == source.revision() == manifest.database.revision
            assert table_rows(target)["audit_log"][0] == table_rows(source)["audit_log"][0]
            assert (await AuditLog(target).verify()).checked == 2
        finally:
            source.close()
            target.close()


# --------------------------------------------------------------------- verify


@pytest.fixture
async def backup(migrated: Database, tmp_path: Path) -> Path:
    """A backup of three audited blobs."""
    blobs = BlobStore(tmp_path / "store")
    for i in range(3):
        digest = blobs.put(f"model {i}".encode() * 100)
        await AuditLog(migrated).append("alice", "model.promote", digest)
    await create_backup(migrated, blobs, tmp_path / "backup", actor="ops")
    return tmp_path / "backup"


def first_blob(backup: Path) -> Path:
    return sorted((backup / "blobs").iterdir())[0]


def dump_file(backup: Path) -> Path:
    return next(p for p in backup.iterdir() if p.name.startswith("database."))


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(data)


def edit_manifest(backup: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = backup / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


async def test_an_intact_backup_verifies(backup: Path) -> None:
    report = await verify_backup(backup)

    assert report.ok, report.problems
    assert report.manifest is not None
    assert report.files_checked == 5  # manifest, dump, three blobs
    assert report.bytes_checked == dump_file(backup).stat().st_size + 3 * 700


async def test_verify_names_a_flipped_byte_in_a_blob(backup: Path) -> None:
    blob = first_blob(backup)
    flip(blob, 10)

    report = await verify_backup(backup)

    found = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert report.problems == (
        f"blobs/{blob.name}: sha256 {found} does not match the manifest's {blob.name}",
    )


async def test_verify_names_a_flipped_byte_in_the_database_dump(backup: Path) -> None:
    dump = dump_file(backup)
    flip(dump, dump.stat().st_size // 2)

    report = await verify_backup(backup)

    assert report.problems
    assert report.problems[0].startswith(f"{dump.name}: sha256 ")
    assert all(problem.startswith(f"{dump.name}: ") for problem in report.problems)


async def test_verify_names_a_truncated_and_a_missing_file(backup: Path) -> None:
    truncated, missing = sorted((backup / "blobs").iterdir())[:2]
    with truncated.open("r+b") as file:
        file.truncate(699)
    missing.unlink()

    report = await verify_backup(backup)

    assert report.problems == (
        f"blobs/{truncated.name}: 699 bytes, the manifest says 700 (truncated)",
        f"blobs/{missing.name}: missing",
    )


async def test_verify_names_extra_files(backup: Path) -> None:
    stray = hashlib.sha256(b"stray").hexdigest()
    (backup / "blobs" / stray).write_bytes(b"stray")
    (backup / "notes.txt").write_text("hello")

    report = await verify_backup(backup)

    assert report.problems == (
        "notes.txt: extra file, not in the manifest",
        f"blobs/{stray}: extra file, not in the manifest",
    )


async def test_verify_detects_an_edited_manifest(backup: Path) -> None:
    dump = dump_file(backup)
    forged = hashlib.sha256(b"forged").hexdigest()

    def change(data: dict[str, Any]) -> None:
        data["files"][dump.name]["sha256"] = forged

    edit_manifest(backup, change)
    report = await verify_backup(backup)

    assert report.problems[:2] == (
        "manifest.json: checksum mismatch: edited or damaged",
        f"{dump.name}: sha256 {hashlib.sha256(dump.read_bytes()).hexdigest()} does not match "
        f"the manifest's {forged}",
    )


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.unlink(), "manifest.json: missing"),
        (lambda p: p.write_text("{not json"), "manifest.json: unreadable: "),
        (lambda p: p.write_text("[]"), "manifest.json: a JSON object expected, got list"),
        (
            lambda p: p.write_text('{"format": "tarball"}'),
            "manifest.json: format: 'seawall-backup' expected, got 'tarball': not a seawall backup",
        ),
    ],
    ids=["missing", "not-json", "not-an-object", "another-format"],
)
async def test_verify_reports_a_manifest_it_cannot_read(
    backup: Path, damage: Callable[[Path], None], problem: str
) -> None:
    damage(backup / "manifest.json")

    report = await verify_backup(backup)

    assert report.manifest is None
    assert len(report.problems) == 1
    assert report.problems[0].startswith(problem)


async def test_verify_refuses_a_path_that_is_no_backup_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such directory"):
        await verify_backup(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a directory"):
        await verify_backup(tmp_path / "file")


# -------------------------------------------------------------------- restore


async def test_a_corrupt_backup_is_not_restored_at_all(
    backup: Path, target: Database, tmp_path: Path
) -> None:
    missing = first_blob(backup).name
    first_blob(backup).unlink()
    blobs = BlobStore(tmp_path / "restored")

    with pytest.raises(BackupCorruptError, match="does not verify, nothing restored") as caught:
        await restore_backup(backup, target, blobs, actor="ops")

    assert caught.value.problems == [f"blobs/{missing}: missing"]
    assert table_rows(target) == {}
    assert blobs.digests() == []


async def test_a_restore_never_overwrites_a_database_that_holds_tables(
    backup: Path, target: Database, tmp_path: Path
) -> None:
    if target.dialect == "postgresql":  # the fresh database lacks the search_path's schema
        options = str(make_url(target.url).query["options"])
        with target.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{options.removeprefix("-csearch_path=")}"')
    target.upgrade()
    await AuditLog(target).append("bob", "model.promote", "precious")
    blobs = BlobStore(tmp_path / "restored")

    with pytest.raises(ConflictError, match=r"holds tables .* never overwrites"):
        await restore_backup(backup, target, blobs, actor="ops")

    assert [r[3] for r in table_rows(target)["audit_log"]] == ["model.promote"]
    assert blobs.digests() == []


async def test_a_store_holding_other_blobs_is_refused_unless_merging(
    backup: Path, target: Database, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "restored")
    other = blobs.put(b"another deployment's model")

    with pytest.raises(ConflictError, match=f"holds 1 blob.* the backup does not .*{other}"):
        await restore_backup(backup, target, blobs, actor="ops")
    assert table_rows(target) == {}

    result = await restore_backup(backup, target, blobs, actor="ops", merge_store=True)

    assert (result.blobs_written, result.blobs_other) == (3, 1)
    assert blobs.digests() == sorted([other, *result.manifest.blobs])


async def test_a_corrupt_copy_in_the_target_store_is_replaced_by_the_good_one(
    backup: Path, target: Database, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "restored")
    good = first_blob(backup)
    blobs.put(good)
    rot(blobs, good.name, b"rot")

    result = await restore_backup(backup, target, blobs, actor="ops")

    assert (result.blobs_written, result.blobs_present, result.blobs_repaired) == (2, 0, 1)
    assert blobs.verify(good.name)


async def test_a_backup_is_restored_only_into_its_own_kind_of_database(
    backup: Path, database_url: str, tmp_path: Path, postgres_url: str
) -> None:
    other = postgres_url if database_url.startswith("sqlite") else f"sqlite:///{tmp_path}/x.db"
    database = Database(other)
    try:
        with pytest.raises(InvalidInputError, match="database: the backup holds a"):
            await restore_backup(backup, database, BlobStore(tmp_path / "r"), actor="ops")
    finally:
        database.close()


# --------------------------------------------------------------------- create


async def test_a_backup_taken_while_a_writer_inserts_is_one_consistent_moment(
    migrated: Database, tmp_path: Path, target: Database, until: Until
) -> None:
    blobs = BlobStore(tmp_path / "store")
    audit = AuditLog(migrated)
    for i in range(200):  # blobs enough that copying them takes a while
        await audit.append("seed", "data.write", blobs.put(f"seed {i}".encode() * 50))
    stop, written, errors = threading.Event(), [], []

    def writer() -> None:
        try:
            while not stop.is_set():
                digest = blobs.put(os.urandom(64))  # the blob first, then the row naming it
                with migrated.begin() as connection:
                    audit.append_in(connection, "writer", "data.write", digest)
                written.append(digest)
        except Exception as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        await until(lambda: len(written) >= 5)
        at_start = len(written)
        manifest = await create_backup(migrated, blobs, tmp_path / "b", actor="ops")
        at_end = len(written)
    finally:
        stop.set()
        thread.join()

    assert not errors
    assert at_end > at_start  # the writer went on while the backup ran
    restored = BlobStore(tmp_path / "restored")
    await restore_backup(tmp_path / "b", target, restored, actor="ops")
    assert (await AuditLog(target).verify()).ok
    records = table_rows(target)["audit_log"]
    assert len(records) == manifest.database.tables["audit_log"] + 1
    assert 200 + at_start <= len(records) - 1 <= 200 + at_end + 1
    named = {row[4] for row in records if row[2] in ("seed", "writer")}
    assert named <= set(restored.digests())  # every blob a row names was backed up


async def test_a_blob_corrupt_in_the_store_is_left_out_and_named(
    migrated: Database, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "store")
    good, bad = blobs.put(b"good"), blobs.put(b"will rot")
    rot(blobs, bad, b"rotten")

    manifest = await create_backup(migrated, blobs, tmp_path / "b", actor="ops")

    assert manifest.blobs == [good]
    assert manifest.left_out == {bad: hashlib.sha256(b"rotten").hexdigest()}
    assert (await verify_backup(tmp_path / "b")).ok
    record = (await AuditLog(migrated).records())[-1]
    assert (record.action, record.details["left_out"]) == ("backup.create", [bad])


async def test_create_refuses_a_destination_that_holds_files(
    migrated: Database, tmp_path: Path
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "old").write_text("x")

    with pytest.raises(InvalidInputError, match=r"dest: .* exists"):
        await create_backup(migrated, BlobStore(tmp_path / "s"), tmp_path / "b", actor="ops")

    (tmp_path / "empty").mkdir()
    await create_backup(migrated, BlobStore(tmp_path / "s"), tmp_path / "empty", actor="ops")
    assert (tmp_path / "empty" / "manifest.json").is_file()


async def test_create_refuses_a_database_never_migrated(database: Database, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no seawall tables"):
        await create_backup(database, BlobStore(tmp_path / "s"), tmp_path / "out" / "b", actor="o")

    assert names(tmp_path / "out") == []


async def test_a_backup_that_fails_midway_leaves_nothing_behind(
    migrated: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = BlobStore(tmp_path / "store")
    for i in range(3):
        blobs.put(f"blob {i}".encode())
    opened = []
    real_open = BlobStore.open

    def failing_open(self: BlobStore, digest: str) -> Any:
        opened.append(digest)
        if len(opened) == 2:
            raise OSError(5, "Input/output error")
        return real_open(self, digest)

    monkeypatch.setattr(BlobStore, "open", failing_open)
    with pytest.raises(OSError, match="Input/output"):
        await create_backup(migrated, blobs, tmp_path / "out" / "b", actor="ops")

    assert names(tmp_path / "out") == []
    actions = [r.action for r in await AuditLog(migrated).records()]
    assert "backup.create" not in actions


async def test_a_failing_pg_dump_is_a_backup_error_naming_it(
    postgres_url: str, tmp_path: Path
) -> None:
    database = Database(postgres_url)
    try:
        database.upgrade()
        missing = PgTools(pg_dump=str(tmp_path / "no-pg_dump"))
        with pytest.raises(BackupError, match="no-pg_dump: not found: install the PostgreSQL"):
            await create_backup(
                database, BlobStore(tmp_path / "s"), tmp_path / "b", actor="o", tools=missing
            )
        failing = PgTools(pg_dump="false")
        with pytest.raises(BackupError, match=r"false failed \(exit 1\)"):
            await create_backup(
                database, BlobStore(tmp_path / "s"), tmp_path / "b", actor="o", tools=failing
            )
    finally:
        database.close()
    assert names(tmp_path) == []
