"""Quarantine on SQLite and PostgreSQL: the rows kept as read with their reasons, listed,
exported whole, fixed and re-ingested."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from seawall.data.canonical import from_parquet
from seawall.data.contract import Contract
from seawall.data.errors import SnapshotCorruptError
from seawall.data.ingest import IngestResult
from seawall.data.quarantine import REASONS_COLUMN, ROW_COLUMN, quarantine_frame
from seawall.data.sources import CsvSource, FrameSource, ParquetSource
from seawall.data.validation import Validator
from seawall.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from tests.data.conftest import Balanced, Guard


def _dirty(iris: pd.DataFrame) -> pd.DataFrame:
    frame = iris.astype(str)
    frame.loc[3, "sepal_length"] = "5,1"  # a decimal comma
    frame.loc[7, "species"] = "Setosa"
    frame.loc[7, "petal_width"] = "-0.2"
    return frame


async def _ingest(guard: Guard, contract: Contract, path: Path, balanced: Balanced) -> IngestResult:
    source = CsvSource(path) if path.suffix == ".csv" else ParquetSource(path)
    return balanced(await guard.ingestor.ingest(contract, source, actor="cli:bob"), guard)


def test_the_quarantine_keeps_rows_as_read_with_every_reason(
    iris: pd.DataFrame, iris_contract: Contract
) -> None:
    raw = _dirty(iris)
    verdict = Validator(iris_contract).validate(raw, now_s=0)

    frame = quarantine_frame(raw, verdict)

    assert frame[ROW_COLUMN].tolist() == [3, 7]
    assert frame["sepal_length"].tolist() == ["5,1", "5.0"]
    assert frame[REASONS_COLUMN].tolist() == [
        "sepal_length: '5,1' is not a float",
        "petal_width: -0.2 is below the minimum 0; species: 'Setosa' is not one of "
        "['setosa', 'versicolor', 'virginica']",
    ]


def test_typed_values_are_kept_as_text_that_reads_back(iris_contract: Contract) -> None:
    raw = pd.DataFrame(
        {
            "x": [0.1, np.nan],
            "n": pd.array([2**62 + 1, None], dtype="Int64"),
            "at": pd.to_datetime(["2026-11-26T10:00:00.5Z", None], utc=True),
        }
    )
    verdict = Validator(iris_contract).validate(raw, now_s=0)  # wrong columns: all quarantined

    frame = quarantine_frame(raw, verdict)

    assert frame["x"].tolist() == ["0.1", None]
    assert frame["n"].tolist() == [str(2**62 + 1), None]
    assert frame["at"].tolist() == ["2026-11-26T10:00:00.500000+00:00", None]


async def test_quarantined_rows_are_listed_shown_and_read(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, tmp_path: Path, balanced: Balanced
) -> None:
    path = tmp_path / "dirty.csv"
    _dirty(iris).to_csv(path, index=False)
    dirty = await _ingest(guard, iris_contract, path, balanced)
    await guard.ingestor.ingest(iris_contract, FrameSource(iris, "clean"), actor="me")

    listed = await guard.quarantine.ingestions(quarantined_only=True)
    everything = await guard.quarantine.ingestions()

    assert [i.id for i in listed] == [dirty.ingestion.id]
    assert len(everything) == 2
    assert await guard.quarantine.ingestions(dataset="other") == []
    assert await guard.quarantine.get(dirty.ingestion.id) == dirty.ingestion
    failures = await guard.quarantine.failures(dirty.ingestion.id)
    assert [(f.row, f.column, f.check) for f in failures] == [
        (3, "sepal_length", "dtype"),
        (7, "petal_width", "min"),
        (7, "species", "allowed"),
    ]
    rows = await guard.quarantine.read(dirty.ingestion.id, actor="cli:carol")
    assert list(rows.columns) == list(iris.columns)
    assert rows["sepal_length"].tolist() == ["5,1", "5.0"]
    read = (await guard.audit.records(limit=100))[-1]
    assert (read.action, read.actor, read.target) == (
        "data.read",
        "cli:carol",
        f"ingestion:{dirty.ingestion.id}",
    )
    assert read.details == {"dataset": "iris", "rows": 2, "quarantine": True}


async def test_exported_rows_fixed_and_ingested_again_join_the_data(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, tmp_path: Path, balanced: Balanced
) -> None:
    path = tmp_path / "dirty.csv"
    _dirty(iris).to_csv(path, index=False)
    first = await _ingest(guard, iris_contract, path, balanced)
    export = tmp_path / "fix.csv"

    count = await guard.quarantine.export(first.ingestion.id, export, actor="cli:bob")
    fixed = pd.read_csv(export, dtype=str)
    fixed.loc[0, "sepal_length"] = "5.1"
    fixed.loc[1, "species"] = "setosa"
    fixed.loc[1, "petal_width"] = "0.2"
    fixed.to_csv(export, index=False)
    contract = iris_contract.model_copy(
        update={"rows": iris_contract.rows.model_copy(update={"min": 1})}
    )
    second = await _ingest(guard, contract, export, balanced)

    assert count == 2
    assert second.accepted
    assert (second.ingestion.rows_accepted, second.ingestion.rows_quarantined) == (2, 0)
    assert first.ingestion.rows_accepted + second.ingestion.rows_accepted == 150


async def test_an_export_with_reasons_and_as_parquet(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, tmp_path: Path, balanced: Balanced
) -> None:
    path = tmp_path / "dirty.csv"
    _dirty(iris).to_csv(path, index=False)
    result = await _ingest(guard, iris_contract, path, balanced)
    out = tmp_path / "q.parquet"

    await guard.quarantine.export(result.ingestion.id, out, actor="me", reasons=True)

    frame, metadata = from_parquet(out.read_bytes())
    assert frame[ROW_COLUMN].tolist() == [3, 7]
    assert frame[REASONS_COLUMN].iloc[0] == "sepal_length: '5,1' is not a float"
    assert metadata == {"format": "seawall-quarantine-v1"}


async def test_exports_are_refused_whole_and_leave_no_partial_file(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, tmp_path: Path, balanced: Balanced
) -> None:
    path = tmp_path / "dirty.csv"
    _dirty(iris).to_csv(path, index=False)
    result = await _ingest(guard, iris_contract, path, balanced)
    clean = balanced(await guard.ingestor.ingest(iris_contract, FrameSource(iris, "c"), actor="me"))

    with pytest.raises(InvalidInputError, match=r"out: a \.csv or \.parquet file, got 'q\.xlsx'"):
        await guard.quarantine.export(result.ingestion.id, tmp_path / "q.xlsx", actor="me")
    with pytest.raises(NotFoundError, match=f"ingestion {clean.ingestion.id}: quarantined no rows"):
        await guard.quarantine.export(clean.ingestion.id, tmp_path / "q.csv", actor="me")
    with pytest.raises(NotFoundError, match="ingestion 999: no such ingestion"):
        await guard.quarantine.export(999, tmp_path / "q.csv", actor="me")
    assert result.ingestion.quarantine_digest is not None
    _truncate(Path(guard.blobs.uri(result.ingestion.quarantine_digest)))
    with pytest.raises(SnapshotCorruptError, match="does not hash to its name"):
        await guard.quarantine.export(result.ingestion.id, tmp_path / "q.csv", actor="me")
    assert _names(tmp_path, ("q", ".q")) == []


def _truncate(path: Path) -> None:
    os.chmod(path, 0o644)  # blobs are read-only
    path.write_bytes(path.read_bytes()[:-1])


def _names(directory: Path, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(prefixes))


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path) -> None:
    from seawall.data.quarantine import _atomic_write

    target = tmp_path / "out.csv"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
