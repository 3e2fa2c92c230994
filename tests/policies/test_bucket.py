"""Token-bucket storages: exact arithmetic in memory, all-or-nothing decisions, Redis atomicity."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from fractions import Fraction

import pytest
import redis.asyncio as aioredis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from seawall.clock import FakeClock, SystemClock
from seawall.policies.bucket import (
    Bucket,
    BucketState,
    BucketStorageError,
    Decision,
    MemoryBucketStorage,
    RedisBucketStorage,
)

A = Bucket("a", rate_per_s=2.0, burst=5.0)
B = Bucket("b", rate_per_s=1.0, burst=3.0)


def tokens(decision: Decision) -> list[float]:
    return [s.tokens for s in decision.states]


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "burst", "field"),
    [(0.0, 1.0, "rate_per_s"), (-1.0, 1.0, "rate_per_s"), (math.inf, 1.0, "rate_per_s"),
     (1.0, 0.0, "burst"), (1.0, math.nan, "burst")],
)  # fmt: skip
def test_a_bucket_needs_a_positive_rate_and_burst(rate: float, burst: float, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        Bucket("k", rate, burst)


def test_wait_and_refill_times_follow_from_the_tokens() -> None:
    state = BucketState(A, tokens=0.5)
    assert state.wait_s(1.0) == 0.25  # half a token at 2 a second
    assert state.wait_s(0.5) == 0.0
    assert state.wait_s(5.0) == 2.25
    assert state.wait_s(5.5) == math.inf  # more than the burst: never
    assert state.full_in_s() == 2.25
    assert BucketState(A, tokens=5.0).full_in_s() == 0.0


def test_blocking_is_the_refusing_bucket_with_the_longest_wait() -> None:
    states = (BucketState(A, 0.0), BucketState(B, 0.5))
    refused = Decision(False, 2.0, states)  # A: 2/2 = 1 s; B: 1.5/1 = 1.5 s
    assert refused.blocking() is states[1]
    assert Decision(True, 1.0, states).blocking() is None


# --- memory ------------------------------------------------------------------------------------


async def test_a_new_bucket_starts_full_and_loses_the_cost() -> None:
    storage = MemoryBucketStorage(clock=FakeClock())
    decision = await storage.acquire([A], 1.0)
    assert decision.allowed
    assert tokens(decision) == [4.0]


async def test_the_burst_passes_at_once_then_the_rate_refills() -> None:
    clock = FakeClock()
    storage = MemoryBucketStorage(clock=clock)
    outcomes = [(await storage.acquire([A], 1.0)).allowed for _ in range(7)]
    assert outcomes == [True] * 5 + [False] * 2
    refused = await storage.acquire([A], 1.0)
    assert tokens(refused) == [0.0]
    assert refused.states[0].wait_s(1.0) == 0.5
    clock.advance(0.25)  # half a token: still refused, and a refusal takes nothing
    assert tokens(await storage.acquire([A], 1.0)) == [0.5]
    clock.advance(0.25)
    assert tokens(await storage.acquire([A], 1.0)) == [0.0]
    clock.advance(100.0)  # refills up to the burst, not beyond
    assert tokens(await storage.acquire([A], 0.0)) == [5.0]


async def test_a_decision_takes_from_every_bucket_or_from_none() -> None:
    clock = FakeClock()
    storage = MemoryBucketStorage(clock=clock)
    assert tokens(await storage.acquire([B], 3.0)) == [0.0]  # B is empty now
    refused = await storage.acquire([A, B], 1.0)
    assert not refused.allowed
    assert tokens(refused) == [5.0, 0.0]
    assert tokens(await storage.acquire([A], 0.0)) == [5.0]  # A kept its tokens
    clock.advance(1.0)
    allowed = await storage.acquire([A, B], 1.0)
    assert allowed.allowed
    assert tokens(allowed) == [4.0, 0.0]


async def test_a_cost_above_one_and_above_the_burst() -> None:
    storage = MemoryBucketStorage(clock=FakeClock())
    assert tokens(await storage.acquire([A], 3.0)) == [2.0]
    refused = await storage.acquire([A], 3.0)
    assert not refused.allowed
    assert refused.states[0].wait_s(3.0) == 0.5
    too_big = await storage.acquire([A], 6.0)
    assert not too_big.allowed
    assert too_big.states[0].wait_s(6.0) == math.inf


async def test_cost_zero_reads_without_taking_or_storing() -> None:
    storage = MemoryBucketStorage(clock=FakeClock())
    assert (await storage.acquire([A, B], 0.0)).allowed
    assert storage.size == 0


async def test_refilled_buckets_are_forgotten_by_the_sweep() -> None:
    clock = FakeClock()
    storage = MemoryBucketStorage(clock=clock, sweep_interval_s=10.0)
    for i in range(100):
        await storage.acquire([Bucket(f"key:{i}", 1.0, 2.0)], 1.0)
    await storage.acquire([Bucket("slow", 0.01, 2.0)], 1.0)  # full again only after 100 s
    assert storage.size == 101
    clock.advance(10.0)
    await storage.acquire([], 0.0)
    assert storage.size == 1
    assert tokens(await storage.acquire([Bucket("slow", 0.01, 2.0)], 0.0)) == [pytest.approx(1.1)]


class MemoryMachine(RuleBasedStateMachine):
    """MemoryBucketStorage against exact rationals (dyadic times and rates: no rounding)."""

    BUCKETS = (Bucket("x", 1.0, 3.0), Bucket("y", 2.0, 5.0), Bucket("z", 8.0, 2.0))

    @initialize()
    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(start=0.0)
        self.storage = MemoryBucketStorage(clock=self.clock, sweep_interval_s=4.0)
        self.now = Fraction(0)
        self.model: dict[str, tuple[Fraction, Fraction]] = {}

    def level(self, bucket: Bucket) -> Fraction:
        burst = Fraction(bucket.burst)
        if bucket.key not in self.model:
            return burst
        tokens, then = self.model[bucket.key]
        return min(burst, tokens + (self.now - then) * Fraction(bucket.rate_per_s))

    @rule(sixty_fourths=st.integers(0, 200))
    def advance(self, sixty_fourths: int) -> None:
        self.clock.advance(sixty_fourths / 64)
        self.now += Fraction(sixty_fourths, 64)

    @rule(
        chosen=st.lists(st.sampled_from(BUCKETS), min_size=1, max_size=3, unique=True),
        cost=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 6.0]),
    )
    def acquire(self, chosen: list[Bucket], cost: float) -> None:
        decision = self.loop.run_until_complete(self.storage.acquire(chosen, cost))
        levels = [self.level(b) for b in chosen]
        expected = all(level >= Fraction(cost) for level in levels)
        assert decision.allowed == expected
        if expected and cost > 0:
            levels = [level - Fraction(cost) for level in levels]
            for bucket, level in zip(chosen, levels, strict=True):
                self.model[bucket.key] = (level, self.now)
        assert [Fraction(t) for t in tokens(decision)] == levels

    @invariant()
    def levels_stay_between_zero_and_the_burst(self) -> None:
        for bucket in self.BUCKETS:
            assert 0 <= self.level(bucket) <= Fraction(bucket.burst)

    def teardown(self) -> None:
        self.loop.close()


TestMemoryMachine = MemoryMachine.TestCase
TestMemoryMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# --- Redis -------------------------------------------------------------------------------------

# Slow enough that the real time a test takes refills nothing measurable.
SLOW = 1e-6


@pytest.fixture
async def storage(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisBucketStorage]:
    store = RedisBucketStorage.from_url(redis_url, prefix=redis_prefix, timeout_s=1.0)
    try:
        yield store
    finally:
        await store.aclose()


async def test_redis_keeps_the_same_arithmetic(storage: RedisBucketStorage) -> None:
    bucket = Bucket("k", SLOW, 5.0)
    outcomes = [(await storage.acquire([bucket], 1.0)).allowed for _ in range(6)]
    assert outcomes == [True] * 5 + [False]
    assert tokens(await storage.acquire([bucket], 0.0)) == [pytest.approx(0.0, abs=1e-4)]
    costly = Bucket("costly", SLOW, 10.0)
    assert tokens(await storage.acquire([costly], 2.5)) == [pytest.approx(7.5, abs=1e-4)]
    too_big = await storage.acquire([costly], 11.0)
    assert not too_big.allowed


async def test_redis_refills_at_the_rate_on_server_time(storage: RedisBucketStorage) -> None:
    bucket = Bucket("k", 20.0, 4.0)
    for _ in range(4):
        assert (await storage.acquire([bucket], 1.0)).allowed
    assert not (await storage.acquire([bucket], 1.0)).allowed
    await asyncio.sleep(0.1)  # real time: Redis's clock decides the refill (2 tokens)
    level = tokens(await storage.acquire([bucket], 0.0))[0]
    assert 1.9 <= level <= 3.0


async def test_redis_takes_from_every_bucket_or_from_none(
    storage: RedisBucketStorage, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    a, b = Bucket("a", SLOW, 5.0), Bucket("b", SLOW, 1.0)
    assert (await storage.acquire([b], 1.0)).allowed
    refused = await storage.acquire([a, b], 1.0)
    assert not refused.allowed
    assert tokens(refused) == [5.0, pytest.approx(0.0, abs=1e-4)]
    assert await redis_client.exists(f"{redis_prefix}a") == 0  # a refusal writes nothing


async def test_redis_keys_expire_once_the_bucket_would_be_full(
    storage: RedisBucketStorage, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    await storage.acquire([Bucket("k", 2.0, 10.0)], 3.0)  # full again in 1.5 s
    key = f"{redis_prefix}k"
    assert key.startswith("seawall:rl:")
    assert await redis_client.hkeys(key) == ["tokens", "ts"]
    ttl_ms = await redis_client.pttl(key)
    assert 2000 < ttl_ms <= 2500  # 1.5 s until full + 1 s of margin
    await storage.acquire([Bucket("k", 2.0, 10.0)], 0.0)
    assert await redis_client.pttl(key) <= ttl_ms  # a read does not extend it


async def test_redis_decisions_are_atomic_across_clients(redis_url: str, redis_prefix: str) -> None:
    stores = [RedisBucketStorage.from_url(redis_url, prefix=redis_prefix, timeout_s=2.0)
              for _ in range(2)]  # fmt: skip
    bucket, other = Bucket("shared", SLOW, 50.0), Bucket("other", SLOW, 1000.0)
    try:
        decisions = await asyncio.gather(
            *(stores[i % 2].acquire([bucket, other], 1.0) for i in range(200))
        )
        # Exactly the burst passes, and each bucket lost exactly what was allowed.
        assert sum(d.allowed for d in decisions) == 50
        final = await stores[0].acquire([bucket, other], 0.0)
        assert tokens(final) == [pytest.approx(0.0, abs=1e-2), pytest.approx(950.0, abs=1e-2)]
    finally:
        for store in stores:
            await store.aclose()


async def test_redis_time_not_the_replica_clock_drives_the_buckets(
    redis_url: str, redis_prefix: str
) -> None:
    # Two replicas whose clocks are a day apart still see one bucket.
    early = RedisBucketStorage.from_url(redis_url, prefix=redis_prefix, clock=FakeClock(0.0))
    late = RedisBucketStorage.from_url(redis_url, prefix=redis_prefix, clock=FakeClock(86_400.0))
    bucket = Bucket("k", SLOW, 2.0)
    try:
        assert (await early.acquire([bucket], 1.0)).allowed
        assert (await late.acquire([bucket], 1.0)).allowed
        assert not (await early.acquire([bucket], 1.0)).allowed
    finally:
        await early.aclose()
        await late.aclose()


async def test_redis_reloads_the_script_after_a_flush(
    storage: RedisBucketStorage, redis_client: aioredis.Redis
) -> None:
    await redis_client.script_flush()
    assert (await storage.acquire([Bucket("k", SLOW, 1.0)], 1.0)).allowed


async def test_an_unreachable_redis_fails_then_cools_off() -> None:
    clock = FakeClock()
    store = RedisBucketStorage.from_url(
        "redis://127.0.0.1:1/0", timeout_s=0.1, cooloff_s=1.0, clock=clock
    )
    try:
        with pytest.raises(BucketStorageError) as first:
            await store.acquire([A], 1.0)
        assert first.value.attempted
        assert "ConnectionError" in str(first.value)
        assert first.value.retry_in_s == 1.0
        clock.advance(0.4)
        with pytest.raises(BucketStorageError) as skipped:
            await store.acquire([A], 1.0)
        assert not skipped.value.attempted
        assert skipped.value.retry_in_s == pytest.approx(0.6)
        clock.advance(0.6)
        with pytest.raises(BucketStorageError) as again:
            await store.acquire([A], 1.0)
        assert again.value.attempted
    finally:
        await store.aclose()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers: a Redis that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_hanging_redis_fails_within_the_timeout(silent_server: int) -> None:
    store = RedisBucketStorage.from_url(
        f"redis://127.0.0.1:{silent_server}/0", timeout_s=0.05, clock=SystemClock()
    )
    try:
        started = time.monotonic()
        with pytest.raises(BucketStorageError, match=r"no answer within 0.05 s|Timeout"):
            await store.acquire([A], 1.0)
        assert time.monotonic() - started < 0.5
        assert len(asyncio.all_tasks()) == 1  # nothing left running but this test
    finally:
        await store.aclose()


def test_redis_storage_options_are_checked() -> None:
    client = aioredis.Redis()
    with pytest.raises(ValueError, match=r"^timeout_s: "):
        RedisBucketStorage(client, timeout_s=0.0)
    with pytest.raises(ValueError, match=r"^cooloff_s: "):
        RedisBucketStorage(client, cooloff_s=-1.0)
    assert repr(RedisBucketStorage(client)) == (
        "RedisBucketStorage(prefix='seawall:rl:', timeout_s=0.1)"
    )


async def test_a_debit_takes_whatever_the_bucket_holds_down_to_minus_the_burst() -> None:
    clock = FakeClock()
    store = MemoryBucketStorage(clock=clock)
    bucket = Bucket("tpm", rate_per_s=10.0, burst=100.0)
    assert tokens(await store.debit([bucket], 150.0)) == [-50.0]
    assert tokens(await store.debit([bucket], 500.0)) == [-100.0]  # debt is bounded
    refused = await store.acquire([bucket], 1.0)
    assert not refused.allowed
    assert refused.states[0].wait_s(1.0) == pytest.approx(10.1)
    clock.advance(10.1)
    assert (await store.acquire([bucket], 1.0)).allowed


async def test_redis_debits_like_memory(storage: RedisBucketStorage) -> None:
    bucket = Bucket("tpm", rate_per_s=0.001, burst=100.0)
    debited = await storage.debit([bucket], 130.0)
    assert debited.allowed
    assert tokens(debited)[0] == pytest.approx(-30.0, abs=0.01)
    assert not (await storage.acquire([bucket], 1.0)).allowed
    assert tokens(await storage.debit([bucket], 1000.0))[0] == pytest.approx(-100.0, abs=0.01)
