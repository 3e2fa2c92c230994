"""The hash-chained audit log: the `audit_log` and `audit_head` tables and their guards.

Revision ID: 0002
Revises: 0001

`audit_log` holds the records, keyed by `seq`; `audit_head` has one row, the last record's seq
and hash (0 and the genesis hash to start with), which appends lock and move.

Triggers, on both databases, refuse UPDATE and DELETE on `audit_log` (TRUNCATE too on
PostgreSQL), refuse deleting the head, and let the head move only one step, to a record that
exists with that hash. They guard against mistakes; an owner of the database can drop them,
which the hash chain then reveals. A later migration that rebuilds either table (SQLite's
batch mode copies it) must create its triggers again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# The prev_hash of the first record (seawall.store.audit_chain.GENESIS_HASH, as of this revision).
_GENESIS_HASH = "0" * 64

_POSTGRES_GUARDS = [
    """
    CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING
            MESSAGE = TG_TABLE_NAME || ' is append-only: ' || TG_OP || ' refused',
            ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE FUNCTION audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.id <> OLD.id OR NEW.seq <> OLD.seq + 1 OR NOT EXISTS (
            SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash
        ) THEN
            RAISE EXCEPTION USING
                MESSAGE = 'audit_head only moves to the record just appended',
                ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()",
    "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()",
    "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()",
    "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head "
    "FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only()",
]

_SQLITE_GUARDS = [
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END
    """,
    """
    CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    BEGIN SELECT RAISE(ABORT, 'audit_head is append-only: DELETE refused'); END
    """,
    """
    CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
    WHEN NEW.id <> OLD.id OR NEW.seq <> OLD.seq + 1 OR NOT EXISTS (
        SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash
    )
    BEGIN SELECT RAISE(ABORT, 'audit_head only moves to the record just appended'); END
    """,
]


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
        sa.CheckConstraint("seq >= 1", name="ck_audit_log_seq_positive"),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_head_one_row"),
    )
    op.execute(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{_GENESIS_HASH}')")
    postgres = op.get_context().dialect.name == "postgresql"
    for statement in _POSTGRES_GUARDS if postgres else _SQLITE_GUARDS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_log")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_head_forward_only()")
        op.execute("DROP FUNCTION audit_log_refuse_change()")
