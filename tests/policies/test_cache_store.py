"""Cache stores: a memory LRU (entries, bytes, TTL on the clock); Redis, where failure is a miss."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from seawall.clock import FakeClock
from seawall.policies.cache_store import (
    DEFAULT_WARN_INTERVAL_S,
    ENTRY_OVERHEAD_BYTES,
    CacheStoreFailed,
    MemoryCacheStore,
    RedisCacheStore,
)


def cost(key: bytes, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD_BYTES


# --- memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 100), "max_entries: must be at least 1, got 0"),
        ((1, 0), "max_bytes: must be at least 1, got 0"),
    ],
)
def test_memory_limits_are_checked(args: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemoryCacheStore(*args)


async def test_memory_evicts_the_least_recently_used_beyond_max_entries() -> None:
    store = MemoryCacheStore(max_entries=2, clock=FakeClock())
    await store.set(b"a", b"1", 60)
    await store.set(b"b", b"2", 60)
    assert await store.get(b"a") == b"1"  # a is now the most recently used
    await store.set(b"c", b"3", 60)

    assert [await store.get(k) for k in (b"a", b"b", b"c")] == [b"1", None, b"3"]
    assert len(store) == 2


async def test_memory_evicts_by_bytes_too() -> None:
    store = MemoryCacheStore(max_bytes=2 * cost(b"k0", b"x" * 100) + 10, clock=FakeClock())
    for i in range(3):
        await store.set(f"k{i}".encode(), b"x" * 100, 60)

    assert [await store.get(f"k{i}".encode()) is not None for i in range(3)] == [False, True, True]
    assert store.size_bytes == 2 * cost(b"k0", b"x" * 100) <= store.max_bytes


async def test_memory_keeps_what_it_holds_rather_than_take_an_entry_that_can_never_fit() -> None:
    store = MemoryCacheStore(max_bytes=cost(b"a", b"1") + 50, clock=FakeClock())
    await store.set(b"a", b"1", 60)
    await store.set(b"b", b"x" * 100, 60)
    assert (await store.get(b"a"), await store.get(b"b")) == (b"1", None)


async def test_memory_entries_expire_on_the_clock() -> None:
    clock = FakeClock()
    store = MemoryCacheStore(clock=clock)
    await store.set(b"a", b"1", 10.0)
    await store.set(b"never", b"1", 0.0)  # no time to live: not kept
    clock.advance(9.999)
    assert await store.get(b"a") == b"1"
    clock.advance(0.001)
    assert await store.get(b"a") is None
    assert (len(store), store.size_bytes) == (0, 0)


async def test_memory_overwriting_a_key_counts_its_bytes_once() -> None:
    store = MemoryCacheStore(clock=FakeClock())
    await store.set(b"a", b"1", 60)
    await store.set(b"a", b"22", 60)
    assert await store.get(b"a") == b"22"
    assert (len(store), store.size_bytes) == (1, cost(b"a", b"22"))


_KEYS = [b"a", b"b", b"c", b"d", b"e"]
_MAX_ENTRIES, _MAX_BYTES = 3, 3 * ENTRY_OVERHEAD_BYTES + 40


@settings(max_examples=60, stateful_step_count=40, deadline=None)
class MemoryStoreMachine(RuleBasedStateMachine):
    """Sets, gets and time passing in any order, against a reference LRU of (expiry, value)."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.store = MemoryCacheStore(_MAX_ENTRIES, _MAX_BYTES, clock=self.clock)
        self.model: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()

    def teardown(self) -> None:
        self.loop.close()

    def _expire(self, key: bytes) -> None:
        if key in self.model and self.clock.monotonic() >= self.model[key][0]:
            del self.model[key]

    @rule(key=st.sampled_from(_KEYS), size=st.integers(0, 60), ttl=st.sampled_from([1.0, 5.0]))
    def set(self, key: bytes, size: int, ttl: float) -> None:
        value = bytes([len(self.model)]) * size
        self.loop.run_until_complete(self.store.set(key, value, ttl))
        if cost(key, value) > _MAX_BYTES:
            return
        self.model.pop(key, None)
        self.model[key] = (self.clock.monotonic() + ttl, value)
        while len(self.model) > _MAX_ENTRIES or self._bytes() > _MAX_BYTES:
            self.model.popitem(last=False)

    @rule(key=st.sampled_from(_KEYS))
    def get(self, key: bytes) -> None:
        found = self.loop.run_until_complete(self.store.get(key))
        self._expire(key)
        expected = self.model[key][1] if key in self.model else None
        if key in self.model:
            self.model.move_to_end(key)
        assert found == expected

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def _bytes(self) -> int:
        return sum(cost(k, v) for k, (_, v) in self.model.items())

    @invariant()
    def bounded_and_matching(self) -> None:
        # Expired entries may linger until looked up or evicted, in both.
        assert len(self.store) == len(self.model) <= _MAX_ENTRIES
        assert self.store.size_bytes == self._bytes() <= _MAX_BYTES


