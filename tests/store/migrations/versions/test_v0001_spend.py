"""Migration 0001: the spend table, its key and defaults, its query plan, and its downgrade."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from seawall.store import Database
from seawall.store.migrate import alembic_config


def test_the_spend_table_has_the_designed_columns_and_key(migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        inspector = inspect(connection)
        columns = {c["name"]: c for c in inspector.get_columns("spend")}
        primary_key = inspector.get_pk_constraint("spend")
    assert list(columns) == [
        "principal",
        "period",
        "model",
        "usd",
        "prompt_tokens",
        "completion_tokens",
        "requests",
        "updated_at",
    ]
    assert not any(c["nullable"] for c in columns.values())
    assert primary_key["constrained_columns"] == ["principal", "period", "model"]
    assert str(columns["usd"]["type"]) == "NUMERIC(20, 9)"
    assert str(columns["requests"]["type"]) == "BIGINT"


def test_amounts_default_to_zero(migrated: Database) -> None:
    with migrated.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO spend (principal, period, model, updated_at) "
                "VALUES ('k', '2026-11', 'm', CURRENT_TIMESTAMP)"
            )
        )
        row = connection.execute(
            text("SELECT usd, prompt_tokens, completion_tokens, requests FROM spend")
        ).one()
    assert tuple(row) == (0, 0, 0, 0)


def test_lookups_by_principal_and_period_use_the_primary_key(migrated: Database) -> None:
    query = "SELECT sum(usd) FROM spend WHERE principal = 'k' AND period = '2026-11'"
    with migrated.begin(read_only=True) as connection:
        if migrated.dialect == "sqlite":
            plan = " ".join(
                str(r[-1]) for r in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")
            )
            assert "USING INDEX sqlite_autoindex_spend_1 (principal=? AND period=?)" in plan
        else:
            # An empty table is scanned whatever indexes exist: ask whether the index can serve.
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(r[0] for r in connection.exec_driver_sql(f"EXPLAIN {query}"))
            assert "pk_spend" in plan


def test_downgrade_removes_the_table(migrated: Database) -> None:
    config = alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    with migrated.begin(read_only=True) as connection:
        assert not inspect(connection).has_table("spend")
    assert migrated.revision() is None
