"""Records turn into plain JSON; a snapshot knows the lineage its id covers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from seawall.data.records import FailureRecord, IngestionRecord, SnapshotRecord

AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _snapshot() -> SnapshotRecord:
    return SnapshotRecord(
        id="a" * 64,
        dataset="iris",
        contract_name="iris",
        contract_version="2",
        contract_digest="b" * 64,
        source={"kind": "csv", "path": "/d/iris.csv"},
        transform="dedupe",
        columns={"x": "float", "species": "string"},
        rows=149,
        rows_in=150,
        rows_quarantined=1,
        blob_digest="c" * 64,
        blob_bytes=3000,
        profile={"format": 1, "rows": 149, "columns": {}},
        created_at=AT,
        created_by="cli:alice",
        parents=("d" * 64,),
    )


def test_a_snapshot_is_json_with_iso_times() -> None:
    out = _snapshot().to_json()

    assert out["created_at"] == "2026-11-26T10:00:00+00:00"
    assert out["parents"] == ["d" * 64]
    assert out["columns"] == {"x": "float", "species": "string"}
    assert json.loads(json.dumps(out)) == out


def test_a_snapshot_lineage_is_what_its_id_covers() -> None:
    assert _snapshot().lineage == {
        "dataset": "iris",
        "contract": ["iris", "2"],
        "parents": ["d" * 64],
        "transform": "dedupe",
    }


def test_an_ingestion_says_whether_it_was_accepted() -> None:
    common = {
        "id": 1,
        "dataset": "iris",
        "contract_name": "iris",
        "contract_version": "2",
        "contract_digest": "b" * 64,
        "source": {},
        "rows_in": 3,
        "snapshot_id": None,
        "quarantine_digest": None,
        "failure_count": 0,
        "created_at": AT,
        "created_by": "me",
    }
    accepted = IngestionRecord(
        status="accepted", reason=None, rows_accepted=3, rows_quarantined=0, **common
    )
    rejected = IngestionRecord(
        status="rejected", reason="rows: 3", rows_accepted=0, rows_quarantined=3, **common
    )

    assert accepted.accepted
    assert not rejected.accepted
    assert rejected.to_json()["reason"] == "rows: 3"


def test_a_failure_is_json() -> None:
    failure = FailureRecord(7, 3, "x", "max", "42.0", "42.0 is above the maximum 10")

    assert failure.to_json() == {
        "ingestion_id": 7,
        "row": 3,
        "column": "x",
        "check": "max",
        "value": "42.0",
        "reason": "42.0 is above the maximum 10",
    }
