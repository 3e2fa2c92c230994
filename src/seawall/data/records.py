"""What the data guard hands out: immutable records of snapshots, ingestions and failures.

Each has `to_json()` (plain JSON types, times in ISO 8601 UTC) for the CLI's `--json` output
and audit details.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from seawall.store.record import Record

__all__ = ["FailureRecord", "IngestionRecord", "SnapshotRecord"]


@dataclass(frozen=True, slots=True)
class SnapshotRecord(Record):
    """A dataset snapshot's metadata (its rows are read with `SnapshotStore.read`)."""

    id: str
    dataset: str
    contract_name: str
    contract_version: str
    contract_digest: str
    source: dict[str, Any]
    transform: str
    #: Name → contract dtype, in order.
    columns: dict[str, str]
    rows: int
    rows_in: int
    rows_quarantined: int
    blob_digest: str
    blob_bytes: int
    profile: dict[str, Any]
    created_at: datetime
    created_by: str
    #: The snapshots it was made from, in order.
    parents: tuple[str, ...] = ()

    @property
    def lineage(self) -> dict[str, Any]:
        """What its id covers besides its rows (`canonical.content_id`'s `lineage`)."""
        return {
            "dataset": self.dataset,
            "contract": [self.contract_name, self.contract_version],
            "parents": list(self.parents),
            "transform": self.transform,
        }


@dataclass(frozen=True, slots=True)
class IngestionRecord(Record):
    """One batch read from a source: accepted (with its snapshot) or rejected, and its counts."""

    id: int
    dataset: str
    contract_name: str
    contract_version: str
    contract_digest: str
    source: dict[str, Any]
    status: str
    reason: str | None
    rows_in: int
    rows_accepted: int
    rows_quarantined: int
    snapshot_id: str | None
    quarantine_digest: str | None
    failure_count: int
    created_at: datetime
    created_by: str

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


@dataclass(frozen=True, slots=True)
class FailureRecord(Record):
    """A rule a row broke (`row` None: a rule the batch broke)."""

    ingestion_id: int
    row: int | None
    column: str | None
    check: str
    value: str | None
    reason: str
