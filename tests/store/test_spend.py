"""SpendLedger: atomic UPSERT increments, exact under concurrent writers, threads and processes."""

from __future__ import annotations

import asyncio
import math
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import DataError

from seawall.clock import FakeClock
from seawall.store import Database, SpendDelta, SpendKey, SpendLedger, SpendTotal


async def test_adds_accumulate_per_model_and_stay_apart_per_key_and_period(
    migrated: Database,
) -> None:
    clock = FakeClock()
    ledger = SpendLedger(migrated, clock=clock)
    await ledger.add("alice", "2026-11", "gpt", 0.5, 100, 20)
    clock.advance(60)
    await ledger.add("alice", "2026-11", "gpt", 0.25, 50, 10)
    await ledger.add("alice", "2026-11", "claude", 2.0, 7, 3)
    await ledger.add("alice", "2026-12", "gpt", 9.0, 1, 1)
    await ledger.add("bob", "2026-11", "gpt", 4.0, 1, 1)
    stamp = datetime.fromtimestamp(clock.time(), UTC)
    assert await ledger.totals("alice", "2026-11") == [
        SpendTotal("claude", 2.0, 7, 3, 1, stamp),
        SpendTotal("gpt", 0.75, 150, 30, 2, stamp),
    ]
    assert await ledger.total_usd("alice", "2026-11") == 2.75
    assert await ledger.total_usd("alice", "2026-12") == 9.0
    assert await ledger.total_usd("bob", "2026-11") == 4.0


async def test_nothing_spent_is_zero(migrated: Database) -> None:
    ledger = SpendLedger(migrated)
    total = await ledger.total_usd("nobody", "2026-11")
    assert total == 0.0
    assert isinstance(total, float)
    assert await ledger.totals("nobody", "2026-11") == []


async def test_dollars_add_up_exactly_on_postgresql_and_closely_on_sqlite(
    migrated: Database,
) -> None:
    ledger = SpendLedger(migrated)
    for _ in range(10):
        await ledger.add("k", "p", "m", 0.1)
    total = await ledger.total_usd("k", "p")
    if migrated.dialect == "postgresql":
        assert total == 1.0  # NUMERIC: decimal arithmetic in the database
    else:
        assert total == pytest.approx(1.0, abs=1e-12)
        assert total != 1.0  # a double: 0.1 ten times is 0.9999999999999999


async def test_a_batch_is_one_transaction(migrated: Database) -> None:
    ledger = SpendLedger(migrated)
    batch = {
        SpendKey("a", "p", "m"): SpendDelta(1.0, requests=1),
        SpendKey("z", "p", "m"): SpendDelta(1.0, prompt_tokens=2**70, requests=1),  # > BIGINT
    }
    with pytest.raises((OverflowError, DataError)):
        await ledger.add_many(batch)
    assert await ledger.total_usd("a", "p") == 0.0


async def test_an_empty_batch_touches_no_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/s.db")
    db.close()
    await SpendLedger(db).add_many({})  # a closed database would refuse any work


@pytest.mark.parametrize(
    ("usd", "tokens", "message"),
    [
        (-0.01, 0, "usd: a cost is a finite number of dollars >= 0"),
        (math.nan, 0, "usd"),
        (math.inf, 0, "usd"),
        (0.0, -1, "prompt_tokens: a count >= 0"),
    ],
)
async def test_impossible_amounts_are_refused_before_any_write(
    migrated: Database, usd: float, tokens: int, message: str
) -> None:
    ledger = SpendLedger(migrated)
    with pytest.raises(ValueError, match=message):
        await ledger.add("k", "p", "m", usd, tokens, 0)
    assert await ledger.totals("k", "p") == []


def test_deltas_add_field_by_field() -> None:
    assert SpendDelta(0.5, 1, 2, 1) + SpendDelta(0.25, 10, 20, 2) == SpendDelta(0.75, 11, 22, 3)
    assert sorted([SpendKey("b", "p", "m"), SpendKey("a", "q", "m"), SpendKey("a", "p", "z")]) == [
        SpendKey("a", "p", "z"),
        SpendKey("a", "q", "m"),
        SpendKey("b", "p", "m"),
    ]


async def test_concurrent_writers_on_one_key_lose_nothing(database_url: str) -> None:
    db = Database(database_url, pool_size=8)
    try:
        db.upgrade()
        ledger = SpendLedger(db)
        # 8 connections on 8 threads race on the same row.
        await asyncio.gather(*(ledger.add("k", "p", "m", 0.125, 3, 5) for _ in range(400)))
        (total,) = await ledger.totals("k", "p")
        assert (total.usd, total.prompt_tokens, total.completion_tokens, total.requests) == (
            50.0,
            1200,
            2000,
            400,
        )
    finally:
        db.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from seawall.store import Database, SpendDelta, SpendKey, SpendLedger

    async def main(url: str, rounds: int, order: str) -> None:
        db = Database(url)
        db.upgrade()  # both processes migrate the same empty database at once
        ledger = SpendLedger(db)
        # The same keys given in opposite orders by the two processes must not deadlock.
        delta = SpendDelta(0.5, 1, 1, 1)
        batch = {SpendKey("shared", "2026-11", model): delta for model in order}
        for _ in range(rounds):
            await ledger.add("shared", "2026-11", "gpt", 0.25, 3, 7)
            await ledger.add_many(batch)
        await db.aclose()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    """
)


async def test_two_processes_adding_to_the_same_keys_lose_nothing(
    database_url: str, tmp_path: Path
) -> None:
    rounds = 150
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, database_url, str(rounds), order, cwd=tmp_path
        )
        for order in ("ab", "ba")
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(w.wait() for w in writers)), timeout=60)
    assert codes == [0, 0]
    db = Database(database_url)
    try:
        totals = {t.model: t for t in await SpendLedger(db).totals("shared", "2026-11")}
    finally:
        db.close()
    assert (totals["gpt"].usd, totals["gpt"].requests) == (0.25 * 2 * rounds, 2 * rounds)
    assert (totals["gpt"].prompt_tokens, totals["gpt"].completion_tokens) == (900, 2100)
    assert [(totals[m].usd, totals[m].requests) for m in "ab"] == [(150.0, 300)] * 2
