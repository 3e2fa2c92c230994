"""Token-bucket storages for rate limits: in this process's memory, or in Redis for every replica.

A decision covers several buckets at once (per key, per model, global) and is all or nothing:
the request's cost is taken from every bucket only if every bucket holds enough, so a bucket
that refuses never drains the others. Both storages make that check-then-take atomically: in
memory because the decision never awaits, in Redis because it is one Lua script that reads the
server's `TIME`, so replicas with skewed clocks still share one limit (the approach of Envoy's
global rate limit service and redis-cell, without a separate service or module).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from seawall.clock import Clock, SystemClock

__all__ = [
    "Bucket",
    "BucketState",
    "BucketStorage",
    "BucketStorageError",
    "Decision",
    "MemoryBucketStorage",
    "RedisBucketStorage",
]

#: Every Redis key this module writes starts with this.
DEFAULT_PREFIX = "seawall:rl:"
#: Longest a Redis decision may take (connect, send, answer) before it counts as a failure.
DEFAULT_TIMEOUT_S = 0.1
#: After a Redis failure, how long to answer "unavailable" without trying Redis again.
DEFAULT_COOLOFF_S = 1.0
#: How often the memory storage forgets buckets that have refilled (a full bucket = no entry).
DEFAULT_SWEEP_INTERVAL_S = 60.0
#: Redis keeps an idle bucket this long after it would be full, then drops it.
_TTL_MARGIN_MS = 1000


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: holds at most `burst` tokens, refilled at `rate_per_s` tokens a second."""

    key: str
    rate_per_s: float
    burst: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"rate_per_s: must be a positive number, got {self.rate_per_s}")
        if not (math.isfinite(self.burst) and self.burst > 0):
            raise ValueError(f"burst: must be a positive number, got {self.burst}")


@dataclass(frozen=True, slots=True)
class BucketState:
    """A bucket's tokens just after a decision (after taking the cost, if it was allowed)."""

    bucket: Bucket
    tokens: float

    def wait_s(self, cost: float) -> float:
        """Seconds until the bucket holds `cost` tokens: 0 if it does, infinite if it never can."""
        if cost > self.bucket.burst:
            return math.inf
        return max(0.0, (cost - self.tokens) / self.bucket.rate_per_s)

    def full_in_s(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.bucket.burst - self.tokens) / self.bucket.rate_per_s)


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one request: allowed by every bucket, or by none."""

    allowed: bool
    cost: float
    states: tuple[BucketState, ...]

    def blocking(self) -> BucketState | None:
        """The refusing bucket that needs the longest wait (None when allowed)."""
        if self.allowed or not self.states:
            return None
        return max(self.states, key=lambda s: s.wait_s(self.cost))


class BucketStorageError(Exception):
    """The storage could not decide; `attempted` is False when it was skipped while cooling off."""

    def __init__(self, message: str, *, attempted: bool, retry_in_s: float) -> None:
        super().__init__(message)
        self.attempted = attempted
        #: Seconds until the storage will be tried again.
        self.retry_in_s = retry_in_s


class BucketStorage(Protocol):
    """Decides atomically whether `cost` tokens can be taken from every bucket, and takes them."""

    async def acquire(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        """Take `cost` from all `buckets` if each holds enough, else from none."""
        ...

    async def debit(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        """Take `cost` from all `buckets` whatever they hold (down to -burst): a charge for
        what was already used, such as the completion tokens of an answer."""
        ...


class MemoryBucketStorage:
    """Buckets in this process, on the injected clock; every replica has its own."""

    def __init__(
        self, *, clock: Clock | None = None, sweep_interval_s: float = DEFAULT_SWEEP_INTERVAL_S
    ) -> None:
        self._clock = clock or SystemClock()
        self._sweep_interval_s = sweep_interval_s
        # key -> (tokens, monotonic time they were counted, time the bucket is full again).
        # A missing key is a full bucket, so refilled buckets can be forgotten.
        self._levels: dict[str, tuple[float, float, float]] = {}
        self._next_sweep = self._clock.monotonic() + sweep_interval_s

    @property
    def size(self) -> int:
        """How many buckets are stored (only those that may be below full)."""
        return len(self._levels)

    async def acquire(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        return self._decide(buckets, cost, force=False)

    async def debit(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        return self._decide(buckets, cost, force=True)

    def _decide(self, buckets: Sequence[Bucket], cost: float, *, force: bool) -> Decision:
        # No await in here: the read, the check and the write happen in one step of the loop.
        now = self._clock.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        levels = [self._level(b, now) for b in buckets]
        allowed = force or all(level >= cost for level in levels)
        if allowed and cost > 0:
            levels = [max(level - cost, -b.burst) for b, level in zip(buckets, levels, strict=True)]
            for b, level in zip(buckets, levels, strict=True):
                self._levels[b.key] = (level, now, now + (b.burst - level) / b.rate_per_s)
        states = tuple(BucketState(b, lv) for b, lv in zip(buckets, levels, strict=True))
        return Decision(allowed, cost, states)

    def _level(self, bucket: Bucket, now: float) -> float:
        saved = self._levels.get(bucket.key)
        if saved is None:
            return bucket.burst
        tokens, then, _ = saved
        return min(bucket.burst, tokens + max(0.0, now - then) * bucket.rate_per_s)

    def _sweep(self, now: float) -> None:
        # Without this, one entry per API key ever seen would stay forever.
        self._next_sweep = now + self._sweep_interval_s
        for key in [k for k, (_, _, full_at) in self._levels.items() if full_at <= now]:
            del self._levels[key]


# KEYS[i]: a bucket; ARGV[1]: the cost; ARGV[2i], ARGV[2i+1]: rate per second and burst of KEYS[i];
# then the TTL margin in ms, then 1 to take the cost whatever the buckets hold (a debit, down to
# -burst) or 0 to take it only if every bucket holds it.
# Replies {allowed (1 or 0), tokens of each bucket after the decision as strings} (a Lua number
# reply would be truncated to an integer). A refused decision writes nothing: a bucket's level is
# a function of its last write and the time, so there is nothing to update.
_DECIDE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local margin = tonumber(ARGV[#ARGV - 1])
local force = tonumber(ARGV[#ARGV])
local levels = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local saved = redis.call('HMGET', key, 'tokens', 'ts')
  local level = burst
  if saved[1] and saved[2] then
    local elapsed = math.max(0, now - tonumber(saved[2]))
    level = math.min(burst, tonumber(saved[1]) + elapsed * rate)
  end
  levels[i] = level
  if level < cost and force == 0 then allowed = 0 end
end
local reply = {allowed}
for i, key in ipairs(KEYS) do
  if allowed == 1 and cost > 0 then
    local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    levels[i] = math.max(levels[i] - cost, -burst)
    redis.call('HSET', key, 'tokens', string.format('%.17g', levels[i]),
               'ts', string.format('%.6f', now))
    redis.call('PEXPIRE', key, math.ceil((burst - levels[i]) / rate * 1000) + margin)
  end
  reply[i + 1] = string.format('%.17g', levels[i])
end
return reply
"""


