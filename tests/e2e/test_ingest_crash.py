"""Ingestion survives SIGKILL: 30 ingesting processes killed at random points on SQLite, 30 on
PostgreSQL; no partial snapshot ever becomes visible, and running again completes with the
snapshot id the batch always had.

Each run ingests its own CSV file (the diabetes data, a few invalid rows, a run number), so every
kill lands inside a real ingestion: reading, validating, writing blobs, or committing. It is
killed after a random delay between 0 and 1.1 times the duration of a whole ingestion (the
median of the last five). Then:

- every snapshot row has its ingestion row, its blob present and intact (digest and content
  hash), every quarantine blob an ingestion points at is there, and every ingestion balances;
- the same file ingested again, to the end, gives the snapshot id computed in this process.

Processes are forked from a zygote that imported pandas, pandera, pyarrow and SQLAlchemy once
(`zygote.py`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sqlalchemy import text
from tests.e2e.zygote import Child, Zygote

from seawall.data.contract import parse_contract
from seawall.data.plan import make_plan
from seawall.data.snapshots import SnapshotStore
from seawall.data.sources import CsvSource
from seawall.data.validation import Validator
from seawall.store import BlobStore, Database

pytestmark = pytest.mark.e2e

#: Ingestions killed per database.
RUNS = 30
#: Rows per batch: the diabetes data twice over (884 rows).
COPIES = 2

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
  run: {dtype: int}
  patient: {dtype: int, unique: true}
"""

_PRELUDE = """
    import os, sys
    import pandas, pandera.pandas, pyarrow.parquet, psycopg  # imported once, before any fork
    import sqlalchemy.dialects.postgresql.psycopg
    from seawall.data import CsvSource, Ingestor, Validator, parse_contract
    from seawall.data.coercion import PANDAS_DTYPES
    from seawall.store import BlobStore, Database

    CONTRACT = parse_contract(sys.argv[1])
    # Warm pandera once, on an empty typed frame: pure Python, so no pyarrow thread exists
    # before a fork.
    EMPTY = {n: pandas.Series([], dtype=PANDAS_DTYPES[r.dtype])
             for n, r in CONTRACT.columns.items()}
    Validator(CONTRACT).schema.validate(pandas.DataFrame(EMPTY), lazy=True)

    async def child(url: str, store: str, path: str) -> None:
        database = Database(url)
        result = await Ingestor(database, BlobStore(store)).ingest(
            CONTRACT, CsvSource(path), actor="crash-test"
        )
        os.write(1, f"done {result.snapshot.id}\\n".encode())
        await database.aclose()
    """


@dataclass
class Run:
    """One ingestion: its process, and the snapshot it said it made."""

    child: Child = field(default_factory=Child)
    snapshot: str | None = None

    def take(self, line: str) -> None:
        kind, *values = line.split() or [""]
        if kind != "done" or len(values) != 1:
            raise AssertionError(f"the zygote said {line!r}")
        self.snapshot = values[0]


def _ingest(
    zygote: Zygote, url: str, store: Path, path: Path, kill_after_s: float | None = None
) -> Run:
    run = Run()
    run.child = zygote.run([url, str(store), str(path)], run.take, kill_after_s)
    return run


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    parent = Zygote(_PRELUDE, CONTRACT)
    try:
        yield parent
    finally:
        parent.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


