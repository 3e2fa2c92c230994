"""Where the response cache keeps its entries: this process's memory (LRU), or Redis.

Both stores hold opaque bytes under opaque keys (the cache policy hashes and serializes), each
with a time to live. `MemoryCacheStore` is bounded by entries and by bytes and evicts the least
recently used; its TTLs run on the injected clock. `RedisCacheStore` writes `SET key value PX
ttl` under a key prefix, so every replica sees every entry; Redis's own `maxmemory` policy
bounds it (the policy bounds each value). A Redis failure never fails a request: a lookup that
fails is a miss and a write that fails is skipped; the store reports `CacheStoreFailed`, logs a
warning at most every `DEFAULT_WARN_INTERVAL_S`, and leaves Redis alone for `cooloff_s`, so a
dead Redis costs one timeout per cool-off, not one per request.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from seawall.clock import Clock, SystemClock
from seawall.pipeline import EventSink, discard

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "CacheStore",
    "CacheStoreFailed",
    "MemoryCacheStore",
    "RedisCacheStore",
]

logger = logging.getLogger("seawall.policies.cache")

#: Entries a memory store holds at most.
DEFAULT_MAX_ENTRIES = 10_000
#: Bytes (keys and values, plus `ENTRY_OVERHEAD_BYTES` each) a memory store holds at most.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: What one entry costs beyond its key and value (dict slot, tuple, bytes headers), roughly.
ENTRY_OVERHEAD_BYTES = 128
#: Every Redis key of the cache starts with this (then the model, then the entry's hash).
DEFAULT_PREFIX = "seawall:cache:"
#: Longest a Redis lookup or write may take before it counts as a failure (and a miss).
DEFAULT_TIMEOUT_S = 0.05
#: After a Redis failure, how long lookups are misses and writes are skipped without trying.
DEFAULT_COOLOFF_S = 1.0
#: Least time between two warnings about a failing Redis (every failure is still an event).
DEFAULT_WARN_INTERVAL_S = 10.0


class CacheStore(Protocol):
    """Bytes by key, each for a time: `get` is None for a missing or expired entry."""

    async def get(self, key: bytes) -> bytes | None: ...

    async def set(self, key: bytes, value: bytes, ttl_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class CacheStoreFailed:
    """The shared cache store failed; the lookup was a miss, or the entry was not written."""

    target: str
    operation: str
    error: str


class MemoryCacheStore:
    """An LRU of entries in this process, bounded by count and by bytes; TTLs on the clock."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        clock: Clock | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries: must be at least 1, got {max_entries}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes: must be at least 1, got {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock or SystemClock()
        # Least recently used first; each entry is (expires at, value).
        self._entries: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes held, counted as `max_bytes` counts them."""
        return self._bytes

    async def get(self, key: bytes) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock.monotonic() >= expires_at:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: bytes, value: bytes, ttl_s: float) -> None:
        cost = _cost(key, value)
        if cost > self.max_bytes or not ttl_s > 0:
            return  # could never fit: keep what is there rather than empty the store for it
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock.monotonic() + ttl_s, value)
        self._bytes += cost
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, key: bytes) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= _cost(key, value)

    def __repr__(self) -> str:
        return (
            f"MemoryCacheStore(entries={len(self._entries)}/{self.max_entries}, "
            f"bytes={self._bytes}/{self.max_bytes})"
        )


def _cost(key: bytes, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD_BYTES


class RedisCacheStore:
    """Entries in Redis under `prefix` + the key in hex, shared by every replica; never raises."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cooloff_s: float = DEFAULT_COOLOFF_S,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: must be positive, got {timeout_s}")
        if not cooloff_s >= 0:
            raise ValueError(f"cooloff_s: must be 0 or more, got {cooloff_s}")
        self._client = client
        self.prefix = prefix
        self._timeout_s = timeout_s
        self._cooloff_s = cooloff_s
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._target = target
        self._down_until = -math.inf
        self._warned_at = -math.inf

    @staticmethod
    def client(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> aioredis.Redis:
        """A client for `url` with socket timeouts of `timeout_s` and no retries (a miss is
        the fallback: redis-py's retries would multiply what a dead Redis costs a request)."""
        return aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )

    async def get(self, key: bytes) -> bytes | None:
        if self._cooling():
            return None
        try:
            async with self._clock.timeout(self._timeout_s):
                value = await self._client.get(self.prefix + key.hex())
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: bytes, value: bytes, ttl_s: float) -> None:
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms < 1 or self._cooling():
            return
        try:
            async with self._clock.timeout(self._timeout_s):
                await self._client.set(self.prefix + key.hex(), value, px=ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("set", exc)

    def _cooling(self) -> bool:
        return self._clock.monotonic() < self._down_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        # Not CancelledError (never caught here): a cancelled caller says nothing about Redis.
        error = _describe(exc, self._timeout_s)
        now = self._clock.monotonic()
        self._down_until = now + self._cooloff_s
        self._on_event(CacheStoreFailed(self._target, operation, error))
        if now - self._warned_at >= DEFAULT_WARN_INTERVAL_S:
            self._warned_at = now
            logger.warning(
                "the shared response cache failed (%s); lookups are misses until it answers",
                error,
                extra={"target": self._target, "operation": operation},
            )

    def __repr__(self) -> str:
        return f"RedisCacheStore(prefix={self.prefix!r}, timeout_s={self._timeout_s})"


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {timeout_s} s"
    return f"{type(exc).__name__}: {exc}"
