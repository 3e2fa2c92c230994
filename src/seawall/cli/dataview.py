"""How `seawall data` shows snapshots, ingestions and failures to a person (`--json`: all of it).

A snapshot id is printed whole where a person may copy it (after an ingestion, in `show`) and
shortened to 12 hex digits in tables, where it only tells snapshots apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import typer

from seawall.cli.output import echo_table, when

if TYPE_CHECKING:
    from seawall.data import FailureRecord, IngestionRecord, SnapshotRecord

__all__ = [
    "describe_source",
    "print_failures",
    "print_ingestion",
    "print_ingestions",
    "print_lineage",
    "print_snapshot",
    "print_snapshots",
]

_SHORT = 12
_REASON = 70


def describe_source(source: Mapping[str, Any]) -> str:
    """`csv /data/iris.csv (sha256:ab12…, 4551 bytes)`, `sql <url>: <query>`, ..."""
    kind = source.get("kind", "?")
    if kind == "sql":
        return f"sql {source.get('url')}: {source.get('query')}"
    if kind == "frame":
        return f"frame: {source.get('description')}"
    where = f"{kind} {source.get('path')}"
    if "sha256" in source:
        where += f" (sha256:{source['sha256']}, {source.get('bytes')} bytes)"
    return where


def print_ingestion(record: IngestionRecord, created: bool | None) -> None:
    """What one ingestion did: counts, the snapshot, where the refused rows are.

    `created`: whether this ingestion made its snapshot (None: not said, and no hints).
    """
    typer.echo(
        f"{record.status}: {record.dataset}, {record.rows_in} rows in, {record.rows_accepted} "
        f"accepted, {record.rows_quarantined} quarantined (ingestion {record.id})"
    )
    if record.snapshot_id is not None:
        made = {True: " (new)", False: " (already stored)", None: ""}[created]
        typer.echo(f"snapshot {record.snapshot_id}{made}")
    if record.reason:
        typer.echo(f"reason: {record.reason}")
    if record.rows_quarantined and created is not None:
        typer.echo(
            f"why each row was refused: seawall data quarantine show {record.id}; to fix and "
            f"re-ingest: seawall data quarantine export {record.id} --out FILE"
        )


def print_snapshots(records: Sequence[SnapshotRecord]) -> None:
    """One line per snapshot."""
    if not records:
        typer.echo("no snapshots")
        return
    echo_table(
        ("id", "dataset", "contract", "rows", "quarantined", "created", "by"),
        (
            (
                r.id[:_SHORT],
                r.dataset,
                f"{r.contract_name}@{r.contract_version}",
                str(r.rows),
                str(r.rows_quarantined),
                when(r.created_at),
                r.created_by,
            )
            for r in records
        ),
    )


def print_snapshot(record: SnapshotRecord) -> None:
    """A snapshot's metadata, then one line per column of its profile."""
    typer.echo(f"snapshot {record.id}")
    _field("dataset", record.dataset)
    _field("contract", f"{record.contract_name}@{record.contract_version}")
    _field("source", describe_source(record.source))
    _field("transform", record.transform)
    _field("parents", ", ".join(record.parents) or "-")
    _field(
        "rows",
        f"{record.rows} (of {record.rows_in} read; {record.rows_quarantined} quarantined)",
    )
    _field("file", f"sha256:{record.blob_digest}, {record.blob_bytes} bytes (Parquet)")
    _field("created", f"{when(record.created_at)} by {record.created_by}")
    typer.echo("")
    columns = record.profile.get("columns", {})
    echo_table(
        ("column", "dtype", "nulls", "distinct", "summary"),
        (
            (
                name,
                stats.get("dtype", "?"),
                str(stats.get("null_count", "?")),
                str(stats.get("distinct", "?")),
                _summary(stats),
            )
            for name, stats in columns.items()
        ),
    )


def _summary(stats: Mapping[str, Any]) -> str:
    dtype = stats.get("dtype")
    if dtype in ("int", "float") and stats.get("min") is not None:
        percentiles = stats.get("percentiles") or []
        median = percentiles[50] if len(percentiles) > 50 else None
        return (
            f"min {_number(stats['min'])}  median {_number(median)}  max {_number(stats['max'])}"
            f"  mean {_number(stats.get('mean'))}  std {_number(stats.get('std'))}"
        )
    if dtype in ("string", "bool") and stats.get("top"):
        top = ", ".join(f"{value} {count}" for value, count in stats["top"][:5])
        more = len(stats["top"]) > 5 or stats.get("other_count")
        return f"top: {top}" + (", ..." if more else "")
    if dtype == "datetime" and stats.get("min") is not None:
        return f"{stats['min']} to {stats['max']}"
    return "-"


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}"


def print_ingestions(records: Sequence[IngestionRecord]) -> None:
    """One line per ingestion."""
    if not records:
        typer.echo("no quarantined rows")
        return
    echo_table(
        ("ingestion", "created", "dataset", "status", "in", "accepted", "quarantined", "reason"),
        (
            (
                str(r.id),
                when(r.created_at),
                r.dataset,
                r.status,
                str(r.rows_in),
                str(r.rows_accepted),
                str(r.rows_quarantined),
                _short(r.reason or "-"),
            )
            for r in records
        ),
    )


def print_failures(record: IngestionRecord, failures: Sequence[FailureRecord]) -> None:
    """An ingestion's counts, then one line per rule broken (row `-`: the batch's)."""
    print_ingestion(record, created=None)
    source = describe_source(record.source)
    typer.echo(f"at {when(record.created_at)} by {record.created_by}, from {source}")
    if record.failure_count > len(failures):
        typer.echo(f"showing {len(failures)} of {record.failure_count} failures")
    if not failures:
        return
    typer.echo("")
    echo_table(
        ("row", "column", "check", "value", "reason"),
        (
            (
                "-" if f.row is None else str(f.row),
                f.column or "-",
                f.check,
                "-" if f.value is None else _short(f.value, 30),
                f.reason,
            )
            for f in failures
        ),
    )


def print_lineage(chain: Sequence[Mapping[str, Any]]) -> None:
    """Each model version, the snapshot it was trained on, and that snapshot's ancestry."""
    for entry in chain:
        code = entry.get("code_version") or "-"
        typer.echo(
            f"{entry['name']} version {entry['version']} ({entry['stage']}), code {code}, "
            f"by {entry['author']}"
        )
        if entry.get("dataset_snapshot") is None:
            typer.echo("  dataset snapshot: not recorded")
        elif entry.get("problem"):
            typer.echo(f"  dataset snapshot {entry['dataset_snapshot']}: {entry['problem']}")
        for depth, snapshot in enumerate(entry.get("snapshots") or []):
            label = "snapshot" if depth == 0 else "parent"
            typer.echo(
                f"  {label} {snapshot['id'][:_SHORT]}  {snapshot['dataset']} "
                f"({snapshot['contract_name']}@{snapshot['contract_version']}), "
                f"{snapshot['rows']} rows, {snapshot['transform']}"
            )
            typer.echo(f"    from {describe_source(snapshot['source'])}")


def _field(name: str, value: str) -> None:
    typer.echo(f"  {name + ':':<11}{value}")


def _short(text: str, width: int = _REASON) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
