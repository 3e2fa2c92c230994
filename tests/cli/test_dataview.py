"""How `seawall data` prints sources, snapshots, ingestions, failures and lineage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from seawall.cli.dataview import (
    describe_source,
    print_failures,
    print_ingestion,
    print_ingestions,
    print_lineage,
    print_snapshot,
    print_snapshots,
)
from seawall.data.records import FailureRecord, IngestionRecord, SnapshotRecord

AT = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ID = "8cf9e9ecf0f319ea436c08932bcfe958f7969b88dfeced7c90e2788bb6b4c1c4"


def _ingestion(**changes: Any) -> IngestionRecord:
    values: dict[str, Any] = {
        "id": 4,
        "dataset": "iris",
        "contract_name": "iris",
        "contract_version": "1",
        "contract_digest": "0" * 64,
        "source": {"kind": "csv", "path": "/d/iris.csv"},
        "status": "accepted",
        "reason": None,
        "rows_in": 150,
        "rows_accepted": 149,
        "rows_quarantined": 1,
        "snapshot_id": ID,
        "quarantine_digest": "1" * 64,
        "failure_count": 1,
        "created_at": AT,
        "created_by": "cli:alice",
    }
    return IngestionRecord(**{**values, **changes})


def _snapshot(profile: dict[str, Any]) -> SnapshotRecord:
    return SnapshotRecord(
        id=ID,
        dataset="iris",
        contract_name="iris",
        contract_version="1",
        contract_digest="0" * 64,
        source={"kind": "sql", "url": "postgresql://u:***@db/x", "query": "SELECT *"},
        transform="ingest",
        columns={"x": "float"},
        rows=149,
        rows_in=150,
        rows_quarantined=1,
        blob_digest="2" * 64,
        blob_bytes=3339,
        profile=profile,
        created_at=AT,
        created_by="cli:alice",
    )


@pytest.mark.parametrize(
    ("source", "text"),
    [
        (
            {"kind": "csv", "path": "/d/a.csv", "sha256": "ab", "bytes": 10},
            "csv /d/a.csv (sha256:ab, 10 bytes)",
        ),
        ({"kind": "parquet", "path": "/d/a.parquet"}, "parquet /d/a.parquet"),
        (
            {"kind": "sql", "url": "sqlite:///x.db", "query": "SELECT 1"},
            "sql sqlite:///x.db: SELECT 1",
        ),
        ({"kind": "frame", "description": "dedupe"}, "frame: dedupe"),
    ],
)
def test_sources_are_described_in_one_line(source: dict[str, Any], text: str) -> None:
    assert describe_source(source) == text


def test_an_ingestion_says_what_happened_and_where_to_look(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_ingestion(_ingestion(), created=True)
    print_ingestion(
        _ingestion(status="rejected", reason="rows: 3", snapshot_id=None, rows_accepted=0),
        created=False,
    )

    assert capsys.readouterr().out.splitlines() == [
        "accepted: iris, 150 rows in, 149 accepted, 1 quarantined (ingestion 4)",
        f"snapshot {ID} (new)",
        "why each row was refused: seawall data quarantine show 4; to fix and re-ingest: "
        "seawall data quarantine export 4 --out FILE",
        "rejected: iris, 150 rows in, 0 accepted, 1 quarantined (ingestion 4)",
        "reason: rows: 3",
        "why each row was refused: seawall data quarantine show 4; to fix and re-ingest: "
        "seawall data quarantine export 4 --out FILE",
    ]


def test_a_snapshot_shows_its_columns_profile(capsys: pytest.CaptureFixture[str]) -> None:
    profile = {
        "columns": {
            "x": {
                "dtype": "float",
                "null_count": 0,
                "distinct": 35,
                "min": 4.3,
                "max": 7.9,
                "mean": 5.851677852,
                "std": 0.8245,
                "percentiles": [4.3] * 50 + [5.8] + [7.9] * 50,
            },
            "s": {
                "dtype": "string",
                "null_count": 2,
                "distinct": 7,
                "top": [[f"v{i}", 10 - i] for i in range(7)],
                "other_count": 0,
            },
            "at": {"dtype": "datetime", "null_count": 0, "distinct": 1, "min": "a", "max": "b"},
            "empty": {"dtype": "float", "null_count": 3, "distinct": 0, "min": None},
        }
    }

    print_snapshot(_snapshot(profile))

    out = capsys.readouterr().out
    assert "  source:    sql postgresql://u:***@db/x: SELECT *\n" in out
    assert "  rows:      149 (of 150 read; 1 quarantined)\n" in out
    assert f"  file:      sha256:{'2' * 64}, 3339 bytes (Parquet)\n" in out
    assert (
        "x       float     0      35        min 4.3  median 5.8  max 7.9  mean 5.85168  std 0.8245"
        in out
    )
    assert "s       string    2      7         top: v0 10, v1 9, v2 8, v3 7, v4 6, ..." in out
    assert "at      datetime  0      1         a to b" in out
    assert "empty   float     3      0         -" in out


def test_empty_lists_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    print_snapshots([])
    print_ingestions([])

    assert capsys.readouterr().out == "no snapshots\nno quarantined rows\n"


def test_failures_show_the_batch_rule_and_how_many_were_left_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failures = [
        FailureRecord(4, None, None, "invalid_share", None, "20 of 150 rows invalid"),
        FailureRecord(4, 3, "x", "dtype", "a" * 40, "'aaa…' is not a float"),
    ]

    print_failures(_ingestion(failure_count=21), failures)

    lines = capsys.readouterr().out.splitlines()
    assert "showing 2 of 21 failures" in lines
    assert lines[-2].split() == [
        "-",
        "-",
        "invalid_share",
        "-",
        "20",
        "of",
        "150",
        "rows",
        "invalid",
    ]
    assert lines[-1].startswith("3    x       dtype          " + "a" * 29 + "…")


def test_lineage_prints_each_version_and_its_snapshots(capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = _snapshot({}).to_json()
    chain = [
        {
            "name": "m",
            "version": 2,
            "stage": "production",
            "code_version": "3f2c1ab",
            "author": "a",
            "dataset_snapshot": ID,
            "snapshots": [snapshot, snapshot],
            "problem": None,
        },
        {
            "name": "m",
            "version": 1,
            "stage": "archived",
            "code_version": None,
            "author": "a",
            "dataset_snapshot": "x",
            "snapshots": None,
            "problem": "snapshot x: no such snapshot",
        },
    ]

    print_lineage(chain)

    assert capsys.readouterr().out.splitlines() == [
        "m version 2 (production), code 3f2c1ab, by a",
        f"  snapshot {ID[:12]}  iris (iris@1), 149 rows, ingest",
        "    from sql postgresql://u:***@db/x: SELECT *",
        f"  parent {ID[:12]}  iris (iris@1), 149 rows, ingest",
        "    from sql postgresql://u:***@db/x: SELECT *",
        "m version 1 (archived), code -, by a",
        "  dataset snapshot x: snapshot x: no such snapshot",
    ]
