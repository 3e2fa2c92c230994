"""Spend stores: in memory, started from the ledger, and shared by replicas through Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from seawall.policies.spend import (
    LedgeredSpendStore,
    MemorySpendStore,
    RedisSpendStore,
    SpendStoreFailed,
)
from seawall.types import Usage


class FakeLedger:
    """The database's view: totals per key, and every record kept."""

    def __init__(self, totals: dict[tuple[str, str], float] | None = None) -> None:
        self.totals = dict(totals or {})
        self.records: list[tuple[str, str, str, float, int, int]] = []
        self.reads = 0

    async def total_usd(self, principal: str, period: str) -> float:
        self.reads += 1
        return self.totals.get((principal, period), 0.0)

    def record(
        self, principal: str, period: str, model: str, usd: float, prompt: int, completion: int
    ) -> None:
        self.records.append((principal, period, model, usd, prompt, completion))


async def test_memory_adds_per_key_and_period() -> None:
    store = MemorySpendStore()
    await store.add("app", "2026-11", "m", 1.5, Usage())
    await store.add("app", "2026-11", "m", 0.5, Usage())
    await store.add("app", "2026-12", "m", 9.0, Usage())
    assert await store.spent("app", "2026-11") == 2.0
    assert await store.spent("other", "2026-11") == 0.0


async def test_ledgered_starts_from_the_ledger_once_and_records_every_add() -> None:
    ledger = FakeLedger({("app", "2026-11"): 10.0})
    store = LedgeredSpendStore(ledger)
    assert await store.spent("app", "2026-11") == 10.0
    await store.add("app", "2026-11", "chat/primary", 0.25, Usage(100, 50))
    assert await store.spent("app", "2026-11") == 10.25
    assert ledger.reads == 1
    assert ledger.records == [("app", "2026-11", "chat/primary", 0.25, 100, 50)]


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    value = f"seawall:spend:test:{uuid.uuid4().hex}:"
    yield value
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=f"{value}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_two_replicas_share_one_total_on_redis(redis_url: str, prefix: str) -> None:
    ledger = FakeLedger({("app", "2026-11"): 3.0})
    stores = [
        RedisSpendStore(aioredis.Redis.from_url(redis_url), ledger, prefix=prefix) for _ in range(2)
    ]
    try:
        for i in range(10):
            await stores[i % 2].add("app", "2026-11", "m", 0.1, Usage(1, 1))
        totals = [await s.spent("app", "2026-11") for s in stores]
    finally:
        for s in stores:
            await s.aclose()
    assert totals == [pytest.approx(4.0), pytest.approx(4.0)]  # the ledger's 3.0 plus 10 x 0.1
    assert len(ledger.records) == 10


async def test_an_existing_redis_total_is_not_reseeded(redis_url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    await client.set(f"{prefix}app:2026-11", "7.5")
    store = RedisSpendStore(client, FakeLedger({("app", "2026-11"): 100.0}), prefix=prefix)
    try:
        assert await store.spent("app", "2026-11") == 7.5
        ttl = await client.ttl(f"{prefix}app:2026-11")
    finally:
        await store.aclose()
    assert ttl > 31 * 86_400


async def test_a_dead_redis_counts_locally_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    events: list[object] = []
    client = aioredis.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2
    )
    ledger = FakeLedger({("app", "2026-11"): 1.0})
    store = RedisSpendStore(client, ledger, on_event=events.append)
    try:
        await store.add("app", "2026-11", "m", 0.5, Usage())
        assert await store.spent("app", "2026-11") == 1.5
    finally:
        await store.aclose()
    assert any(isinstance(e, SpendStoreFailed) for e in events)
    assert "shared spend store failed" in caplog.text
    assert len(ledger.records) == 1  # still recorded in the ledger, once
