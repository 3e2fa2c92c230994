"""`Quarantine`: the rows a contract refused, kept as read, with the reason per row and check.

Each ingestion that quarantined rows (the invalid rows of an accepted batch, or every row of a
rejected one) stores them as one Parquet blob: the source's columns as text (exactly as a CSV
file had them; a typed value written the way it reads back), plus `_seawall_row` (the row's
0-based position in the batch) and `_seawall_reasons` (every rule it broke). The database keeps
the failures row by row (`data_failures`, the first `max_failure_rows` of them).

To fix and re-ingest: `export` the rows (without the two extra columns they are a batch the
same contract reads), correct them, and ingest the file again; it is just another ingestion.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Connection, select

from seawall.clock import Clock, SystemClock
from seawall.data.canonical import from_parquet, to_parquet
from seawall.data.records import FailureRecord, IngestionRecord
from seawall.data.snapshots import read_blob
from seawall.data.tables import FailureRow, IngestionRow
from seawall.data.validation import Verdict
from seawall.errors import InvalidInputError, NotFoundError
from seawall.store.audit import AuditLog
from seawall.store.blobs import BlobStore
from seawall.store.engine import Database

__all__ = [
    "REASONS_COLUMN",
    "ROW_COLUMN",
    "Quarantine",
    "ingestion_record",
    "quarantine_frame",
    "quarantine_parquet",
]

#: The quarantined row's 0-based position in its batch.
ROW_COLUMN = "_seawall_row"
#: Every rule the row broke, `column: reason; ...` (empty: only its batch was refused).
REASONS_COLUMN = "_seawall_reasons"
MAX_LIST = 10_000
T = TypeVar("T")


def quarantine_frame(raw: pd.DataFrame, verdict: Verdict) -> pd.DataFrame:
    """The rows of `raw` that `verdict` quarantines, as text, with their row and reasons."""
    rows = verdict.quarantined.nonzero()[0]
    taken = raw.reset_index(drop=True).iloc[rows]
    out = pd.DataFrame({str(name): _as_text(taken[name]) for name in taken.columns})
    out[ROW_COLUMN] = rows
    failures = verdict.failures
    text = failures["reason"].where(
        failures["column"].isna(), failures["column"].astype(str) + ": " + failures["reason"]
    )
    reasons = text.groupby(failures["row"].to_numpy()).agg("; ".join)
    out[REASONS_COLUMN] = [reasons.get(row) for row in rows]
    return out.reset_index(drop=True)


def quarantine_parquet(frame: pd.DataFrame) -> bytes:
    """Quarantined rows as Parquet: text columns, and the row number if present."""
    columns = {name: "int" if name == ROW_COLUMN else "string" for name in frame.columns}
    return to_parquet(frame, columns, {"format": "seawall-quarantine-v1"})


def _as_text(series: pd.Series) -> list[str | None]:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return [None if pd.isna(v) else v.isoformat() for v in series]
    return [_text(v) for v in series.astype(object)]


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        return value
    return value.isoformat() if isinstance(value, pd.Timestamp) else str(value)


class Quarantine:
    """Ingestions, their failures and their quarantined rows; every method is async."""

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

    async def ingestions(
        self, *, dataset: str | None = None, quarantined_only: bool = False, limit: int = 100
    ) -> list[IngestionRecord]:
        """The newest `limit` ingestions (of `dataset`; with quarantined rows), newest first."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInputError("limit", f"1 to {MAX_LIST}, got {limit}")
        query = select(IngestionRow).order_by(IngestionRow.id.desc()).limit(limit)
        if dataset is not None:
            query = query.where(IngestionRow.dataset == dataset)
        if quarantined_only:
            query = query.where(IngestionRow.rows_quarantined > 0)
        return await self._read(lambda c: [ingestion_record(r) for r in c.execute(query)])

    async def get(self, ingestion_id: int) -> IngestionRecord:
        return await self._read(lambda c: _ingestion(c, ingestion_id))

    async def failures(self, ingestion_id: int, *, limit: int = 1000) -> list[FailureRecord]:
        """The rules its rows (and the batch) broke, by row; batch rules first."""
        if not 1 <= limit <= MAX_LIST:
            raise InvalidInputError("limit", f"1 to {MAX_LIST}, got {limit}")
        return await self._read(lambda c: _failures(c, ingestion_id, limit))

    async def read(self, ingestion_id: int, *, actor: str, reasons: bool = False) -> pd.DataFrame:
        """The quarantined rows, as text (with row and reasons if asked); audited as `data.read`."""
        record = await self.get(ingestion_id)
        if record.quarantine_digest is None:
            raise NotFoundError(f"ingestion {ingestion_id}: quarantined no rows")
        data = await asyncio.to_thread(
            read_blob, self.blobs, record.quarantine_digest, f"ingestion {ingestion_id}"
        )
        frame, _ = from_parquet(data)
        if not reasons:
            frame = frame.drop(columns=[ROW_COLUMN, REASONS_COLUMN])
        details = {"dataset": record.dataset, "rows": len(frame), "quarantine": True}
        await self._audit.append(actor, "data.read", f"ingestion:{ingestion_id}", details)
        return frame

    async def export(
        self, ingestion_id: int, path: str | Path, *, actor: str, reasons: bool = False
    ) -> int:
        """Write the quarantined rows to `path` (.csv or .parquet), whole or not at all."""
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix not in (".csv", ".parquet", ".pq"):
            raise InvalidInputError("out", f"a .csv or .parquet file, got {target.name!r}")
        frame = await self.read(ingestion_id, actor=actor, reasons=reasons)

        def write(tmp: Path) -> None:
            if suffix == ".csv":
                frame.to_csv(tmp, index=False)
            else:
                tmp.write_bytes(quarantine_parquet(frame))

        await asyncio.to_thread(_atomic_write, target, write)
        return len(frame)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.database.begin(read_only=True) as connection:
                return fn(connection)

        return await self.database.run(run)


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ingestion_record(row: Any) -> IngestionRecord:
    """The record of a `data_ingestions` row."""
    return IngestionRecord(
        id=row.id,
        dataset=row.dataset,
        contract_name=row.contract_name,
        contract_version=row.contract_version,
        contract_digest=row.contract_digest,
        source=dict(row.source),
        status=row.status,
        reason=row.reason,
        rows_in=row.rows_in,
        rows_accepted=row.rows_accepted,
        rows_quarantined=row.rows_quarantined,
        snapshot_id=row.snapshot_id,
        quarantine_digest=row.quarantine_digest,
        failure_count=row.failure_count,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _ingestion(connection: Connection, ingestion_id: int) -> IngestionRecord:
    row = connection.execute(select(IngestionRow).where(IngestionRow.id == ingestion_id)).first()
    if row is None:
        raise NotFoundError(f"ingestion {ingestion_id}: no such ingestion")
    return ingestion_record(row)


def _failures(connection: Connection, ingestion_id: int, limit: int) -> list[FailureRecord]:
    _ingestion(connection, ingestion_id)
    rows = connection.execute(
        select(FailureRow)
        .where(FailureRow.ingestion_id == ingestion_id)
        .order_by(FailureRow.row.is_not(None), FailureRow.row, FailureRow.id)
        .limit(limit)
    )
    return [
        FailureRecord(ingestion_id, r.row, r.column_name, r.check_name, r.value, r.reason)
        for r in rows
    ]
