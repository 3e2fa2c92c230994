"""`SnapshotStore`: dataset snapshots, immutable: metadata in the database, rows in the blob store.

A snapshot is written once, by `Ingestor`, and never changed: its Parquet blob is put in the
content-addressed blob store (durable before anything points at it), then its row is
committed together with its ingestion and audit records. So a crash at any point leaves either
no snapshot or a whole one, and at worst an unreferenced blob. Reading the rows checks the
blob's sha256 and then the content hash the snapshot is named by, and appends a `data.read`
audit record before the rows are handed out.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Connection, select

from seawall.clock import Clock, SystemClock
from seawall.data.canonical import content_id, from_parquet
from seawall.data.errors import SnapshotCorruptError
from seawall.data.records import SnapshotRecord
from seawall.data.tables import IngestionRow, ParentRow, SnapshotRow
from seawall.errors import InvalidInputError, NotFoundError
from seawall.store.audit import AuditLog
from seawall.store.blobs import BlobNotFoundError, BlobStore
from seawall.store.engine import Database

__all__ = ["MIN_PREFIX", "SnapshotStore", "read_blob", "snapshot_record"]

#: Shortest id prefix that names a snapshot (as git's short hashes).
MIN_PREFIX = 6
#: Most snapshots `list_snapshots` returns at once.
MAX_LIST = 10_000

_PREFIX = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},64}}")
T = TypeVar("T")


class SnapshotStore:
    """The snapshots in `database`, with their rows in `blobs`; every method is async."""

    def __init__(
        self,
        database: Database,
        blobs: BlobStore,
        *,
        clock: Clock | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.database = database
        self.blobs = blobs
        self._audit = audit or AuditLog(database, clock=clock or SystemClock())

    async def get(self, ref: str) -> SnapshotRecord:
        """The snapshot whose id is `ref`, or starts with it (at least 6 hex digits)."""
        return await self._read(lambda c: self._get(c, ref))

    async def list_snapshots(
        self, *, dataset: str | None = None, limit: int = 100
    ) -> list[SnapshotRecord]:
        """The newest `limit` snapshots (of `dataset`), newest first."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInputError("limit", f"1 to {MAX_LIST}, got {limit}")
        query = select(SnapshotRow).order_by(SnapshotRow.created_at.desc(), SnapshotRow.id)
        if dataset is not None:
            query = query.where(SnapshotRow.dataset == dataset)
        return await self._read(
            lambda c: [snapshot_record(c, row) for row in c.execute(query.limit(limit))]
        )

    async def lineage(self, ref: str) -> list[SnapshotRecord]:
        """The snapshot, then the snapshots it was made from, and theirs (each once)."""
        return await self._read(lambda c: self._lineage(c, ref))

    async def read(self, ref: str, *, actor: str) -> pd.DataFrame:
        """The snapshot's rows, checked against both digests; audited as `data.read`."""
        record = await self.get(ref)
        frame = await asyncio.to_thread(self._load, record)
        details = {"dataset": record.dataset, "rows": len(frame)}
        await self._audit.append(actor, "data.read", f"snapshot:{record.id}", details)
        return frame

    async def check(self) -> list[str]:
        """Every snapshot's and quarantine's blob present and intact? The problems found."""
        snapshots, quarantines = await self._read(_blob_references)
        return await asyncio.to_thread(self._check, snapshots, quarantines)

    # ============================================================ internals

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.database.begin(read_only=True) as connection:
                return fn(connection)

        return await self.database.run(run)

    def _get(self, connection: Connection, ref: str) -> SnapshotRecord:
        if not isinstance(ref, str) or not _PREFIX.fullmatch(ref):
            raise InvalidInputError(
                "snapshot", f"{MIN_PREFIX} to 64 lower-case hex digits of its id, got {ref!r}"
            )
        query = select(SnapshotRow).where(SnapshotRow.id.startswith(ref, autoescape=True))
        rows = connection.execute(query.limit(2)).all()
        if not rows:
            raise NotFoundError(f"snapshot {ref}: no such snapshot")
        if len(rows) > 1:
            raise InvalidInputError("snapshot", f"{ref!r} is the start of several ids: give more")
        return snapshot_record(connection, rows[0])

    def _lineage(self, connection: Connection, ref: str) -> list[SnapshotRecord]:
        chain = [self._get(connection, ref)]
        seen = {chain[0].id}
        for record in chain:  # grows while it is walked: breadth first
            for parent in record.parents:
                if parent not in seen:
                    seen.add(parent)
                    chain.append(self._get(connection, parent))
        return chain

    def _load(self, record: SnapshotRecord) -> pd.DataFrame:
        data = read_blob(self.blobs, record.blob_digest, f"snapshot {record.id}")
        frame, _ = from_parquet(data)
        if list(frame.columns) != list(record.columns):
            raise SnapshotCorruptError(f"snapshot {record.id}: its file has other columns")
        if content_id(frame, record.columns, record.lineage) != record.id:
            raise SnapshotCorruptError(f"snapshot {record.id}: its rows do not hash to its id")
        return frame

    def _check(
        self, snapshots: list[tuple[str, str]], quarantines: list[tuple[int, str]]
    ) -> list[str]:
        problems = []
        wanted = [(f"snapshot {i}", d) for i, d in snapshots]
        wanted += [(f"ingestion {i} (quarantine)", d) for i, d in quarantines]
        for what, digest in wanted:
            if not self.blobs.has(digest):
                problems.append(f"{what}: blob {digest} is missing from {self.blobs.root}")
            elif not self.blobs.verify(digest):
                problems.append(f"{what}: blob {digest} does not hash to its name")
        return problems


def read_blob(blobs: BlobStore, digest: str, what: str) -> bytes:
    """A blob's bytes, hashed as read: `SnapshotCorruptError` if missing or altered."""
    try:
        with blobs.open(digest) as stream:
            data = stream.read()
    except BlobNotFoundError:
        raise SnapshotCorruptError(f"{what}: blob {digest} is missing from {blobs.root}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise SnapshotCorruptError(f"{what}: blob {digest} does not hash to its name")
    return data


def snapshot_record(connection: Connection, row: Any) -> SnapshotRecord:
    """The record of a `data_snapshots` row, with its parents."""
    parents = connection.execute(
        select(ParentRow.parent_id)
        .where(ParentRow.snapshot_id == row.id)
        .order_by(ParentRow.position)
    ).scalars()
    return SnapshotRecord(
        id=row.id,
        dataset=row.dataset,
        contract_name=row.contract_name,
        contract_version=row.contract_version,
        contract_digest=row.contract_digest,
        source=dict(row.source),
        transform=row.transform,
        columns=dict(row.columns),
        rows=row.rows,
        rows_in=row.rows_in,
        rows_quarantined=row.rows_quarantined,
        blob_digest=row.blob_digest,
        blob_bytes=row.blob_bytes,
        profile=dict(row.profile),
        created_at=row.created_at,
        created_by=row.created_by,
        parents=tuple(parents),
    )


def _blob_references(connection: Connection) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
    snapshots = connection.execute(select(SnapshotRow.id, SnapshotRow.blob_digest)).all()
    quarantines = connection.execute(
        select(IngestionRow.id, IngestionRow.quarantine_digest).where(
            IngestionRow.quarantine_digest.is_not(None)
        )
    ).all()
    return [(i, d) for i, d in snapshots], [(i, d) for i, d in quarantines if d is not None]
