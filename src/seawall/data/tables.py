"""The data guard's tables (migration 0005): snapshots, their parents, ingestions, failures.

Only `seawall.data` reads or writes them. A snapshot's id is its content hash
(`canonical.content_id`), its rows a Parquet blob (`blob_digest`) in the blob store. An
ingestion is one batch read from a source, whatever became of it: accepted (a snapshot,
perhaps with quarantined rows) or rejected (every row quarantined, no snapshot). The database
itself refuses an ingestion whose counts do not balance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from seawall.store.schema import Base, UtcDateTime

__all__ = ["FailureRow", "IngestionRow", "ParentRow", "SnapshotRow"]


class SnapshotRow(Base):
    """An immutable dataset version: validated rows, where they came from, their profile."""

    __tablename__ = "data_snapshots"
    __table_args__ = (Index("ix_data_snapshots_dataset", "dataset"),)

    #: sha256 of the content (seawall-snapshot-v1), 64 hex digits.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(128))
    contract_name: Mapped[str] = mapped_column(String(128))
    contract_version: Mapped[str] = mapped_column(String(64))
    #: sha256 of the parsed contract that validated it.
    contract_digest: Mapped[str] = mapped_column(String(64))
    #: What was read: kind, path or URL and query, the file's sha256 and size.
    source: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: What made it from its parents ("ingest" for a batch read from a source).
    transform: Mapped[str] = mapped_column(Text)
    #: [[name, dtype], ...] in order.
    columns: Mapped[list[Any]] = mapped_column(JSON)
    rows: Mapped[int] = mapped_column(BigInteger)
    #: The counts of the ingestion that created it.
    rows_in: Mapped[int] = mapped_column(BigInteger)
    rows_quarantined: Mapped[int] = mapped_column(BigInteger)
    #: sha256 of the Parquet blob; its size in bytes.
    blob_digest: Mapped[str] = mapped_column(String(64))
    blob_bytes: Mapped[int] = mapped_column(BigInteger)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(Text)


class ParentRow(Base):
    """`snapshot_id` was made from `parent_id` (the `position`-th of its parents)."""

    __tablename__ = "data_snapshot_parents"

    snapshot_id: Mapped[str] = mapped_column(ForeignKey("data_snapshots.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    parent_id: Mapped[str] = mapped_column(ForeignKey("data_snapshots.id"))


class IngestionRow(Base):
    """One batch read from a source, and what became of it."""

    __tablename__ = "data_ingestions"
    __table_args__ = (
        CheckConstraint("rows_in = rows_accepted + rows_quarantined", name="counts_balance"),
        CheckConstraint("status IN ('accepted', 'rejected')", name="status_known"),
        Index("ix_data_ingestions_dataset", "dataset"),
        Index("ix_data_ingestions_snapshot_id", "snapshot_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(128))
    contract_name: Mapped[str] = mapped_column(String(128))
    contract_version: Mapped[str] = mapped_column(String(64))
    contract_digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: "accepted" (a snapshot was made or found) or "rejected" (the whole batch quarantined).
    status: Mapped[str] = mapped_column(String(16))
    #: Why the batch was rejected (None: accepted).
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    rows_in: Mapped[int] = mapped_column(BigInteger)
    rows_accepted: Mapped[int] = mapped_column(BigInteger)
    rows_quarantined: Mapped[int] = mapped_column(BigInteger)
    snapshot_id: Mapped[str | None] = mapped_column(ForeignKey("data_snapshots.id"), nullable=True)
    #: sha256 of the Parquet blob of the quarantined rows, as read (None: none quarantined).
    quarantine_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Failures found; `data_failures` keeps the first ones (the blob has every row's reasons).
    failure_count: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(Text)


class FailureRow(Base):
    """One rule one row broke (`row` None: a rule the whole batch broke)."""

    __tablename__ = "data_failures"
    __table_args__ = (Index("ix_data_failures_ingestion_id", "ingestion_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ingestion_id: Mapped[int] = mapped_column(ForeignKey("data_ingestions.id"))
    #: 0-based position of the row in the batch (a CSV file's line is row + 2).
    row: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    column_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: dtype, nullable, min, max, allowed, regex, unique, check:<name>; or a batch rule.
    check_name: Mapped[str] = mapped_column(String(80))
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
