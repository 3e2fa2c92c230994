"""Migration 0006: the drift reports table, its indexes, one row per window, the downgrade."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from seawall.store import Database
from seawall.store.migrate import alembic_config, upgrade_sql

START = datetime(2027, 1, 1, tzinfo=UTC)
_REPORT = text(
    "INSERT INTO drift_reports (model, version, window_start, window_end, offered, samples, "
    "drifting, score, reference, report, created_by, created_at) VALUES ('iris:1', '2', "
    ":start, :start, 10, 10, :drifting, 0.1, 'snapshot ab', '{}', :by, :start)"
)


def test_the_table_has_its_key_and_indexes(migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        inspector = inspect(connection)
        key = inspector.get_pk_constraint("drift_reports")["constrained_columns"]
        indexes = {i["name"] for i in inspector.get_indexes("drift_reports")}
        unique = inspector.get_unique_constraints("drift_reports")
    assert key == ["id"]
    assert {"ix_drift_reports_model_version_window", "ix_drift_reports_window_end"} <= indexes
    assert [u["column_names"] for u in unique] == [
        ["model", "version", "window_start", "created_by"]
    ]


def _insert(db: Database, by: str) -> None:
    with db.begin() as connection:
        connection.execute(_REPORT, {"drifting": True, "by": by, "start": START})


def test_one_row_per_window_and_gateway(migrated: Database) -> None:
    _insert(migrated, "gw-1")
    _insert(migrated, "gw-2")  # another gateway's report of the same window
    with pytest.raises(IntegrityError):
        _insert(migrated, "gw-2")
    with migrated.begin(read_only=True) as connection:
        assert connection.execute(text("SELECT count(*) FROM drift_reports")).scalar() == 2


def test_downgrade_removes_the_table(migrated: Database) -> None:
    config = alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    with migrated.begin(read_only=True) as connection:
        tables = set(inspect(connection).get_table_names())
    assert "drift_reports" not in tables
    assert "data_snapshots" in tables
    migrated.upgrade("0006")
    assert migrated.revision() == "0006"


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_the_offline_script_creates_the_table(dialect: str) -> None:
    script = upgrade_sql(dialect, start="0005")
    assert "CREATE TABLE drift_reports" in script
    assert "CONSTRAINT uq_drift_reports_window UNIQUE" in script
    assert "UPDATE alembic_version SET version_num='0006'" in script
