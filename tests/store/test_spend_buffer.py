"""SpendBuffer: write-behind batches on the clock, early writes, failures kept, flush at close."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import pytest
from sqlalchemy import text

from seawall.clock import FakeClock
from seawall.store import (
    Database,
    SpendBuffer,
    SpendBufferOptions,
    SpendDelta,
    SpendFlushed,
    SpendFlushFailed,
    SpendKey,
    SpendLedger,
    StoreError,
    StoreUnavailableError,
)

Until = Callable[[Callable[[], bool]], Awaitable[None]]
ALICE = SpendKey("alice", "2026-11", "gpt")
BOB = SpendKey("bob", "2026-11", "gpt")


class ScriptedWriter:
    """Records batches; fails the next `failures` writes; waits on `gate` when one is set."""

    def __init__(self) -> None:
        self.batches: list[dict[SpendKey, SpendDelta]] = []
        self.calls = 0
        self.failures = 0
        self.gate: asyncio.Event | None = None

    async def add_many(self, deltas: Mapping[SpendKey, SpendDelta]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("database sqlite:///x.db: database is locked")
        self.batches.append(dict(deltas))


async def settle() -> None:
    """Let every task on the loop run until it waits (the scripted writer never leaves it)."""
    for _ in range(20):
        await asyncio.sleep(0)


def _buffer(
    writer: ScriptedWriter, clock: FakeClock, events: list[object], max_keys: int = 1000
) -> SpendBuffer:
    options = SpendBufferOptions(max_keys=max_keys)
    return SpendBuffer(writer, options, clock=clock, on_event=events.append)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="flush_interval_s: must be > 0"):
        SpendBufferOptions(flush_interval_s=0)
    with pytest.raises(ValueError, match="max_keys: at least 1"):
        SpendBufferOptions(max_keys=0)


def test_defaults() -> None:
    assert SpendBufferOptions() == SpendBufferOptions(flush_interval_s=5.0, max_keys=1000)


async def test_deltas_are_merged_per_key_and_written_once_per_interval() -> None:
    writer, clock = ScriptedWriter(), FakeClock()
    events: list[object] = []
    buffer = _buffer(writer, clock, events)
    await buffer.start()
    buffer.add("alice", "2026-11", "gpt", 0.5, 100, 10)
    buffer.add("alice", "2026-11", "gpt", 0.25, 50, 5)
    buffer.add("bob", "2026-11", "gpt", 1.0, 1, 1)
    clock.advance(4.9)
    await settle()
    assert (writer.calls, buffer.pending_keys) == (0, 2)
    clock.advance(0.1)
    await settle()
    assert writer.batches == [{ALICE: SpendDelta(0.75, 150, 15, 2), BOB: SpendDelta(1.0, 1, 1, 1)}]
    assert events == [SpendFlushed(keys=2, usd=1.75, requests=3)]
    assert buffer.pending_keys == 0
    clock.advance(5.0)  # nothing recorded: no write at all
    await settle()
    assert writer.calls == 1
    await buffer.aclose()


async def test_a_full_buffer_is_written_before_the_interval_ends() -> None:
    writer, clock = ScriptedWriter(), FakeClock()
    events: list[object] = []
    buffer = _buffer(writer, clock, events, max_keys=3)
    await buffer.start()
    for principal in ("a", "b"):
        buffer.add(principal, "p", "m", 0.5)
    buffer.add("a", "p", "m", 0.5)  # same key: still 2 keys
    await settle()
    assert writer.calls == 0
    buffer.add("c", "p", "m", 0.5)
    await settle()
    assert [len(batch) for batch in writer.batches] == [3]
    assert buffer.pending_keys == 0
    await buffer.aclose()


async def test_a_failed_write_keeps_its_deltas_and_the_next_interval_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer, clock = ScriptedWriter(), FakeClock()
    events: list[object] = []
    writer.failures = 1
    buffer = _buffer(writer, clock, events, max_keys=2)
    await buffer.start()
    buffer.add("alice", "2026-11", "gpt", 0.5, 10, 1)
    with caplog.at_level(logging.WARNING, logger="seawall.store.spend"):
        clock.advance(5.0)
        await settle()
    assert events == [SpendFlushFailed(1, 0.5, "database sqlite:///x.db: database is locked")]
    assert "kept for the next write" in caplog.text
    assert buffer.pending_keys == 1
    assert buffer.pending_usd("alice", "2026-11") == 0.5
    # Over max_keys while the database is failing: no early retry that would hammer it.
    buffer.add("alice", "2026-11", "gpt", 0.25, 10, 1)
    buffer.add("bob", "2026-11", "gpt", 1.0)
    await settle()
    assert writer.calls == 1
    clock.advance(5.0)
    await settle()
    assert writer.batches == [{ALICE: SpendDelta(0.75, 20, 2, 2), BOB: SpendDelta(1.0, 0, 0, 1)}]
    assert events[-1] == SpendFlushed(2, 1.75, 3)
    assert buffer.pending_usd("alice", "2026-11") == 0.0
    await buffer.aclose()


async def test_close_writes_what_is_left_and_stops_the_background_task() -> None:
    writer, clock = ScriptedWriter(), FakeClock()
    before = len(asyncio.all_tasks())
    buffer = _buffer(writer, clock, [])
    await buffer.start()
    await buffer.start()  # idempotent
    assert len(asyncio.all_tasks()) == before + 1
    buffer.add("alice", "2026-11", "gpt", 0.5)
    await buffer.aclose()
    assert writer.batches == [{ALICE: SpendDelta(0.5, 0, 0, 1)}]
    assert len(asyncio.all_tasks()) == before
    with pytest.raises(StoreError, match="closed"):
        buffer.add("alice", "2026-11", "gpt", 0.5)


async def test_a_failed_final_write_is_raised_and_can_be_retried() -> None:
    writer, clock = ScriptedWriter(), FakeClock()
    writer.failures = 1
    buffer = _buffer(writer, clock, [])
    buffer.add("alice", "2026-11", "gpt", 0.5)
    with pytest.raises(StoreUnavailableError, match="database is locked"):
        await buffer.aclose()
    assert buffer.pending_keys == 1
    assert await buffer.flush() == 1
    assert writer.batches == [{ALICE: SpendDelta(0.5, 0, 0, 1)}]


async def test_pending_dollars_include_a_write_in_progress() -> None:
    writer, clock = ScriptedWriter(), FakeClock()
    writer.gate = asyncio.Event()
    buffer = _buffer(writer, clock, [])
    buffer.add("alice", "2026-11", "gpt", 1.0)
    buffer.add("bob", "2026-11", "gpt", 2.0)
    flushing = asyncio.create_task(buffer.flush())
    await settle()
    assert buffer.pending_keys == 0  # handed to the writer
    buffer.add("alice", "2026-11", "claude", 0.5)
    assert buffer.pending_usd("alice", "2026-11") == 1.5
    assert buffer.pending_usd("bob", "2026-11") == 2.0
    assert buffer.pending_usd("alice", "2026-12") == 0.0
    writer.gate.set()
    assert await flushing == 2
    assert buffer.pending_usd("alice", "2026-11") == 0.5
    assert buffer.pending_usd("bob", "2026-11") == 0.0


@pytest.mark.parametrize("write_fails", [False, True])
async def test_a_cancelled_flush_settles_its_batch_when_the_write_ends(write_fails: bool) -> None:
    writer, clock = ScriptedWriter(), FakeClock()
    events: list[object] = []
    writer.gate = asyncio.Event()
    writer.failures = int(write_fails)
    buffer = _buffer(writer, clock, events)
    buffer.add("alice", "2026-11", "gpt", 1.0)
    flushing = asyncio.create_task(buffer.flush())
    await settle()
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert buffer.pending_usd("alice", "2026-11") == 1.0  # still in flight
    writer.gate.set()
    await settle()
    assert buffer.pending_keys == int(write_fails)
    assert buffer.pending_usd("alice", "2026-11") == (1.0 if write_fails else 0.0)
    assert type(events[-1]) is (SpendFlushFailed if write_fails else SpendFlushed)


async def test_on_a_real_database_spend_survives_an_outage_exactly(
    migrated: Database, until: Until
) -> None:
    clock = FakeClock()
    events: list[object] = []
    ledger = SpendLedger(migrated, clock=clock)
    buffer = SpendBuffer(ledger, clock=clock, on_event=events.append)
    await buffer.start()
    for i in range(50):
        buffer.add("alice", "2026-11", f"model-{i % 2}", 0.5, 10, 2)
    clock.advance(5.0)
    await until(lambda: len(events) == 1)
    assert events == [SpendFlushed(2, 25.0, 50)]
    assert await ledger.total_usd("alice", "2026-11") == 25.0

    await migrated.run(_rename, migrated, "spend", "spend_away")
    for _ in range(10):
        buffer.add("alice", "2026-11", "model-0", 0.25, 1, 1)
    clock.advance(5.0)
    await until(lambda: len(events) == 2)
    assert isinstance(events[1], SpendFlushFailed)
    assert buffer.pending_usd("alice", "2026-11") == 2.5

    await migrated.run(_rename, migrated, "spend_away", "spend")
    buffer.add("alice", "2026-11", "model-1", 1.0)
    await buffer.aclose()
    totals = {t.model: t for t in await ledger.totals("alice", "2026-11")}
    assert (totals["model-0"].usd, totals["model-0"].requests) == (15.0, 35)
    assert (totals["model-1"].usd, totals["model-1"].requests) == (13.5, 26)
    assert buffer.pending_usd("alice", "2026-11") == 0.0


def _rename(db: Database, old: str, new: str) -> None:
    with db.begin() as connection:
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
