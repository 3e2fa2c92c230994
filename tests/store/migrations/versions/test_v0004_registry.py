"""Migration 0004: the registry's tables, their keys and indexes, the downgrade."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from seawall.store import Database
from seawall.store.migrate import alembic_config, upgrade_sql

TABLES = {
    "registered_models",
    "model_versions",
    "model_aliases",
    "model_approvals",
    "model_deployments",
    "model_events",
}


def test_the_tables_have_their_keys_and_indexes(migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        inspector = inspect(connection)
        assert set(inspector.get_table_names()) >= TABLES
        for table in TABLES - {"registered_models"}:
            (foreign,) = inspector.get_foreign_keys(table)
            assert foreign["referred_table"] == "registered_models"
            assert foreign["constrained_columns"] == ["model_id"]
        uniques = {
            table: {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
            for table in ("registered_models", "model_versions", "model_aliases")
        }
        indexes = {i["name"] for t in TABLES for i in inspector.get_indexes(t)}
    assert uniques == {
        "registered_models": {("name",)},
        "model_versions": {("model_id", "version")},
        "model_aliases": {("model_id", "alias")},
    }
    assert {
        "ix_model_approvals_model_id_version",
        "ix_model_deployments_model_id_target",
        "ix_model_events_model_id",
    } <= indexes


def test_an_alias_needs_its_model(migrated: Database) -> None:
    orphan = text(
        "INSERT INTO model_aliases (model_id, alias, version, updated_at, updated_by) "
        "VALUES (42, 'champion', 1, CURRENT_TIMESTAMP, 'x')"
    )

    def insert() -> None:
        with migrated.begin() as connection:
            connection.execute(orphan)

    with pytest.raises(IntegrityError):
        insert()


def test_downgrade_removes_the_tables(migrated: Database) -> None:
    config = alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    with migrated.begin(read_only=True) as connection:
        tables = set(inspect(connection).get_table_names())
    assert not tables & TABLES
    assert migrated.revision() == "0003"
    migrated.upgrade("0004")
    assert migrated.revision() == "0004"


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_the_offline_script_creates_every_table(dialect: str) -> None:
    script = upgrade_sql(dialect, start="0003")
    for table in TABLES:
        assert f"CREATE TABLE {table}" in script
    assert "UPDATE alembic_version SET version_num='0004'" in script