TestMemoryStore = MemoryStoreMachine.TestCase


# --- Redis ----------------------------------------------------------------------------------


@pytest.fixture
async def cache_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = RedisCacheStore.client(redis_url, timeout_s=2.0)
    try:
        yield client
    finally:
        await client.aclose()


async def test_redis_stores_under_the_prefix_with_a_ttl_in_milliseconds(
    cache_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = RedisCacheStore(cache_client, prefix=redis_prefix, timeout_s=2.0)
    await store.set(b"\x01\xff", b"value", 30.0)

    assert await store.get(b"\x01\xff") == b"value"
    assert await store.get(b"\x02") is None
    assert await cache_client.get(f"{redis_prefix}01ff") == b"value"
    ttl_ms = await cache_client.pttl(f"{redis_prefix}01ff")
    assert 25_000 < ttl_ms <= 30_000


async def test_redis_writes_nothing_without_a_millisecond_to_live(
    cache_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = RedisCacheStore(cache_client, prefix=redis_prefix, timeout_s=2.0)
    await store.set(b"k", b"value", 0.0004)
    assert await cache_client.exists(f"{redis_prefix}6b") == 0


async def test_two_replicas_see_each_others_entries(redis_url: str, redis_prefix: str) -> None:
    first, second = (RedisCacheStore.client(redis_url, timeout_s=2.0) for _ in range(2))
    try:
        one = RedisCacheStore(first, prefix=redis_prefix, timeout_s=2.0)
        other = RedisCacheStore(second, prefix=redis_prefix, timeout_s=2.0)
        await one.set(b"k", b"from one", 30.0)
        assert await other.get(b"k") == b"from one"
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_dead_redis_is_a_miss_reported_then_left_alone_for_the_cooloff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    events: list[object] = []
    client = RedisCacheStore.client("redis://127.0.0.1:1/0", timeout_s=1.0)  # nothing listens
    store = RedisCacheStore(
        client, clock=clock, cooloff_s=1.0, on_event=events.append, target="iris:1"
    )
    try:
        with caplog.at_level(logging.WARNING, logger="seawall.policies.cache"):
            assert await store.get(b"k") is None
            await store.set(b"k", b"v", 30.0)  # during the cool-off: not tried
            clock.advance(1.0)
            await store.set(b"k", b"v", 30.0)  # tried again, failed again
            clock.advance(DEFAULT_WARN_INTERVAL_S)
            assert await store.get(b"k") is None
    finally:
        await client.aclose()

    assert [(e.operation, e.target) for e in events if isinstance(e, CacheStoreFailed)] == [
        ("get", "iris:1"),
        ("set", "iris:1"),
        ("get", "iris:1"),
    ]
    assert all("ConnectionError" in e.error for e in events if isinstance(e, CacheStoreFailed))
    # Logged at most every DEFAULT_WARN_INTERVAL_S: the first and the last, not the second.
    warnings = [r for r in caplog.records if "shared response cache failed" in r.getMessage()]
    assert len(warnings) == 2


async def test_a_silent_redis_times_out_on_the_clock_as_a_miss() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # read everything, answer nothing
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = FakeClock()
    events: list[CacheStoreFailed] = []
    client = RedisCacheStore.client(f"redis://127.0.0.1:{port}/0", timeout_s=30.0)
    store = RedisCacheStore(client, timeout_s=0.05, clock=clock, on_event=events.append)
    try:
        lookup = asyncio.create_task(store.get(b"k"))
        for _ in range(50):  # until the request is on the wire and the lookup waits
            await asyncio.sleep(0.01)
            if clock.sleepers:
                break
        clock.advance(0.05)
        assert await lookup is None
    finally:
        await client.aclose(close_connection_pool=True)
        server.close()
        await server.wait_closed()
    assert [e.error for e in events] == ["no answer within 0.05 s"]
