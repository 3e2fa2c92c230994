"""`Ingestor`: a batch from a source, checked against its contract, stored as a snapshot.

One ingestion, in order:

1. read the source, retrying a transient failure (`SourceUnavailableError`) with exponential
   backoff on the injected clock; a permanent one (`SourceError`) is raised at once, and so is
   the last transient one when the attempts run out. Nothing is recorded: there was no batch;
2. plan it (`plan.make_plan`): validate, hash, encode, profile, gather the quarantine;
3. put the snapshot's and the quarantine's Parquet blobs in the blob store (durable);
4. in one transaction: the snapshot row (unless the same content was ingested before: same id,
   nothing new), its parents, the ingestion row, its failures, and the audit records
   `data.snapshot`, `data.quarantine` (rows were quarantined), `data.reject` (the batch was).

Rows in = accepted + quarantined, checked in the plan, again before the commit, and by the
database's CHECK constraint. A crash before step 4 commits leaves at most unreferenced blobs.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from seawall.clock import Clock, SystemClock
from seawall.data.contract import Contract
from seawall.data.errors import SourceUnavailableError
from seawall.data.plan import Plan, check_balance, make_plan
from seawall.data.quarantine import ingestion_record
from seawall.data.records import IngestionRecord, SnapshotRecord
from seawall.data.snapshots import snapshot_record
from seawall.data.sources import DEFAULT_MAX_BYTES, Batch, Source
from seawall.data.tables import FailureRow, IngestionRow, ParentRow, SnapshotRow
from seawall.data.validation import Validator
from seawall.errors import InvalidInputError, NotFoundError
from seawall.store.audit import AuditLog
from seawall.store.blobs import BlobStore, is_digest
from seawall.store.engine import Database

__all__ = ["IngestOptions", "IngestResult", "Ingestor", "SourceRetried"]

DATASET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_DATASET = re.compile(DATASET_PATTERN)
# Longest text of a source's query or a rejection's reason kept in an audit record.
_AUDIT_TEXT = 2000


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """Limits and retries of an `Ingestor`."""

    #: Largest source (a file's bytes, a query result's memory) read.
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Reads of a source that fails transiently, the first included.
    attempts: int = 4
    #: Wait before the second attempt; each next wait is `backoff_multiplier` times longer...
    backoff_initial_s: float = 0.5
    backoff_multiplier: float = 2.0
    #: ...up to this.
    backoff_max_s: float = 30.0
    #: Failures kept row by row in the database per ingestion (the blob keeps every reason).
    max_failure_rows: int = 10_000

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes: at least 1, got {self.max_bytes}")
        if self.attempts < 1:
            raise ValueError(f"attempts: at least 1, got {self.attempts}")
        for name in ("backoff_initial_s", "backoff_max_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: seconds >= 0, got {value}")
        if not (math.isfinite(self.backoff_multiplier) and self.backoff_multiplier >= 1):
            raise ValueError(f"backoff_multiplier: >= 1, got {self.backoff_multiplier}")
        if self.max_failure_rows < 0:
            raise ValueError(f"max_failure_rows: >= 0, got {self.max_failure_rows}")

    def delay_s(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        delay = self.backoff_initial_s * self.backoff_multiplier ** (attempt - 1)
        return float(min(self.backoff_max_s, delay))


@dataclass(frozen=True, slots=True)
class SourceRetried:
    """A read failed transiently; the next attempt follows after `delay_s`."""

    source: dict[str, Any]
    attempt: int
    delay_s: float
    error: str


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingestion did."""

    ingestion: IngestionRecord
    #: The snapshot (None: the batch was rejected).
    snapshot: SnapshotRecord | None
    #: True if this ingestion made the snapshot; False if the same content was there already.
    created: bool

    @property
    def accepted(self) -> bool:
        return self.ingestion.accepted


