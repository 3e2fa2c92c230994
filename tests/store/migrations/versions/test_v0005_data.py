"""Migration 0005: the data guard's tables, keys, the counts CHECK, the downgrade."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from seawall.store import Database
from seawall.store.migrate import alembic_config, upgrade_sql

TABLES = {"data_snapshots", "data_snapshot_parents", "data_ingestions", "data_failures"}
_INGESTION = text(
    "INSERT INTO data_ingestions (dataset, contract_name, contract_version, contract_digest, "
    "source, status, rows_in, rows_accepted, rows_quarantined, failure_count, created_at, "
    "created_by) VALUES ('d', 'c', '1', 'x', '{}', :status, :rows_in, :accepted, :quarantined, "
    "0, CURRENT_TIMESTAMP, 'me')"
)


def _insert(db: Database, statement: Any, values: Mapping[str, Any]) -> None:
    with db.begin() as connection:
        connection.execute(statement, dict(values))


def test_the_tables_have_their_keys_and_indexes(migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        inspector = inspect(connection)
        assert set(inspector.get_table_names()) >= TABLES
        keys = {t: inspector.get_pk_constraint(t)["constrained_columns"] for t in TABLES}
        foreign = {
            (t, tuple(f["constrained_columns"]), f["referred_table"])
            for t in TABLES
            for f in inspector.get_foreign_keys(t)
        }
        indexes = {i["name"] for t in TABLES for i in inspector.get_indexes(t)}
    assert keys == {
        "data_snapshots": ["id"],
        "data_snapshot_parents": ["snapshot_id", "position"],
        "data_ingestions": ["id"],
        "data_failures": ["id"],
    }
    assert foreign == {
        ("data_snapshot_parents", ("snapshot_id",), "data_snapshots"),
        ("data_snapshot_parents", ("parent_id",), "data_snapshots"),
        ("data_ingestions", ("snapshot_id",), "data_snapshots"),
        ("data_failures", ("ingestion_id",), "data_ingestions"),
    }
    assert {
        "ix_data_snapshots_dataset",
        "ix_data_ingestions_dataset",
        "ix_data_ingestions_snapshot_id",
        "ix_data_failures_ingestion_id",
    } <= indexes


def test_the_database_refuses_counts_that_do_not_balance(migrated: Database) -> None:
    _insert(
        migrated, _INGESTION, {"status": "accepted", "rows_in": 5, "accepted": 3, "quarantined": 2}
    )
    with pytest.raises(IntegrityError, match="counts_balance"):
        _insert(
            migrated,
            _INGESTION,
            {"status": "accepted", "rows_in": 5, "accepted": 3, "quarantined": 1},
        )
    with pytest.raises(IntegrityError, match="status_known"):
        _insert(
            migrated, _INGESTION, {"status": "maybe", "rows_in": 0, "accepted": 0, "quarantined": 0}
        )
    with migrated.begin(read_only=True) as connection:
        assert connection.execute(text("SELECT count(*) FROM data_ingestions")).scalar() == 1


def test_a_failure_needs_its_ingestion(migrated: Database) -> None:
    orphan = text(
        "INSERT INTO data_failures (ingestion_id, check_name, reason) VALUES (42, 'min', 'x')"
    )
    with pytest.raises(IntegrityError):
        _insert(migrated, orphan, {})


def test_downgrade_removes_the_tables(migrated: Database) -> None:
    config = alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    with migrated.begin(read_only=True) as connection:
        tables = set(inspect(connection).get_table_names())
    assert not tables & TABLES
    assert "model_versions" in tables
    assert migrated.revision() == "0004"
    migrated.upgrade("0005")
    assert migrated.revision() == "0005"


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_the_offline_script_creates_every_table(dialect: str) -> None:
    script = upgrade_sql(dialect, start="0004")
    for table in TABLES:
        assert f"CREATE TABLE {table}" in script
    assert "CHECK (rows_in = rows_accepted + rows_quarantined)" in script
    assert "UPDATE alembic_version SET version_num='0005'" in script
