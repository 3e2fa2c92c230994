"""Ingestion cost: `Ingestor.ingest` of a 100k-row CSV file against a bare CSV → Parquet copy.

The reference, measured in the same run on the same file, is what any pipeline pays to land a
CSV file as Parquet: `pandas.read_csv` then `pyarrow.parquet.write_table`. seawall's ingestion
does that and more: reads every field as text and then by the contract (exact integers, no
pandas truthiness), checks 13 columns' rules with pandera (every failure of every row), hashes
the rows into the snapshot id, profiles every column, writes the snapshot's and the
quarantine's Parquet blobs (fsync'd) and commits the metadata with its audit records (SQLite).
The batch is the diabetes data resampled to `--rows` rows, 1% of them invalid.

Also reported: the time of each step of the plan (validate, hash, Parquet, profile), measured
apart on the same batch.

Usage: ``.venv/bin/python benchmarks/ingest.py [--rows 100000] [--repeats 3]``; writes
``benchmarks/results/ingest.md``. About a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

CONTRACT = """
name: diabetes
version: 1
columns:
  age: {dtype: float, min: -1, max: 1}
  sex: {dtype: float, min: -1, max: 1}
  bmi: {dtype: float, min: -1, max: 1}
  bp: {dtype: float, min: -1, max: 1}
  s1: {dtype: float, min: -1, max: 1}
  s2: {dtype: float, min: -1, max: 1}
  s3: {dtype: float, min: -1, max: 1}
  s4: {dtype: float, min: -1, max: 1}
  s5: {dtype: float, min: -1, max: 1}
  s6: {dtype: float, min: -1, max: 1}
  target: {dtype: float, min: 0, max: 400}
  clinic: {dtype: string, allowed: [north, south, east, west]}
  patient: {dtype: int, unique: true}
rows: {max: 10000000}
"""


def write_batch(path: Path, rows: int, invalid_share: float = 0.01, seed: int = 0) -> int:
    """The diabetes data resampled to `rows` rows, `invalid_share` of them broken; how many."""
    import numpy as np
    from sklearn.datasets import load_diabetes

    rng = np.random.default_rng(seed)
    base = load_diabetes(as_frame=True).frame
    frame = base.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    frame["clinic"] = rng.choice(["north", "south", "east", "west"], size=rows)
    frame["patient"] = np.arange(rows)
    text = frame.astype(str)
    broken = rng.choice(rows, size=int(rows * invalid_share), replace=False)
    text.loc[broken, "bmi"] = "n/a"
    text.to_csv(path, index=False)
    return len(broken)


def reference(path: Path) -> float:
    """Seconds to read the CSV file with pandas and write it as Parquet (the bare copy)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    frame = pd.read_csv(path)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, compression="zstd")
    return time.perf_counter() - started


def ingestion(path: Path, directory: Path, number: int) -> tuple[float, dict[str, Any]]:
    """Seconds of one whole `Ingestor.ingest` into a fresh SQLite database and store."""
    from seawall.data import CsvSource, Ingestor, parse_contract
    from seawall.store import BlobStore, Database

    database = Database(f"sqlite:///{directory}/bench-{number}.db")
    database.upgrade()
    ingestor = Ingestor(database, BlobStore(directory / f"store-{number}"))
    contract = parse_contract(CONTRACT)
    try:
        started = time.perf_counter()
        result = asyncio.run(ingestor.ingest(contract, CsvSource(path), actor="bench"))
        seconds = time.perf_counter() - started
    finally:
        database.close()
    return seconds, result.ingestion.to_json()


def steps(path: Path) -> dict[str, float]:
    """Seconds of each step of the plan, measured apart on the same batch."""
    from seawall.data import CsvSource, Validator, parse_contract
    from seawall.data.canonical import content_id, to_parquet
    from seawall.data.profile import profile

    contract = parse_contract(CONTRACT)
    validator = Validator(contract)
    columns = {name: rule.dtype for name, rule in contract.columns.items()}
    lineage = {"dataset": "d", "contract": ["d", "1"], "parents": [], "transform": "ingest"}
    out: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = fn()
        out[name] = time.perf_counter() - started
        return value

    batch = timed(
        "read CSV as text", lambda: CsvSource(path).read(max_bytes=1 << 31, null_values=[""])
    )
    verdict = timed("validate (coerce + pandera)", lambda: validator.validate(batch.frame, now_s=0))
    accepted = verdict.accepted()
    timed("hash (snapshot id)", lambda: content_id(accepted, columns, lineage))
    timed("write Parquet", lambda: to_parquet(accepted, columns, {}))
    timed("profile", lambda: profile(accepted, columns))
    return out


def report(
    rows: int,
    invalid: int,
    refs: Sequence[float],
    runs: Sequence[float],
    parts: dict[str, float],
    record: dict[str, Any],
) -> str:
    ref, run = statistics.median(refs), statistics.median(runs)
    lines = [
        "# Ingestion cost",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}; median of {len(runs)} runs; {rows} rows, {invalid} invalid.",
        "",
        "| | seconds | rows/s | ratio |",
        "|---|---:|---:|---:|",
        f"| bare CSV → Parquet (pandas + pyarrow) | {ref:.3f} | {rows / ref:,.0f} | 1.00 |",
        f"| seawall ingest (validate, snapshot, quarantine, commit) | {run:.3f} | "
        f"{rows / run:,.0f} | {run / ref:.2f} |",
        "",
        f"Ingestion counts: {record['rows_in']} in, {record['rows_accepted']} accepted, "
        f"{record['rows_quarantined']} quarantined ({record['status']}).",
        "",
        "| step of the plan (measured apart) | seconds | share of the ingestion |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {seconds:.3f} | {seconds / run:.0%} |" for name, seconds in parts.items()
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ingest.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = directory / "batch.csv"
        invalid = write_batch(path, args.rows)
        reference(path)  # warm the page cache and the imports before measuring
        refs, runs, record = [], [], {}
        for number in range(args.repeats):
            refs.append(reference(path))
            seconds, record = ingestion(path, directory, number)
            runs.append(seconds)
        parts = steps(path)
    text = report(args.rows, invalid, refs, runs, parts, record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
