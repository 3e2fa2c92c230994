"""Ingestion on SQLite and PostgreSQL: snapshots, quarantine, rejections, retries, idempotence;
every ingestion's counts balance; bad files leave nothing behind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from seawall.data.contract import Contract, parse_contract
from seawall.data.errors import SourceError, SourceUnavailableError
from seawall.data.ingest import IngestOptions, Ingestor, SourceRetried
from seawall.data.sources import Batch, CsvSource, FrameSource, ParquetSource
from seawall.errors import InvalidInputError, NotFoundError
from seawall.store import AuditLog, Database, StoreError

if TYPE_CHECKING:
    from tests.data.conftest import Balanced, Guard, Until


def _blobs(guard: Guard) -> list[Path]:
    return sorted((Path(guard.blobs.root) / "sha256").rglob("*"))


def _files(guard: Guard) -> list[Path]:
    return [p for p in _blobs(guard) if p.is_file()]


async def test_a_clean_csv_file_becomes_a_snapshot(
    guard: Guard, iris_contract: Contract, iris_csv: Path, balanced: Balanced
) -> None:
    result = balanced(
        await guard.ingestor.ingest(iris_contract, CsvSource(iris_csv), actor="cli:alice"), guard
    )

    assert result.accepted
    assert result.created
    snapshot = result.snapshot
    assert snapshot is not None
    assert (snapshot.rows, snapshot.rows_in, snapshot.rows_quarantined) == (150, 150, 0)
    assert snapshot.dataset == "iris"
    assert (snapshot.contract_name, snapshot.contract_version) == ("iris", "1")
    assert snapshot.source["sha256"] == result.ingestion.source["sha256"]
    assert snapshot.profile["columns"]["species"]["distinct"] == 3
    assert snapshot.transform == "ingest"
    assert snapshot.parents == ()
    assert snapshot.created_by == "cli:alice"
    assert snapshot.created_at.timestamp() == guard.clock.time()
    assert guard.blobs.verify(snapshot.blob_digest)
    assert result.ingestion.snapshot_id == snapshot.id
    assert result.ingestion.quarantine_digest is None
    assert await guard.actions() == ["data.snapshot"]
    record = (await guard.audit.records())[0]
    assert record.target == f"snapshot:{snapshot.id}"
    assert record.details["new"] is True
    assert record.details["rows_accepted"] == 150


async def test_the_same_content_twice_is_the_same_snapshot_whatever_the_format(
    guard: Guard,
    iris_contract: Contract,
    iris_csv: Path,
    iris: pd.DataFrame,
    tmp_path: Path,
    balanced: Balanced,
) -> None:
    parquet = tmp_path / "iris.parquet"
    pq.write_table(pa.Table.from_pandas(iris, preserve_index=False), parquet)

    first = balanced(await guard.ingestor.ingest(iris_contract, CsvSource(iris_csv), actor="a"))
    again = balanced(await guard.ingestor.ingest(iris_contract, CsvSource(iris_csv), actor="b"))
    typed = balanced(await guard.ingestor.ingest(iris_contract, ParquetSource(parquet), actor="c"))

    assert first.snapshot is not None
    assert again.snapshot == first.snapshot == typed.snapshot
    assert (first.created, again.created, typed.created) == (True, False, False)
    assert guard.count("data_snapshots") == 1
    assert guard.count("data_ingestions") == 3
    assert [i.id for i in await guard.quarantine.ingestions()] == [3, 2, 1]
    assert len(_files(guard)) == 1
    details = [r.details["new"] for r in await guard.audit.records()]
    assert details == [True, False, False]


async def test_invalid_rows_are_quarantined_with_their_reasons(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, tmp_path: Path, balanced: Balanced
) -> None:
    frame = iris.astype(str)
    frame.loc[3, "sepal_length"] = "abc"
    frame.loc[8, "species"] = "rose"
    frame.loc[9, "plant_id"] = "1"
    path = tmp_path / "dirty.csv"
    frame.to_csv(path, index=False)

    result = balanced(
        await guard.ingestor.ingest(iris_contract, CsvSource(path), actor="me"), guard
    )

    assert result.accepted
    assert (result.ingestion.rows_accepted, result.ingestion.rows_quarantined) == (147, 3)
    assert result.ingestion.failure_count == 3
    failures = await guard.quarantine.failures(result.ingestion.id)
    assert [(f.row, f.column, f.check, f.value) for f in failures] == [
        (3, "sepal_length", "dtype", "abc"),
        (8, "species", "allowed", "rose"),
        (9, "plant_id", "unique", "1"),
    ]
    assert await guard.actions() == ["data.snapshot", "data.quarantine"]
    quarantine = (await guard.audit.records())[1]
    assert quarantine.target == f"ingestion:{result.ingestion.id}"
    assert quarantine.details["checks"] == {"allowed": 1, "dtype": 1, "unique": 1}
    assert quarantine.details["blob"] == result.ingestion.quarantine_digest
    assert result.snapshot is not None
    assert result.snapshot.rows_quarantined == 3


def _stale_contract() -> Contract:
    return parse_contract(
        """
        name: readings
        version: 1
        columns:
          value: {dtype: float}
          at: {dtype: datetime}
        freshness: {column: at, max_age_s: 3600}
        """
    )


async def test_a_stale_batch_is_rejected_recorded_and_kept_in_quarantine(
    guard: Guard, balanced: Balanced
) -> None:
    now = pd.Timestamp(guard.clock.time(), unit="s", tz="UTC")
    frame = pd.DataFrame(
        {"value": ["1.5", "2.5"], "at": [(now - pd.Timedelta(hours=h)).isoformat() for h in (2, 3)]}
    )

    result = balanced(
        await guard.ingestor.ingest(_stale_contract(), FrameSource(frame, "t"), actor="me"), guard
    )

    assert not result.accepted
    assert result.snapshot is None
    assert result.ingestion.status == "rejected"
    assert result.ingestion.reason is not None
    assert result.ingestion.reason.startswith("freshness: newest at")
    assert (result.ingestion.rows_accepted, result.ingestion.rows_quarantined) == (0, 2)
    assert guard.count("data_snapshots") == 0
    assert len(_files(guard)) == 1  # the quarantine only
    assert await guard.actions() == ["data.quarantine", "data.reject"]
    failures = await guard.quarantine.failures(result.ingestion.id)
    assert [(f.row, f.check) for f in failures] == [(None, "freshness")]
    rows = await guard.quarantine.read(result.ingestion.id, actor="me")
    assert rows["value"].tolist() == ["1.5", "2.5"]

    fresh = frame.assign(at=[now.isoformat(), now.isoformat()])
    accepted = await guard.ingestor.ingest(_stale_contract(), FrameSource(fresh, "t"), actor="me")
    assert balanced(accepted).accepted


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.drop(columns="plant_id"), "schema: missing column(s) ['plant_id']"),
        (lambda f: f.assign(colour="red"), "schema: unexpected column(s) ['colour']"),
        (
            lambda f: f.assign(petal_width="wide"),
            "schema: column 'petal_width': none of its 150 values reads as float ('wide')",
        ),
        (
            lambda f: f.assign(species=f["species"].where(f.index >= 20, "rose")),
            "invalid_share: 20 of 150 rows invalid (13.3%), more than 10.0%",
        ),
        (lambda f: f.head(3), "rows: 3 row(s), fewer than 10"),
    ],
)
async def test_each_batch_failure_rejects_and_is_recorded(
    guard: Guard,
    iris_contract: Contract,
    iris: pd.DataFrame,
    change: Any,
    reason: str,
    balanced: Balanced,
) -> None:
    frame = change(iris.astype(str))

    result = balanced(
        await guard.ingestor.ingest(iris_contract, FrameSource(frame, "x"), actor="me"), guard
    )

    assert result.ingestion.status == "rejected"
    assert result.ingestion.reason == reason
    assert result.ingestion.rows_quarantined == len(frame)
    assert guard.count("data_snapshots") == 0
    assert (await guard.actions())[-1] == "data.reject"
    exported = await guard.quarantine.read(result.ingestion.id, actor="me")
    assert len(exported) == len(frame)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"sepal_length\n\xe9\n", "not UTF-8 text"),
        (b"a,b\n1,2\n1,2,3\n", "not valid CSV"),
        (b"x" * 2000, "2000 bytes, over the limit of 1000"),
    ],
)
async def test_a_bad_file_is_a_clear_error_and_leaves_nothing(
    guard: Guard, iris_contract: Contract, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    ingestor = guard.with_options(IngestOptions(max_bytes=1000))

    with pytest.raises(SourceError, match=message):
        await ingestor.ingest(iris_contract, CsvSource(path), actor="me")

    assert guard.count("data_snapshots") == guard.count("data_ingestions") == 0
    assert _files(guard) == []
    assert await guard.actions() == []


async def test_a_corrupt_parquet_file_leaves_nothing(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "iris.parquet"
    pq.write_table(pa.Table.from_pandas(iris, preserve_index=False), path)
    path.write_bytes(path.read_bytes()[:-100])

    with pytest.raises(SourceError, match="not a valid Parquet file"):
        await guard.ingestor.ingest(iris_contract, ParquetSource(path), actor="me")

    assert guard.count("data_ingestions") == 0
    assert _files(guard) == []


class FlakySource:
    """Fails transiently `failures` times, then reads `frame`."""

    def __init__(self, frame: pd.DataFrame, failures: int, error: type[Exception]) -> None:
        self.frame = frame
        self.failures = failures
        self.error = error
        self.calls = 0

    def describe(self) -> dict[str, Any]:
        return {"kind": "flaky"}

    def read(self, *, max_bytes: int, null_values: Any) -> Batch:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"connection refused (call {self.calls})")
        return Batch(self.frame.copy(), self.describe())


async def test_transient_failures_are_retried_with_exponential_backoff_on_the_clock(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, until: Until, balanced: Balanced
) -> None:
    events: list[SourceRetried] = []
    source = FlakySource(iris.astype(str), failures=2, error=SourceUnavailableError)
    ingestor = Ingestor(
        guard.database,
        guard.blobs,
        clock=guard.clock,
        options=IngestOptions(backoff_initial_s=0.5, backoff_multiplier=2.0),
        on_event=events.append,
    )

    task = asyncio.create_task(ingestor.ingest(iris_contract, source, actor="me"))
    await until(lambda: guard.clock.sleepers == 1)
    assert source.calls == 1
    guard.clock.advance(0.49)
    await asyncio.sleep(0.05)
    assert (source.calls, guard.clock.sleepers) == (1, 1)  # still waiting
    guard.clock.advance(0.01)
    await until(lambda: source.calls == 2 and guard.clock.sleepers == 1)
    guard.clock.advance(1.0)
    result = balanced(await task, guard)

    assert result.accepted
    assert source.calls == 3
    assert [(e.attempt, e.delay_s) for e in events] == [(1, 0.5), (2, 1.0)]
    assert events[0].error == "connection refused (call 1)"


async def test_the_last_transient_failure_is_raised_and_nothing_recorded(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, until: Until
) -> None:
    source = FlakySource(iris.astype(str), failures=99, error=SourceUnavailableError)
    ingestor = guard.with_options(IngestOptions(attempts=3, backoff_initial_s=1.0))

    task = asyncio.create_task(ingestor.ingest(iris_contract, source, actor="me"))
    for calls in (1, 2):
        await until(lambda calls=calls: source.calls == calls and guard.clock.sleepers == 1)  # type: ignore[misc]
        guard.clock.advance(30.0)
    with pytest.raises(SourceUnavailableError, match=r"call 3\) \(gave up after 3 attempt\(s\)\)"):
        await task

    assert source.calls == 3
    assert guard.count("data_ingestions") == 0


async def test_permanent_failures_are_not_retried(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame
) -> None:
    source = FlakySource(iris, failures=1, error=SourceError)

    with pytest.raises(SourceError, match="call 1"):
        await guard.ingestor.ingest(iris_contract, source, actor="me")

    assert source.calls == 1
    assert guard.clock.sleepers == 0


def test_the_backoff_grows_to_its_cap_and_options_are_checked() -> None:
    options = IngestOptions(backoff_initial_s=0.5, backoff_multiplier=3.0, backoff_max_s=10.0)

    assert [options.delay_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10.0]
    for bad, field in (
        ({"attempts": 0}, "attempts"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"backoff_initial_s": float("nan")}, "backoff_initial_s"),
        ({"max_failure_rows": -1}, "max_failure_rows"),
    ):
        with pytest.raises(ValueError, match=f"^{field}: "):
            IngestOptions(**bad)  # type: ignore[arg-type]


async def test_a_derived_snapshot_records_its_parents_and_transform(
    guard: Guard, iris_contract: Contract, iris_csv: Path, iris: pd.DataFrame, balanced: Balanced
) -> None:
    base = balanced(await guard.ingestor.ingest(iris_contract, CsvSource(iris_csv), actor="me"))
    assert base.snapshot is not None
    setosa = iris[iris["species"] == "setosa"]

    derived = balanced(
        await guard.ingestor.ingest(
            iris_contract,
            FrameSource(setosa, "setosa only"),
            actor="me",
            dataset="iris-setosa",
            parents=[base.snapshot.id],
            transform="filter species == setosa",
        )
    )

    assert derived.snapshot is not None
    assert derived.snapshot.parents == (base.snapshot.id,)
    assert derived.snapshot.transform == "filter species == setosa"
    assert derived.snapshot.dataset == "iris-setosa"
    assert derived.snapshot.rows == 50


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"parents": ["f" * 64]}, NotFoundError, "parents: no snapshot f{64}"),
        ({"parents": ["nope"]}, InvalidInputError, "parents: 'nope' is not a snapshot id"),
        ({"dataset": "bad name"}, InvalidInputError, "dataset: 'bad name' does not match"),
        ({"transform": ""}, InvalidInputError, "transform: 1 to 1000 characters"),
    ],
)
async def test_bad_lineage_is_refused_before_reading(
    guard: Guard,
    iris_contract: Contract,
    iris: pd.DataFrame,
    options: Any,
    error: Any,
    message: str,
) -> None:
    source = FlakySource(iris, failures=0, error=SourceError)

    with pytest.raises(error, match=message):
        await guard.ingestor.ingest(iris_contract, source, actor="me", **options)

    assert source.calls == 0


class _FailingAudit(AuditLog):
    def append_in(self, connection: Any, actor: str, action: str, *args: Any) -> Any:
        if action == "data.quarantine":
            raise StoreError("the audit log is down")
        return super().append_in(connection, actor, action, *args)


async def test_nothing_is_committed_unless_its_audit_records_are(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame
) -> None:
    frame = iris.astype(str)
    frame.loc[0, "species"] = "rose"
    audit = _FailingAudit(guard.database, clock=guard.clock)
    ingestor = Ingestor(guard.database, guard.blobs, clock=guard.clock, audit=audit)

    with pytest.raises(StoreError, match="the audit log is down"):
        await ingestor.ingest(iris_contract, FrameSource(frame, "x"), actor="me")

    assert guard.count("data_snapshots") == guard.count("data_ingestions") == 0
    assert await guard.actions() == []  # the data.snapshot record was rolled back too


async def test_failures_kept_row_by_row_are_capped_but_the_quarantine_has_every_reason(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    frame = iris.astype(str)
    frame.loc[:4, "species"] = "rose"
    ingestor = guard.with_options(IngestOptions(max_failure_rows=2))

    result = balanced(
        await ingestor.ingest(iris_contract, FrameSource(frame, "x"), actor="me"), guard
    )

    assert result.ingestion.failure_count == 5
    assert len(await guard.quarantine.failures(result.ingestion.id)) == 2
    rows = await guard.quarantine.read(result.ingestion.id, actor="me", reasons=True)
    assert rows["_seawall_reasons"].str.contains("rose").sum() == 5


async def test_concurrent_ingestions_of_the_same_content_make_one_snapshot(
    guard: Guard, iris_contract: Contract, iris_csv: Path, balanced: Balanced
) -> None:
    others = [Database(guard.database.engine.url) for _ in range(3)]
    try:
        ingestors = [Ingestor(db, guard.blobs, clock=guard.clock) for db in others]
        results = await asyncio.gather(
            *(i.ingest(iris_contract, CsvSource(iris_csv), actor="me") for i in ingestors)
        )
    finally:
        for db in others:
            await db.aclose()

    assert sum(balanced(r).created for r in results) == 1
    assert len({r.snapshot.id for r in results if r.snapshot}) == 1
    assert guard.count("data_snapshots") == 1
    assert guard.count("data_ingestions") == 3


async def test_the_database_keeps_the_counts_of_every_ingestion(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    frame = iris.astype(str)
    frame.loc[5, "petal_length"] = "-2"
    for source in (FrameSource(frame, "a"), FrameSource(frame.head(4), "b")):
        balanced(await guard.ingestor.ingest(iris_contract, source, actor="me"), guard)

    with guard.database.begin(read_only=True) as connection:
        rows = connection.execute(
            text("SELECT rows_in, rows_accepted, rows_quarantined, status FROM data_ingestions")
        ).all()
    assert sorted(tuple(r) for r in rows) == [(4, 0, 4, "rejected"), (150, 149, 1, "accepted")]
