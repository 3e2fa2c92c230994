"""Snapshots on SQLite and PostgreSQL: found by id or prefix, read back verified and audited,
lineage walked, damage in the store found."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from sqlalchemy import text, update

from seawall.data.contract import Contract
from seawall.data.errors import SnapshotCorruptError
from seawall.data.records import SnapshotRecord
from seawall.data.sources import CsvSource, FrameSource
from seawall.data.tables import SnapshotRow
from seawall.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from tests.data.conftest import Balanced, Guard


async def _ingest(
    guard: Guard, contract: Contract, frame: pd.DataFrame, balanced: Balanced, **options: object
) -> SnapshotRecord:
    result = balanced(
        await guard.ingestor.ingest(contract, FrameSource(frame, "t"), actor="me", **options),  # type: ignore[arg-type]
        guard,
    )
    assert result.snapshot is not None
    return result.snapshot


async def test_a_snapshot_is_found_by_its_id_or_a_prefix(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    snapshot = await _ingest(guard, iris_contract, iris, balanced)

    assert await guard.snapshots.get(snapshot.id) == snapshot
    assert await guard.snapshots.get(snapshot.id[:6]) == snapshot
    with pytest.raises(NotFoundError, match="snapshot 000000: no such snapshot"):
        await guard.snapshots.get("000000")
    for bad in ("abc", "G" * 10, snapshot.id.upper(), snapshot.id + "0"):
        with pytest.raises(InvalidInputError, match="snapshot: 6 to 64 lower-case hex digits"):
            await guard.snapshots.get(bad)


async def test_a_prefix_of_several_ids_is_refused(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    snapshot = await _ingest(guard, iris_contract, iris, balanced)
    with guard.database.begin() as connection:
        for suffix in ("1", "2"):
            connection.execute(
                text(
                    "INSERT INTO data_snapshots SELECT :id, dataset, contract_name, "
                    "contract_version, contract_digest, source, transform, columns, rows, "
                    "rows_in, rows_quarantined, blob_digest, blob_bytes, profile, created_at, "
                    "created_by FROM data_snapshots WHERE id = :old"
                ),
                {"id": "abcdef" + suffix * 58, "old": snapshot.id},
            )

    with pytest.raises(InvalidInputError, match="'abcdef' is the start of several ids"):
        await guard.snapshots.get("abcdef")
    assert (await guard.snapshots.get("abcdef1")).id == "abcdef" + "1" * 58


async def test_snapshots_are_listed_newest_first_by_dataset(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    first = await _ingest(guard, iris_contract, iris, balanced)
    guard.clock.advance(60)
    second = await _ingest(guard, iris_contract, iris.head(100), balanced, dataset="iris-head")

    assert [s.id for s in await guard.snapshots.list_snapshots()] == [second.id, first.id]
    assert await guard.snapshots.list_snapshots(dataset="iris") == [first]
    assert await guard.snapshots.list_snapshots(limit=1) == [second]
    with pytest.raises(InvalidInputError, match="limit: 1 to 10000"):
        await guard.snapshots.list_snapshots(limit=0)


async def test_reading_returns_the_typed_rows_and_is_audited(
    guard: Guard, iris_contract: Contract, iris_csv: Path, iris: pd.DataFrame, balanced: Balanced
) -> None:
    result = balanced(
        await guard.ingestor.ingest(iris_contract, CsvSource(iris_csv), actor="me"), guard
    )
    assert result.snapshot is not None

    frame = await guard.snapshots.read(result.snapshot.id[:10], actor="key:trainer")

    assert frame.shape == (150, 6)
    assert frame["plant_id"].dtype == "Int64"
    pd.testing.assert_series_equal(
        frame["petal_width"], iris["petal_width"], check_names=False, check_dtype=False
    )
    record = (await guard.audit.records(limit=10))[-1]
    assert (record.action, record.actor) == ("data.read", "key:trainer")
    assert record.target == f"snapshot:{result.snapshot.id}"
    assert record.details == {"dataset": "iris", "rows": 150}


def _blob_path(guard: Guard, digest: str) -> Path:
    return Path(guard.blobs.uri(digest))


async def test_a_damaged_or_missing_file_is_refused_and_not_audited(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    snapshot = await _ingest(guard, iris_contract, iris, balanced)
    path = _blob_path(guard, snapshot.blob_digest)
    os.chmod(path, 0o644)
    data = path.read_bytes()
    path.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])

    with pytest.raises(SnapshotCorruptError, match="does not hash to its name"):
        await guard.snapshots.read(snapshot.id, actor="me")
    path.unlink()
    with pytest.raises(SnapshotCorruptError, match=f"blob {snapshot.blob_digest} is missing"):
        await guard.snapshots.read(snapshot.id, actor="me")
    assert "data.read" not in await guard.actions()


async def test_a_file_swapped_for_another_snapshots_is_refused(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    one = await _ingest(guard, iris_contract, iris, balanced)
    other = await _ingest(guard, iris_contract, iris.head(50), balanced)
    with guard.database.begin() as connection:  # someone points one at the other's file
        connection.execute(
            update(SnapshotRow)
            .where(SnapshotRow.id == one.id)
            .values(blob_digest=other.blob_digest)
        )

    with pytest.raises(SnapshotCorruptError, match="its rows do not hash to its id"):
        await guard.snapshots.read(one.id, actor="me")


async def test_lineage_walks_parents_breadth_first_each_once(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    root = await _ingest(guard, iris_contract, iris, balanced)
    left = await _ingest(
        guard, iris_contract, iris.head(60), balanced, parents=[root.id], transform="head"
    )
    right = await _ingest(
        guard, iris_contract, iris.tail(60), balanced, parents=[root.id], transform="tail"
    )
    both = await _ingest(
        guard,
        iris_contract,
        pd.concat([iris.head(60), iris.tail(60)]),
        balanced,
        parents=[left.id, right.id],
        transform="concat",
    )

    chain = await guard.snapshots.lineage(both.id)

    assert [s.id for s in chain] == [both.id, left.id, right.id, root.id]
    assert chain[0].parents == (left.id, right.id)
    assert [s.transform for s in chain] == ["concat", "head", "tail", "ingest"]
    assert await guard.snapshots.lineage(root.id) == [root]


async def test_check_finds_missing_and_altered_files(
    guard: Guard, iris_contract: Contract, iris: pd.DataFrame, balanced: Balanced
) -> None:
    frame = iris.astype(str)
    frame.loc[0, "species"] = "rose"
    result = balanced(
        await guard.ingestor.ingest(iris_contract, FrameSource(frame, "t"), actor="me"), guard
    )
    assert result.snapshot is not None
    assert result.ingestion.quarantine_digest is not None
    assert await guard.snapshots.check() == []

    _blob_path(guard, result.ingestion.quarantine_digest).unlink()
    path = _blob_path(guard, result.snapshot.blob_digest)
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes() + b"\0")

    problems = await guard.snapshots.check()
    assert problems == [
        f"snapshot {result.snapshot.id}: blob {result.snapshot.blob_digest} does not hash to "
        "its name",
        f"ingestion {result.ingestion.id} (quarantine): blob {result.ingestion.quarantine_digest} "
        f"is missing from {guard.blobs.root}",
    ]
