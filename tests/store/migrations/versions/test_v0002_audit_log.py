"""Migration 0002: the audit tables, the genesis head, the append-only guards, the downgrade."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from seawall.store import AuditLog, Database
from seawall.store.audit_chain import GENESIS_HASH
from seawall.store.migrate import alembic_config, upgrade_sql


def test_the_audit_tables_have_the_designed_columns_and_keys(migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        inspector = inspect(connection)
        log = {c["name"]: c for c in inspector.get_columns("audit_log")}
        head = {c["name"]: c for c in inspector.get_columns("audit_head")}
        keys = [inspector.get_pk_constraint(t) for t in ("audit_log", "audit_head")]
    assert list(log) == [
        "seq",
        "at",
        "actor",
        "action",
        "target",
        "details",
        "prev_hash",
        "hash",
    ]
    assert list(head) == ["id", "seq", "hash"]
    assert not any(c["nullable"] for c in [*log.values(), *head.values()])
    assert [(k["name"], k["constrained_columns"]) for k in keys] == [
        ("pk_audit_log", ["seq"]),
        ("pk_audit_head", ["id"]),
    ]
    assert str(log["seq"]["type"]) == "BIGINT"
    assert str(log["hash"]["type"]) == "VARCHAR(64)"


def test_the_head_starts_at_genesis(migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        rows = connection.execute(text("SELECT id, seq, hash FROM audit_head")).all()
    assert [tuple(r) for r in rows] == [(1, 0, GENESIS_HASH)]


async def test_records_cannot_be_updated_or_deleted(migrated: Database) -> None:
    await AuditLog(migrated).append("alice", "model.promote", "iris@3")
    statements = [
        "UPDATE audit_log SET actor = 'mallory'",
        "UPDATE audit_log SET seq = 5",
        "DELETE FROM audit_log",
        "DELETE FROM audit_head",
    ]
    if migrated.dialect == "postgresql":
        statements += ["TRUNCATE audit_log", "TRUNCATE audit_head"]
    for statement in statements:
        with pytest.raises(IntegrityError, match="is append-only"), migrated.begin() as c:
            c.exec_driver_sql(statement)
    assert [r.actor for r in await AuditLog(migrated).records()] == ["alice"]


async def test_the_head_moves_only_to_the_record_just_appended(migrated: Database) -> None:
    record = await AuditLog(migrated).append("alice", "model.promote", "iris@3")
    with migrated.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO audit_log VALUES (2, CURRENT_TIMESTAMP, 'm', 'a.b', '', '{}', "
            f"'{record.hash}', '{'e' * 64}')"
        )
    moves = [
        "UPDATE audit_head SET seq = 3",  # a jump
        "UPDATE audit_head SET seq = 0",  # backwards
        f"UPDATE audit_head SET seq = 2, hash = '{'f' * 64}'",  # a hash no record has
        "UPDATE audit_head SET id = 2",
    ]
    for move in moves:
        refused = pytest.raises(IntegrityError, match="only moves to the record just appended")
        with refused, migrated.begin() as connection:
            connection.exec_driver_sql(move)
    with migrated.begin() as connection:  # one step, to a record that exists with that hash
        connection.exec_driver_sql(f"UPDATE audit_head SET seq = 2, hash = '{'e' * 64}'")


def test_seq_is_unique_and_positive(migrated: Database) -> None:
    row = "CURRENT_TIMESTAMP, 'a', 'a.b', '', '{}', 'p', 'h'"
    with migrated.begin() as connection:
        connection.exec_driver_sql(f"INSERT INTO audit_log VALUES (1, {row})")
    for seq in (1, 0):
        with pytest.raises(IntegrityError), migrated.begin() as connection:
            connection.exec_driver_sql(f"INSERT INTO audit_log VALUES ({seq}, {row})")


def test_downgrade_removes_the_tables_and_the_functions(migrated: Database) -> None:
    config = alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    with migrated.begin(read_only=True) as connection:
        tables = set(inspect(connection).get_table_names())
        if migrated.dialect == "postgresql":
            functions = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_proc "
                "WHERE proname IN ('audit_log_refuse_change', 'audit_head_forward_only') "
                "AND pronamespace = current_schema()::regnamespace"
            ).scalar()
            assert functions == 0
    assert tables == {"alembic_version", "spend"}
    assert migrated.revision() == "0001"
    migrated.upgrade("0002")  # and back up again
    assert migrated.revision() == "0002"


@pytest.mark.parametrize(
    ("dialect", "guard"),
    [
        ("postgresql", "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"),
        ("sqlite", "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"),
    ],
)
def test_the_offline_script_creates_the_tables_the_head_and_the_guards(
    dialect: str, guard: str
) -> None:
    script = upgrade_sql(dialect, start="0001")
    assert "CREATE TABLE audit_log" in script
    assert f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')" in script
    assert guard in script
    assert "UPDATE alembic_version SET version_num='0002'" in script
