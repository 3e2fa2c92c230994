"""The data guard's tables are on the shared metadata, with the rules the data guard relies on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import CheckConstraint, insert
from sqlalchemy.exc import IntegrityError

from seawall.data import tables
from seawall.store import Base, Database

ROWS = (tables.SnapshotRow, tables.ParentRow, tables.IngestionRow, tables.FailureRow)


def test_every_table_is_on_the_shared_metadata() -> None:
    for row in ROWS:
        assert Base.metadata.tables[row.__tablename__] is row.__table__


def test_the_counts_must_balance_and_the_status_be_known() -> None:
    checks = {
        constraint.name: str(constraint.sqltext)
        for constraint in tables.IngestionRow.__table__.constraints
        if isinstance(constraint, CheckConstraint)
    }

    assert checks == {
        "ck_data_ingestions_counts_balance": "rows_in = rows_accepted + rows_quarantined",
        "ck_data_ingestions_status_known": "status IN ('accepted', 'rejected')",
    }


def test_a_snapshot_is_keyed_by_its_content_hash_and_parents_by_position() -> None:
    assert [c.name for c in tables.SnapshotRow.__table__.primary_key] == ["id"]
    assert [c.name for c in tables.ParentRow.__table__.primary_key] == ["snapshot_id", "position"]


def test_an_unbalanced_ingestion_is_refused_by_the_database(migrated: Database) -> None:
    row = {
        "dataset": "iris",
        "contract_name": "iris",
        "contract_version": "1",
        "contract_digest": "0" * 64,
        "source": {"kind": "csv"},
        "status": "accepted",
        "rows_in": 150,
        "rows_accepted": 149,
        "rows_quarantined": 0,
        "failure_count": 0,
        "created_at": datetime(2026, 11, 26, tzinfo=UTC),
        "created_by": "me",
    }

    with pytest.raises(IntegrityError, match="counts_balance"), migrated.begin() as connection:
        connection.execute(insert(tables.IngestionRow).values(**row))
    with migrated.begin() as connection:
        connection.execute(insert(tables.IngestionRow).values(**{**row, "rows_quarantined": 1}))
