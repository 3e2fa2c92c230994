"""Database: SQLite tuning, transactions, the thread hop, error translation, construction."""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    event,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from seawall.errors import ConfigError
from seawall.store import Database, SpendLedger, StoreError, StoreUnavailableError
from seawall.store.spend import SpendRow

_NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _pragma(db: Database, name: str) -> object:
    with db.begin(read_only=True) as connection:
        return connection.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_connections_use_wal_normal_sync_foreign_keys_and_a_busy_timeout(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path}/s.db")
    try:
        assert _pragma(db, "journal_mode") == "wal"
        assert _pragma(db, "synchronous") == 1  # NORMAL
        assert _pragma(db, "foreign_keys") == 1
        assert _pragma(db, "busy_timeout") == 5000
    finally:
        db.close()


def test_sqlite_synchronous_and_busy_timeout_are_options(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/s.db", sqlite_synchronous="FULL", busy_timeout_s=0.25)
    try:
        assert _pragma(db, "synchronous") == 2  # FULL
        assert _pragma(db, "busy_timeout") == 250
    finally:
        db.close()


def test_the_file_itself_is_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/s.db")
    db.upgrade()
    db.close()
    raw = sqlite3.connect(tmp_path / "s.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


def _journal_modes_opened_at_once(databases: list[Database]) -> list[object]:
    barrier = threading.Barrier(len(databases))
    modes: list[object] = []

    def open_(db: Database) -> None:
        barrier.wait()
        try:
            modes.append(_pragma(db, "journal_mode"))
        except Exception as exc:  # reported by the caller's assertion
            modes.append(exc)

    threads = [threading.Thread(target=open_, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for db in databases:
        db.close()
    return modes


def test_connections_opening_a_new_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    # The switch needs an exclusive lock that SQLite does not wait for by itself.
    for round_ in range(10):
        databases = [Database(f"sqlite:///{tmp_path}/new{round_}.db") for _ in range(6)]
        assert _journal_modes_opened_at_once(databases) == ["wal"] * len(databases)


def test_sqlite_write_transactions_begin_immediate_and_reads_do_not(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/s.db")
    begins: list[str] = []
    event.listen(
        db.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: (
            begins.append(statement) if statement.startswith("BEGIN") else None
        ),
    )
    try:
        with db.begin() as connection:
            connection.exec_driver_sql("SELECT 1")
        with db.session() as session:
            session.execute(select(1))
        with db.begin(read_only=True) as connection:
            connection.exec_driver_sql("SELECT 1")
        with db.session(read_only=True) as session:
            session.execute(select(1))
        assert begins == ["BEGIN IMMEDIATE", "BEGIN IMMEDIATE", "BEGIN", "BEGIN"]
    finally:
        db.close()


async def test_wal_readers_see_committed_data_while_a_writer_holds_the_lock(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    db, impatient = Database(url), Database(url, busy_timeout_s=0.1)
    db.upgrade()
    ledger = SpendLedger(db)
    await ledger.add("k", "2026-11", "m", 1.0)
    try:
        with db.begin() as writer:
            writer.execute(update(SpendRow).values(usd=SpendRow.usd + 10))
            # A reader does not wait for the writer, and sees the last committed total.
            assert await SpendLedger(impatient).total_usd("k", "2026-11") == 1.0
            # A second writer waits for the busy timeout, then gets a clear error.
            with pytest.raises(StoreUnavailableError, match="database is locked"):
                await SpendLedger(impatient).add("k", "2026-11", "m", 1.0)
        assert await ledger.total_usd("k", "2026-11") == 11.0
    finally:
        db.close()
        impatient.close()


async def test_run_works_on_the_database_threads_with_the_callers_context(
    migrated: Database,
) -> None:
    request_id = contextvars.ContextVar[str]("request_id")
    request_id.set("r-42")

    def where() -> tuple[int, str, str]:
        return threading.get_ident(), threading.current_thread().name, request_id.get()

    ident, name, seen = await migrated.run(where)
    assert ident != threading.get_ident()
    assert name.startswith("seawall-db")
    assert seen == "r-42"


async def test_a_session_commits_on_success_and_rolls_back_on_error(migrated: Database) -> None:
    def insert(model: str, fail: bool) -> None:
        with migrated.session() as session:
            session.add(SpendRow(principal="k", period="p", model=model, updated_at=_NOW))
            session.flush()
            if fail:
                raise RuntimeError("boom")

    def count() -> int:
        with migrated.session(read_only=True) as session:
            return session.scalar(select(func.count()).select_from(SpendRow)) or 0

    await migrated.run(insert, "kept", False)
    with pytest.raises(RuntimeError, match="boom"):
        await migrated.run(insert, "rolled-back", True)
    assert await migrated.run(count) == 1


async def test_foreign_keys_are_enforced_and_integrity_errors_pass_through(
    database: Database,
) -> None:
    metadata = MetaData()
    Table("parent", metadata, Column("id", Integer, primary_key=True))
    child = Table("child", metadata, Column("parent_id", Integer, ForeignKey("parent.id")))

    def create() -> None:
        with database.begin() as connection:
            metadata.create_all(connection)

    def orphan() -> None:
        with database.begin() as connection:
            connection.execute(child.insert().values(parent_id=7))

    await database.run(create)
    with pytest.raises(IntegrityError):
        await database.run(orphan)


async def test_an_unreachable_server_is_store_unavailable_without_the_password() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    db = Database("postgresql://app:s3cret@127.0.0.1:1/seawall", connect_timeout_s=1)

    def probe() -> None:
        with db.begin(read_only=True) as connection:
            connection.exec_driver_sql("SELECT 1")

    try:
        with pytest.raises(StoreUnavailableError, match=r"app:\*\*\*@127\.0\.0\.1:1") as caught:
            await db.run(probe)
        assert "s3cret" not in str(caught.value)
        with pytest.raises(StoreUnavailableError):
            db.upgrade()
    finally:
        db.close()


async def test_a_closed_database_refuses_work(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/s.db")
    await db.aclose()
    db.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await db.run(lambda: None)


async def test_an_in_memory_database_is_shared_by_all_its_work() -> None:
    db = Database("sqlite://")
    try:
        db.upgrade()
        ledger = SpendLedger(db)
        await asyncio.gather(*(ledger.add("k", "p", "m", 0.5, 1, 2) for _ in range(20)))
        (total,) = await ledger.totals("k", "p")
        assert (total.usd, total.prompt_tokens, total.completion_tokens, total.requests) == (
            10.0,
            20,
            40,
            20,
        )
    finally:
        db.close()


def test_from_env_reads_the_url_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "url"
    secret.write_text(f"sqlite:///{tmp_path}/from-file.db\n", encoding="utf-8")
    db = Database.from_env({"SEAWALL_DATABASE_URL_FILE": str(secret)})
    db.close()
    assert db.url == f"sqlite:///{tmp_path}/from-file.db"
    monkeypatch.setenv("SEAWALL_DATABASE_URL", "postgresql://app:pw@db/x")
    monkeypatch.delenv("SEAWALL_DATABASE_URL_FILE", raising=False)
    db = Database.from_env(pool_size=2)
    db.close()
    assert db.url == "postgresql+psycopg://app:***@db/x"
    assert db.dialect == "postgresql"


def test_from_env_defaults_to_seawall_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = Database.from_env({})
    try:
        db.upgrade()
        assert (tmp_path / "seawall.db").is_file()
        assert repr(db) == f"Database('sqlite:///{tmp_path}/seawall.db')"
    finally:
        db.close()


def test_repr_and_url_hide_the_password() -> None:
    db = Database("postgres://app:s3cret@127.0.0.1:1/x")
    db.close()
    assert repr(db) == "Database('postgresql+psycopg://app:***@127.0.0.1:1/x')"


def test_construction_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"the directory {tmp_path}/missing does not exist"):
        Database(f"sqlite:///{tmp_path}/missing/s.db")
    with pytest.raises(ValueError, match="pool_size"):
        Database(f"sqlite:///{tmp_path}/s.db", pool_size=0)
    with pytest.raises(ValueError, match="connect_timeout_s: must be > 0, got 0"):
        Database(f"sqlite:///{tmp_path}/s.db", connect_timeout_s=0)
    with pytest.raises(ValueError, match="busy_timeout_s: must be >= 0, got -1"):
        Database(f"sqlite:///{tmp_path}/s.db", busy_timeout_s=-1)
