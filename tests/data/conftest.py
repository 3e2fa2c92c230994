"""Data guard fixtures: realistic data (scikit-learn's iris and diabetes), contracts, a store.

`balanced` (a fixture) is called on every ingestion a test makes: rows in = accepted +
quarantined, in the returned records and in the database.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sqlalchemy import text

from seawall.clock import FakeClock
from seawall.data.contract import Contract, parse_contract
from seawall.data.ingest import IngestOptions, Ingestor, IngestResult
from seawall.data.quarantine import Quarantine
from seawall.data.snapshots import SnapshotStore
from seawall.store import AuditLog, BlobStore, Database

IRIS_YAML = """
name: iris
version: 1
description: Fisher's iris measurements
columns:
  sepal_length: {dtype: float, min: 0, max: 10}
  sepal_width: {dtype: float, min: 0, max: 10}
  petal_length: {dtype: float, min: 0, max: 10}
  petal_width: {dtype: float, min: 0, max: 10}
  species: {dtype: string, allowed: [setosa, versicolor, virginica]}
  plant_id: {dtype: int, unique: true}
rows: {min: 10, max: 1000}
invalid_share_max: 0.1
"""


def iris_frame() -> pd.DataFrame:
    """The 150 iris plants: four float measurements, the species, and a unique plant id."""
    iris = load_iris(as_frame=True)
    frame = iris.frame.drop(columns="target")
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    frame["species"] = iris.target_names[iris.target.to_numpy()]
    frame["plant_id"] = range(1, len(frame) + 1)
    return frame


def diabetes_frame() -> pd.DataFrame:
    """The 442 diabetes patients: ten standardized features and the disease progression."""
    return load_diabetes(as_frame=True).frame


@pytest.fixture
def iris() -> pd.DataFrame:
    return iris_frame()


@pytest.fixture
def diabetes() -> pd.DataFrame:
    return diabetes_frame()


@pytest.fixture
def iris_contract() -> Contract:
    return parse_contract(IRIS_YAML)


@pytest.fixture
def iris_csv(tmp_path: Path, iris: pd.DataFrame) -> Path:
    path = tmp_path / "iris.csv"
    iris.to_csv(path, index=False)
    return path


@pytest.fixture
def check_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module `seawall_test_checks` with custom checks; returns its name."""
    directory = tmp_path / "checks"
    directory.mkdir()
    (directory / "seawall_test_checks.py").write_text(
        textwrap.dedent(
            """
            def petals_fit(frame, slack=0.0):
                return frame["petal_length"] <= frame["sepal_length"] + slack

            def enough_species(frame, at_least=3):
                return frame["species"].nunique() >= at_least

            def broken(frame):
                raise ValueError("this check is broken")

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(directory))
    return "seawall_test_checks"


@dataclass
class Guard:
    """The data guard on one migrated database and blob store, on a fake clock."""

    database: Database
    blobs: BlobStore
    clock: FakeClock
    ingestor: Ingestor
    snapshots: SnapshotStore
    quarantine: Quarantine
    audit: AuditLog

    def with_options(self, options: IngestOptions) -> Ingestor:
        return Ingestor(self.database, self.blobs, clock=self.clock, options=options)

    async def actions(self) -> list[str]:
        return [r.action for r in await self.audit.records(limit=10_000)]

    def count(self, table: str) -> int:
        with self.database.begin(read_only=True) as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def guard(migrated: Database, tmp_path: Path) -> Guard:
    clock = FakeClock(wall_start=1_800_000_000.0)
    blobs = BlobStore(tmp_path / "store")
    audit = AuditLog(migrated, clock=clock)
    return Guard(
        migrated,
        blobs,
        clock,
        Ingestor(migrated, blobs, clock=clock, audit=audit),
        SnapshotStore(migrated, blobs, audit=audit),
        Quarantine(migrated, blobs, audit=audit),
        audit,
    )


Balanced = Callable[..., IngestResult]


@pytest.fixture
def balanced() -> Balanced:
    """`balanced(result, guard=None)`: assert the counts balance; returns the result."""
    return _balanced


def _balanced(result: IngestResult, guard: Guard | None = None) -> IngestResult:
    """Assert rows in = accepted + quarantined, in the result and (if given) the database."""
    ingestion = result.ingestion
    assert ingestion.rows_in == ingestion.rows_accepted + ingestion.rows_quarantined
    if result.snapshot is not None:
        assert result.snapshot.rows == ingestion.rows_accepted or not result.created
        assert result.snapshot.rows_in == (result.snapshot.rows + result.snapshot.rows_quarantined)
    if guard is not None:
        with guard.database.begin(read_only=True) as connection:
            row = connection.execute(
                text(
                    "SELECT rows_in, rows_accepted, rows_quarantined FROM data_ingestions "
                    "WHERE id = :id"
                ),
                {"id": ingestion.id},
            ).one()
        assert tuple(row) == (
            ingestion.rows_in,
            ingestion.rows_accepted,
            ingestion.rows_quarantined,
        )
    return result


Until = Callable[[Callable[[], bool]], Awaitable[None]]


@pytest.fixture
def until() -> Until:
    """Wait (really, up to 10 s) until a condition holds: for work on other threads."""

    async def wait(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10.0
        while not condition():
            assert time.monotonic() < deadline, "condition not met within 10 s"
            await asyncio.sleep(0.002)

    return wait
