"""The data guard: dataset snapshots, their parents, ingestions and their failures.

Revision ID: 0005
Revises: 0004

`data_snapshots` holds one row per snapshot, keyed by its content hash: dataset, contract
(name, version, digest), source, transform, columns, row counts, the Parquet blob's digest and
size, and the statistical profile. `data_snapshot_parents` lists the snapshots each was made
from. `data_ingestions` records every batch read, accepted or rejected, with counts that a
CHECK constraint keeps balanced (rows in = accepted + quarantined) and the digest of the
quarantined rows' blob; `data_failures` holds which row broke which rule, and why.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "data_snapshots",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("contract_name", sa.String(128), nullable=False),
        sa.Column("contract_version", sa.String(64), nullable=False),
        sa.Column("contract_digest", sa.String(64), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("transform", sa.Text(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("rows_in", sa.BigInteger(), nullable=False),
        sa.Column("rows_quarantined", sa.BigInteger(), nullable=False),
        sa.Column("blob_digest", sa.String(64), nullable=False),
        sa.Column("blob_bytes", sa.BigInteger(), nullable=False),
        sa.Column("profile", sa.JSON(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_data_snapshots"),
    )
    op.create_index("ix_data_snapshots_dataset", "data_snapshots", ["dataset"])
    op.create_table(
        "data_snapshot_parents",
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["data_snapshots.id"],
            name="fk_data_snapshot_parents_snapshot_id_data_snapshots",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["data_snapshots.id"],
            name="fk_data_snapshot_parents_parent_id_data_snapshots",
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "position", name="pk_data_snapshot_parents"),
    )
    op.create_table(
        "data_ingestions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("contract_name", sa.String(128), nullable=False),
        sa.Column("contract_version", sa.String(64), nullable=False),
        sa.Column("contract_digest", sa.String(64), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("rows_in", sa.BigInteger(), nullable=False),
        sa.Column("rows_accepted", sa.BigInteger(), nullable=False),
        sa.Column("rows_quarantined", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_id", sa.String(64), nullable=True),
        sa.Column("quarantine_digest", sa.String(64), nullable=True),
        sa.Column("failure_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "rows_in = rows_accepted + rows_quarantined",
            name="ck_data_ingestions_counts_balance",
        ),
        sa.CheckConstraint(
            "status IN ('accepted', 'rejected')", name="ck_data_ingestions_status_known"
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["data_snapshots.id"],
            name="fk_data_ingestions_snapshot_id_data_snapshots",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_data_ingestions"),
    )
    op.create_index("ix_data_ingestions_dataset", "data_ingestions", ["dataset"])
    op.create_index("ix_data_ingestions_snapshot_id", "data_ingestions", ["snapshot_id"])
    op.create_table(
        "data_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ingestion_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.BigInteger(), nullable=True),
        sa.Column("column_name", sa.Text(), nullable=True),
        sa.Column("check_name", sa.String(80), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ingestion_id"],
            ["data_ingestions.id"],
            name="fk_data_failures_ingestion_id_data_ingestions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_data_failures"),
    )
    op.create_index("ix_data_failures_ingestion_id", "data_failures", ["ingestion_id"])


def downgrade() -> None:
    op.drop_index("ix_data_failures_ingestion_id", table_name="data_failures")
    op.drop_table("data_failures")
    op.drop_index("ix_data_ingestions_snapshot_id", table_name="data_ingestions")
    op.drop_index("ix_data_ingestions_dataset", table_name="data_ingestions")
    op.drop_table("data_ingestions")
    op.drop_table("data_snapshot_parents")
    op.drop_index("ix_data_snapshots_dataset", table_name="data_snapshots")
    op.drop_table("data_snapshots")
