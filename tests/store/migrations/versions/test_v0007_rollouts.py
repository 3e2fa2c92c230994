"""Migration 0007: the rollout tables, one live rollout per model, the downgrade, offline SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from seawall.store import Database
from seawall.store.migrate import alembic_config, upgrade_sql

AT = datetime(2027, 1, 1, tzinfo=UTC)
TABLES = ("rollouts", "rollout_decisions")
_ROLLOUT = text(
    "INSERT INTO rollouts (model, stable_version, canary_version, status, step_index, weight, "
    "reason, plan, state, revision, created_at, created_by, updated_at) VALUES (:model, '1', "
    ":canary, :status, 0, 0.0, '', '{}', '{}', 0, :at, 'alice', :at)"
)


def _insert(db: Database, model: str, canary: str, status: str) -> None:
    with db.begin() as connection:
        connection.execute(_ROLLOUT, {"model": model, "canary": canary, "status": status, "at": AT})


def test_the_tables_have_their_keys_and_indexes(migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        inspector = inspect(connection)
        keys = [inspector.get_pk_constraint(t)["constrained_columns"] for t in TABLES]
        indexes = {i["name"]: i for i in inspector.get_indexes("rollouts")}
        decision_indexes = {i["name"] for i in inspector.get_indexes("rollout_decisions")}
        foreign = inspector.get_foreign_keys("rollout_decisions")
    assert keys == [["id"], ["id"]]
    assert indexes["uq_rollouts_live_model"]["unique"]
    assert indexes["uq_rollouts_live_model"]["column_names"] == ["model"]
    assert "ix_rollouts_model_id" in indexes
    assert decision_indexes == {"ix_rollout_decisions_rollout_id"}
    assert [(f["constrained_columns"], f["referred_table"]) for f in foreign] == [
        (["rollout_id"], "rollouts")
    ]


def test_one_live_rollout_per_model_any_number_of_ended_ones(migrated: Database) -> None:
    _insert(migrated, "iris", "2", "promoted")
    _insert(migrated, "iris", "3", "rolled_back")
    _insert(migrated, "iris", "4", "paused")
    _insert(migrated, "wine", "2", "running")  # another model
    for status in ("running", "waiting_approval", "paused"):
        with pytest.raises(IntegrityError):
            _insert(migrated, "iris", "5", status)
    _insert(migrated, "iris", "5", "aborted")
    with migrated.begin(read_only=True) as connection:
        assert connection.execute(text("SELECT count(*) FROM rollouts")).scalar() == 5


def test_a_decision_needs_its_rollout(migrated: Database) -> None:
    with pytest.raises(IntegrityError), migrated.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO rollout_decisions (rollout_id, kind, step_index, status, weight, "
                "reason, results, at, actor) VALUES (99, 'weight', 0, 'running', 1.0, '', '[]', "
                ":at, 'system')"
            ),
            {"at": AT},
        )


def test_downgrade_removes_the_tables(migrated: Database) -> None:
    config = alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0006")
    with migrated.begin(read_only=True) as connection:
        tables = set(inspect(connection).get_table_names())
    assert not {"rollouts", "rollout_decisions"} & tables
    assert "drift_reports" in tables
    migrated.upgrade("0007")
    assert migrated.revision() == "0007"


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_the_offline_script_creates_the_tables(dialect: str) -> None:
    script = upgrade_sql(dialect, start="0006")
    assert "CREATE TABLE rollouts" in script
    assert "CREATE TABLE rollout_decisions" in script
    assert (
        "CREATE UNIQUE INDEX uq_rollouts_live_model ON rollouts (model) "
        "WHERE status IN ('running', 'waiting_approval', 'paused')"
    ) in script
    assert "UPDATE alembic_version SET version_num='0007'" in script
