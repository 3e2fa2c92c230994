"""The monitors: drift reports per model version and window.

Revision ID: 0006
Revises: 0005

`drift_reports` holds one row per served model version and closed window: the calls seen and
sampled, the verdict and score, the reference it was compared with, and the whole report
(every feature's statistics) as JSON. One row per window and gateway (a unique constraint), so
a retried save stores nothing twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("window_start", _AT, nullable=False),
        sa.Column("window_end", _AT, nullable=False),
        sa.Column("offered", sa.BigInteger(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("drifting", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_reports"),
        sa.UniqueConstraint(
            "model", "version", "window_start", "created_by", name="uq_drift_reports_window"
        ),
    )
    op.create_index(
        "ix_drift_reports_model_version_window",
        "drift_reports",
        ["model", "version", "window_end"],
    )
    op.create_index("ix_drift_reports_window_end", "drift_reports", ["window_end"])


def downgrade() -> None:
    op.drop_index("ix_drift_reports_window_end", table_name="drift_reports")
    op.drop_index("ix_drift_reports_model_version_window", table_name="drift_reports")
    op.drop_table("drift_reports")
