"""`make_plan`: everything an ingestion will store, computed before anything is written.

Validating the batch, hashing the accepted rows into the snapshot id, writing their Parquet
and profile, and gathering the quarantined rows are pure CPU work on the batch: the same batch
and contract give the same plan in any process. Nothing is stored until the plan is whole, so a
batch that cannot be planned leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seawall.data.canonical import content_id, to_parquet
from seawall.data.errors import DataError
from seawall.data.profile import profile
from seawall.data.quarantine import quarantine_frame, quarantine_parquet
from seawall.data.sources import Batch
from seawall.data.validation import Validator, Verdict

__all__ = ["Plan", "check_balance", "make_plan"]


@dataclass(frozen=True)
class Plan:
    """One validated batch, ready to store."""

    dataset: str
    #: name → contract dtype, in order.
    columns: dict[str, str]
    contract_name: str
    contract_version: str
    contract_digest: str
    source: dict[str, Any]
    parents: tuple[str, ...]
    transform: str
    verdict: Verdict
    #: None for a rejected batch (no snapshot).
    snapshot_id: str | None
    snapshot_parquet: bytes | None
    profile: dict[str, Any] | None
    #: None when no row was quarantined.
    quarantine_parquet: bytes | None

    @property
    def lineage(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "contract": [self.contract_name, self.contract_version],
            "parents": list(self.parents),
            "transform": self.transform,
        }


def make_plan(
    validator: Validator,
    batch: Batch,
    *,
    dataset: str,
    parents: Sequence[str] = (),
    transform: str = "ingest",
    now_s: float,
) -> Plan:
    """Validate `batch` with `validator` and prepare its snapshot and quarantine."""
    contract = validator.contract
    verdict = validator.validate(batch.frame, now_s=now_s)
    check_balance(verdict.rows_in, verdict.rows_accepted, verdict.rows_quarantined)
    columns: dict[str, str] = {name: rule.dtype for name, rule in contract.columns.items()}
    lineage = {
        "dataset": dataset,
        "contract": [contract.name, contract.version],
        "parents": list(parents),
        "transform": transform,
    }
    snapshot_id = parquet = summary = None
    if not verdict.rejected:
        accepted = verdict.accepted()
        snapshot_id = content_id(accepted, columns, lineage)
        metadata = {**lineage, "id": snapshot_id, "contract_digest": contract.digest()}
        parquet = to_parquet(accepted, columns, metadata)
        summary = profile(accepted, columns)
    quarantined = None
    if verdict.rows_quarantined:
        quarantined = quarantine_parquet(quarantine_frame(batch.frame, verdict))
    return Plan(
        dataset=dataset,
        columns=columns,
        contract_name=contract.name,
        contract_version=contract.version,
        contract_digest=contract.digest(),
        source=batch.source,
        parents=tuple(parents),
        transform=transform,
        verdict=verdict,
        snapshot_id=snapshot_id,
        snapshot_parquet=parquet,
        profile=summary,
        quarantine_parquet=quarantined,
    )


def check_balance(rows_in: int, accepted: int, quarantined: int) -> None:
    """Every row read is accepted or quarantined, never both, never neither."""
    if accepted < 0 or quarantined < 0 or rows_in != accepted + quarantined:
        raise DataError(
            f"counts do not balance: {rows_in} rows in, {accepted} accepted, "
            f"{quarantined} quarantined"
        )
