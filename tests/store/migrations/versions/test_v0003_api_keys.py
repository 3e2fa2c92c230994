"""Migration 0003: the api_keys table, its unique indexes, the downgrade."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from seawall.store import Database
from seawall.store.migrate import alembic_config, upgrade_sql

_ROW = (
    "INSERT INTO api_keys (name, prefix, key_hash, roles, created_at, revoked_at, created_by) "
    "VALUES ('{name}', 'sw_abcde', '{digest}', '[\"consumer\"]', CURRENT_TIMESTAMP, {revoked}, "
    "'cli:test')"
)


def _insert(db: Database, name: str, digest: str, revoked: str = "NULL") -> None:
    with db.begin() as connection:
        connection.exec_driver_sql(_ROW.format(name=name, digest=digest, revoked=revoked))


def test_the_table_has_the_designed_columns_and_indexes(migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        inspector = inspect(connection)
        columns = {c["name"]: c for c in inspector.get_columns("api_keys")}
        indexes = {i["name"]: i for i in inspector.get_indexes("api_keys")}
        key = inspector.get_pk_constraint("api_keys")
    assert list(columns) == [
        "id",
        "name",
        "prefix",
        "key_hash",
        "roles",
        "models",
        "created_at",
        "expires_at",
        "revoked_at",
        "created_by",
    ]
    nullable = {name for name, c in columns.items() if c["nullable"]}
    assert nullable == {"models", "expires_at", "revoked_at"}
    assert (key["name"], key["constrained_columns"]) == ("pk_api_keys", ["id"])
    assert str(columns["key_hash"]["type"]) == "VARCHAR(64)"
    assert {name: (i["column_names"], bool(i["unique"])) for name, i in indexes.items()} == {
        "ix_api_keys_key_hash": (["key_hash"], True),
        "ix_api_keys_active_name": (["name"], True),
    }


def test_names_are_unique_among_keys_not_revoked(migrated: Database) -> None:
    _insert(migrated, "app", "a" * 64)
    with pytest.raises(IntegrityError):
        _insert(migrated, "app", "b" * 64)
    _insert(migrated, "app", "c" * 64, revoked="CURRENT_TIMESTAMP")  # revoked: the name is free
    _insert(migrated, "other", "d" * 64)
    with migrated.begin(read_only=True) as connection:
        count = connection.execute(text("SELECT count(*) FROM api_keys")).scalar()
    assert count == 3


def test_hashes_are_unique(migrated: Database) -> None:
    _insert(migrated, "app", "a" * 64)
    with pytest.raises(IntegrityError):
        _insert(migrated, "other", "a" * 64, revoked="CURRENT_TIMESTAMP")


def test_downgrade_removes_the_table(migrated: Database) -> None:
    config = alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    with migrated.begin(read_only=True) as connection:
        tables = set(inspect(connection).get_table_names())
    assert tables == {"alembic_version", "spend", "audit_log", "audit_head"}
    assert migrated.revision() == "0002"
    migrated.upgrade("0003")  # and back up again
    assert migrated.revision() == "0003"


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_the_offline_script_creates_the_table_and_the_partial_index(dialect: str) -> None:
    script = upgrade_sql(dialect, start="0002")
    assert "CREATE TABLE api_keys" in script
    assert (
        "CREATE UNIQUE INDEX ix_api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL"
        in script
    )
    assert "UPDATE alembic_version SET version_num='0003'" in script
