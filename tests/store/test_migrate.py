"""Migrations from code: upgrade an empty database, again, concurrently; the offline script."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, inspect, text

from seawall.store import Database, SpendLedger, StoreError
from seawall.store.migrate import MIGRATIONS, head, upgrade_sql

#: Every table the migrations create.
SCHEMA = {
    "alembic_version",
    "spend",
    "audit_log",
    "audit_head",
    "api_keys",
    "registered_models",
    "model_versions",
    "model_aliases",
    "model_approvals",
    "model_deployments",
    "model_events",
    "data_snapshots",
    "data_snapshot_parents",
    "data_ingestions",
    "data_failures",
    "drift_reports",
    "rollouts",
    "rollout_decisions",
}


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def _tables(db: Database) -> set[str]:
    with db.begin(read_only=True) as connection:
        return set(inspect(connection).get_table_names())


def test_the_migrations_ship_in_the_package() -> None:
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "script.py.mako").is_file()
    assert head() == "0007"


def test_upgrade_creates_the_schema_on_an_empty_database(database: Database) -> None:
    assert database.revision() is None
    assert _tables(database) == set()
    database.upgrade()
    assert database.revision() == "0007"
    assert _tables(database) == SCHEMA


async def test_upgrading_again_changes_nothing_and_keeps_the_data(migrated: Database) -> None:
    ledger = SpendLedger(migrated)
    await ledger.add("k", "2026-11", "m", 2.5, 10, 20)
    with _statements(migrated) as statements:
        migrated.upgrade()
    assert migrated.revision() == "0007"
    assert not [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER"))]
    assert await ledger.total_usd("k", "2026-11") == 2.5


def test_concurrent_upgrades_of_an_empty_database_all_succeed(database_url: str) -> None:
    databases = [Database(database_url) for _ in range(3)]
    barrier = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def upgrade(db: Database) -> None:
        barrier.wait()
        try:
            db.upgrade()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(db,)) for db in databases]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert {db.revision() for db in databases} == {"0007"}
    finally:
        for db in databases:
            db.close()


def test_different_databases_upgraded_at_once_in_one_process_do_not_mix(tmp_path: Path) -> None:
    # alembic's proxies are process-global: without a lock, one migration drives another's.
    databases = [Database(f"sqlite:///{tmp_path}/db{i}.db") for i in range(4)]
    barrier = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def upgrade(db: Database) -> None:
        barrier.wait()
        try:
            db.upgrade()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(db,)) for db in databases]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert [db.revision() for db in databases] == ["0007"] * 4
        assert all(_tables(db) == SCHEMA for db in databases)
    finally:
        for db in databases:
            db.close()


def test_postgres_upgrades_hold_an_advisory_lock(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        with _statements(db) as statements:
            db.upgrade()
        assert "pg_advisory_xact_lock" in statements[0]
    finally:
        db.close()


def test_an_unknown_revision_is_a_store_error(database: Database) -> None:
    with pytest.raises(StoreError, match="cannot migrate to 'ffff'"):
        database.upgrade("ffff")
    assert database.revision() is None


def test_a_database_migrated_by_a_newer_seawall_is_refused(migrated: Database) -> None:
    with migrated.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="9999"):
        migrated.upgrade()
    assert migrated.revision() == "9999"


@pytest.mark.parametrize(
    ("dialect", "timestamp"),
    [("postgresql", "TIMESTAMP WITH TIME ZONE"), ("sqlite", "DATETIME")],
)
def test_upgrade_sql_writes_the_script_for_a_dba(dialect: str, timestamp: str) -> None:
    script = upgrade_sql(dialect)
    assert "CREATE TABLE spend" in script
    assert "CONSTRAINT pk_spend PRIMARY KEY (principal, period, model)" in script
    assert f"updated_at {timestamp} NOT NULL" in script
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in script
    assert "CREATE TABLE spend" not in upgrade_sql(dialect, start="0001")


def test_upgrade_sql_to_an_unknown_revision_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="ffff"):
        upgrade_sql("sqlite", "ffff")