class Ingestor:
    """Ingests batches into `database` (metadata) and `blobs` (rows); every method is async."""

    def __init__(
        self,
        database: Database,
        blobs: BlobStore,
        *,
        clock: Clock | None = None,
        audit: AuditLog | None = None,
        options: IngestOptions | None = None,
        on_event: Callable[[SourceRetried], None] | None = None,
    ) -> None:
        self.database = database
        self.blobs = blobs
        self.options = options or IngestOptions()
        self._clock = clock or SystemClock()
        self._audit = audit or AuditLog(database, clock=self._clock)
        self._on_event = on_event

    async def ingest(
        self,
        contract: Contract | Validator,
        source: Source,
        *,
        actor: str,
        dataset: str | None = None,
        parents: Sequence[str] = (),
        transform: str = "ingest",
    ) -> IngestResult:
        """Read `source`, check it against `contract`, store what passes; see the module doc.

        `dataset` defaults to the contract's name. `parents`: ids of the snapshots the batch
        was made from, `transform`: how (both part of the snapshot's id).
        """
        validator = contract if isinstance(contract, Validator) else Validator(contract)
        name = validator.contract.name if dataset is None else dataset
        if not _DATASET.fullmatch(name):
            raise InvalidInputError("dataset", f"{name!r} does not match {DATASET_PATTERN}")
        if not actor:
            raise InvalidInputError("actor", "who ingests (cli:<user>, a key's name)")
        if not transform or len(transform) > 1000:
            raise InvalidInputError("transform", "1 to 1000 characters")
        await self._check_parents(parents)
        batch = await self._read(source, validator.contract.null_values)
        plan = await asyncio.to_thread(
            make_plan,
            validator,
            batch,
            dataset=name,
            parents=parents,
            transform=transform,
            now_s=self._clock.time(),
        )
        digests = await asyncio.to_thread(self._put, plan)
        try:
            return await self.database.run(self._commit, plan, digests, actor)
        except IntegrityError:  # another process stored the same snapshot meanwhile
            return await self.database.run(self._commit, plan, digests, actor)

    async def _check_parents(self, parents: Sequence[str]) -> None:
        for parent in parents:
            if not is_digest(parent):
                raise InvalidInputError("parents", f"{parent!r} is not a snapshot id")
        if len(set(parents)) != len(parents):
            raise InvalidInputError("parents", "a snapshot is listed twice")
        if not parents:
            return

        def missing() -> list[str]:
            with self.database.begin(read_only=True) as connection:
                query = select(SnapshotRow.id).where(SnapshotRow.id.in_(list(parents)))
                found = set(connection.execute(query).scalars())
            return [p for p in parents if p not in found]

        absent = await self.database.run(missing)
        if absent:
            raise NotFoundError(f"parents: no snapshot {', '.join(absent)}")

    async def _read(self, source: Source, null_values: Sequence[str]) -> Batch:
        attempt = 1
        while True:
            try:
                return await asyncio.to_thread(
                    source.read, max_bytes=self.options.max_bytes, null_values=null_values
                )
            except SourceUnavailableError as exc:
                if attempt >= self.options.attempts:
                    raise SourceUnavailableError(
                        f"{exc} (gave up after {attempt} attempt(s))"
                    ) from exc
                delay = self.options.delay_s(attempt)
                if self._on_event is not None:
                    self._on_event(SourceRetried(source.describe(), attempt, delay, str(exc)))
                await self._clock.sleep(delay)
                attempt += 1

    def _put(self, plan: Plan) -> tuple[str | None, str | None]:
        """Both blobs, durable before any row points at them."""
        snapshot = None if plan.snapshot_parquet is None else self.blobs.put(plan.snapshot_parquet)
        quarantine = (
            None if plan.quarantine_parquet is None else self.blobs.put(plan.quarantine_parquet)
        )
        return snapshot, quarantine

    def _commit(
        self, plan: Plan, digests: tuple[str | None, str | None], actor: str
    ) -> IngestResult:
        verdict = plan.verdict
        check_balance(verdict.rows_in, verdict.rows_accepted, verdict.rows_quarantined)
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        with self.database.begin() as connection:
            created = False
            if plan.snapshot_id is not None and digests[0] is not None:
                created = self._insert_snapshot(connection, plan, digests[0], now, actor)
            ingestion_id = self._insert_ingestion(connection, plan, digests[1], now, actor)
            self._audit_records(connection, plan, ingestion_id, created, digests, actor)
            ingestion = ingestion_record(
                connection.execute(
                    select(IngestionRow).where(IngestionRow.id == ingestion_id)
                ).one()
            )
            snapshot = None
            if plan.snapshot_id is not None:
                row = connection.execute(
                    select(SnapshotRow).where(SnapshotRow.id == plan.snapshot_id)
                ).one()
                snapshot = snapshot_record(connection, row)
        return IngestResult(ingestion, snapshot, created)

    def _insert_snapshot(
        self, connection: Connection, plan: Plan, digest: str, now: datetime, actor: str
    ) -> bool:
        assert plan.snapshot_id is not None
        assert plan.snapshot_parquet is not None
        query = select(SnapshotRow.id).where(SnapshotRow.id == plan.snapshot_id)
        if connection.execute(query).first() is not None:
            return False
        connection.execute(
            insert(SnapshotRow).values(
                id=plan.snapshot_id,
                dataset=plan.dataset,
                contract_name=plan.contract_name,
                contract_version=plan.contract_version,
                contract_digest=plan.contract_digest,
                source=plan.source,
                transform=plan.transform,
                columns=[[name, dtype] for name, dtype in plan.columns.items()],
                rows=plan.verdict.rows_accepted,
                rows_in=plan.verdict.rows_in,
                rows_quarantined=plan.verdict.rows_quarantined,
                blob_digest=digest,
                blob_bytes=len(plan.snapshot_parquet),
                profile=plan.profile,
                created_at=now,
                created_by=actor,
            )
        )
        if plan.parents:
            connection.execute(
                insert(ParentRow),
                [
                    {"snapshot_id": plan.snapshot_id, "position": i, "parent_id": parent}
                    for i, parent in enumerate(plan.parents)
                ],
            )
        return True

    def _insert_ingestion(
        self, connection: Connection, plan: Plan, quarantine: str | None, now: datetime, actor: str
    ) -> int:
        verdict = plan.verdict
        failures = _failure_rows(plan, self.options.max_failure_rows)
        statement = (
            insert(IngestionRow)
            .values(
                dataset=plan.dataset,
                contract_name=plan.contract_name,
                contract_version=plan.contract_version,
                contract_digest=plan.contract_digest,
                source=plan.source,
                status="rejected" if verdict.rejected else "accepted",
                reason=verdict.reason,
                rows_in=verdict.rows_in,
                rows_accepted=verdict.rows_accepted,
                rows_quarantined=verdict.rows_quarantined,
                snapshot_id=plan.snapshot_id,
                quarantine_digest=quarantine,
                failure_count=len(verdict.failures) + len(verdict.batch_failures),
                created_at=now,
                created_by=actor,
            )
            .returning(IngestionRow.id)
        )
        ingestion_id = int(connection.execute(statement).scalar_one())
        if failures:
            connection.execute(
                insert(FailureRow), [{"ingestion_id": ingestion_id, **row} for row in failures]
            )
        return ingestion_id

    def _audit_records(
        self,
        connection: Connection,
        plan: Plan,
        ingestion_id: int,
        created: bool,
        digests: tuple[str | None, str | None],
        actor: str,
    ) -> None:
        verdict = plan.verdict
        common = {
            "dataset": plan.dataset,
            "contract": f"{plan.contract_name}@{plan.contract_version}",
            "ingestion": ingestion_id,
            "rows_in": verdict.rows_in,
            "rows_accepted": verdict.rows_accepted,
            "rows_quarantined": verdict.rows_quarantined,
            "source": _audited_source(plan.source),
        }
        if plan.snapshot_id is not None:
            details = {**common, "new": created, "blob": digests[0]}
            target = f"snapshot:{plan.snapshot_id}"
            self._audit.append_in(connection, actor, "data.snapshot", target, details)
        target = f"ingestion:{ingestion_id}"
        if verdict.rows_quarantined:
            checks = verdict.failures["check"].value_counts().sort_index()
            counts = {str(check): int(n) for check, n in checks.items()}
            details = {**common, "checks": counts, "blob": digests[1]}
            self._audit.append_in(connection, actor, "data.quarantine", target, details)
        if verdict.rejected:
            details = {**common, "reason": (verdict.reason or "")[:_AUDIT_TEXT]}
            self._audit.append_in(connection, actor, "data.reject", target, details)


def _failure_rows(plan: Plan, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"row": None, "column_name": None, "check_name": f.check, "value": None, "reason": f.reason}
        for f in plan.verdict.batch_failures
    ]
    for failure in plan.verdict.failures.head(limit).itertuples(index=False):
        rows.append(
            {
                "row": int(failure.row),
                "column_name": None if _missing(failure.column) else str(failure.column),
                "check_name": str(failure.check),
                "value": None if _missing(failure.value) else str(failure.value),
                "reason": str(failure.reason),
            }
        )
    return rows


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _audited_source(source: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value[:_AUDIT_TEXT] if isinstance(value, str) else value
        for key, value in source.items()
    }