class RedisBucketStorage:
    """Buckets in Redis, shared by every replica: one atomic Lua script per decision.

    Keys are `prefix + bucket.key` hashes (`tokens`, `ts`) that expire once the bucket would be
    full again, so idle buckets vanish. Time is the Redis server's, not the replica's. Any
    failure (refused connection, `timeout_s` exceeded, an error reply) raises
    `BucketStorageError`, and for `cooloff_s` afterwards the storage raises it again at once
    without touching Redis, so a dead Redis costs one timeout per cool-off, not one per request.
    All keys of one decision must live on one server (Redis Cluster would refuse them: CROSSSLOT).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cooloff_s: float = DEFAULT_COOLOFF_S,
        clock: Clock | None = None,
    ) -> None:
        if not (timeout_s > 0):
            raise ValueError(f"timeout_s: must be positive, got {timeout_s}")
        if not (cooloff_s >= 0):
            raise ValueError(f"cooloff_s: must be 0 or more, got {cooloff_s}")
        self._client = client
        self._script = client.register_script(_DECIDE_LUA)
        self.prefix = prefix
        self._timeout_s = timeout_s
        self._cooloff_s = cooloff_s
        self._clock = clock or SystemClock()
        self._down_until = -math.inf
        self._last_error = ""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cooloff_s: float = DEFAULT_COOLOFF_S,
        clock: Clock | None = None,
    ) -> RedisBucketStorage:
        """A storage with its own client: socket timeouts of `timeout_s` and no retries."""
        # redis-py retries timeouts by default (with backoff): that would multiply the time a
        # dead Redis costs each request. Falling back to local buckets is the retry here.
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        return cls(client, prefix=prefix, timeout_s=timeout_s, cooloff_s=cooloff_s, clock=clock)

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self._client.aclose()

    async def acquire(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        return await self._decide(buckets, cost, force=False)

    async def debit(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        return await self._decide(buckets, cost, force=True)

    async def _decide(self, buckets: Sequence[Bucket], cost: float, *, force: bool) -> Decision:
        now = self._clock.monotonic()
        if now < self._down_until:
            raise BucketStorageError(
                f"Redis is skipped for {self._down_until - now:.3f} s after a failure "
                f"({self._last_error})",
                attempted=False,
                retry_in_s=self._down_until - now,
            )
        keys = [self.prefix + b.key for b in buckets]
        args: list[str] = [repr(float(cost))]
        for b in buckets:
            args += [repr(float(b.rate_per_s)), repr(float(b.burst))]
        args += [str(_TTL_MARGIN_MS), "1" if force else "0"]
        try:
            async with self._clock.timeout(self._timeout_s):
                reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            # Not CancelledError: a cancelled caller says nothing about Redis's health.
            self._last_error = _describe(exc, self._timeout_s)
            self._down_until = self._clock.monotonic() + self._cooloff_s
            raise BucketStorageError(
                f"Redis failed: {self._last_error}", attempted=True, retry_in_s=self._cooloff_s
            ) from exc
        allowed, *levels = reply
        states = tuple(BucketState(b, float(lv)) for b, lv in zip(buckets, levels, strict=True))
        return Decision(int(allowed) == 1, cost, states)

    def __repr__(self) -> str:
        return f"RedisBucketStorage(prefix={self.prefix!r}, timeout_s={self._timeout_s})"


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {timeout_s} s"
    return f"{type(exc).__name__}: {exc}"