def _batches(directory: Path, count: int) -> list[Path]:
    """`count` CSV files of the diabetes data, each with its run number and a few bad rows."""
    base = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(7)
    paths = []
    for number in range(count):
        frame = base.sample(frac=COPIES, replace=True, random_state=number).reset_index(drop=True)
        frame["run"] = number
        frame["patient"] = np.arange(len(frame))
        text_frame = frame.astype(str)
        bad = rng.choice(len(frame), size=len(frame) // 100, replace=False)
        text_frame.loc[bad, "bmi"] = "n/a"
        path = directory / f"batch-{number:03d}.csv"
        text_frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def _expected_id(path: Path) -> str:
    contract = parse_contract(CONTRACT)
    batch = CsvSource(path).read(max_bytes=1 << 30, null_values=contract.null_values)
    plan = make_plan(Validator(contract), batch, dataset="diabetes", now_s=time.time())
    assert plan.snapshot_id is not None
    return plan.snapshot_id


async def _consistent(url: str, store: Path) -> tuple[int, int]:
    """Check what a crash may have left; the numbers of snapshots and ingestions."""
    database = Database(url)
    try:
        problems = await SnapshotStore(database, BlobStore(store)).check()
        assert problems == [], problems
        with database.begin(read_only=True) as connection:
            orphans = connection.execute(
                text(
                    "SELECT id FROM data_snapshots s WHERE NOT EXISTS "
                    "(SELECT 1 FROM data_ingestions i WHERE i.snapshot_id = s.id)"
                )
            ).all()
            unbalanced = connection.execute(
                text(
                    "SELECT id FROM data_ingestions "
                    "WHERE rows_in != rows_accepted + rows_quarantined "
                    "OR (status = 'accepted') != (snapshot_id IS NOT NULL)"
                )
            ).all()
            snapshots = connection.execute(text("SELECT count(*) FROM data_snapshots")).scalar()
            ingestions = connection.execute(text("SELECT count(*) FROM data_ingestions")).scalar()
        assert orphans == [], f"snapshots without their ingestion: {orphans}"
        assert unbalanced == [], f"ingestions that do not balance: {unbalanced}"
        snapshots_store = SnapshotStore(database, BlobStore(store))
        for snapshot in await snapshots_store.list_snapshots(limit=1):  # reads back, hashes right
            await snapshots_store.read(snapshot.id, actor="checker")
        return int(snapshots or 0), int(ingestions or 0)
    finally:
        await database.aclose()


def test_killed_ingestions_leave_no_partial_snapshot_and_rerun_to_the_same_id(
    url: str, zygote: Zygote, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    print(f"kill times drawn with random.Random({seed})")  # shown if the test fails
    rng = random.Random(seed)
    database = Database(url)
    database.upgrade()
    database.close()
    store = tmp_path / "store"
    paths = _batches(tmp_path, RUNS + 1)

    whole = _ingest(zygote, url, store, paths[0])  # how long an ingestion takes, from fork to exit
    assert whole.child.status == 0, "the first ingestion failed"
    assert whole.snapshot == _expected_id(paths[0])
    durations = [whole.child.seconds]  # of whole ingestions: the kills are drawn within the latest
    killed_before_done = 0
    for number in range(1, RUNS + 1):
        expected = _expected_id(paths[number])
        delay = rng.uniform(0, 1.1 * float(np.median(durations[-5:])))
        killed = _ingest(zygote, url, store, paths[number], kill_after_s=delay)
        asyncio.run(_consistent(url, store))
        if not killed.child.killed:  # it finished before the kill
            assert killed.child.status == 0, f"seed {seed}, run {number}: the ingestion failed"
            assert killed.snapshot == expected, f"seed {seed}, run {number}"
            continue
        killed_before_done += killed.snapshot is None

        again = _ingest(zygote, url, store, paths[number])

        assert again.child.status == 0, f"seed {seed}, run {number}: running again failed"
        assert again.snapshot == expected, f"seed {seed}, run {number}"
        durations.append(again.child.seconds)
    snapshots, ingestions = asyncio.run(_consistent(url, store))
    assert snapshots == RUNS + 1
    assert killed_before_done >= RUNS // 2  # most kills really landed inside an ingestion
    print(
        f"{url.split(':')[0]}: an ingestion takes {np.median(durations):.2f} s; {RUNS} kills, "
        f"{killed_before_done} before it finished; {ingestions} ingestions recorded"
    )
