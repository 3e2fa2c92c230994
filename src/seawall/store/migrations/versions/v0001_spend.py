"""LLM spend per API key, period and model: the `spend` table.

Revision ID: 0001
Revises: (none)

One row per (principal, period, model), incremented in place by an UPSERT. The primary key's
index also serves lookups by (principal, period), its leading columns, so there is no second
index on them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "spend",
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("usd", sa.Numeric(20, 9), nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("requests", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "period", "model", name="pk_spend"),
    )


def downgrade() -> None:
    op.drop_table("spend")
