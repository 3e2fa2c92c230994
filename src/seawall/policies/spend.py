"""Where LLM spend adds up for budgets: in this process, or in Redis for every replica.

Both stores also hand every amount to a ledger (the database, written behind in batches), so
spend survives restarts and can be reported; a store starts each key's total from the ledger.
Redis keys are `seawall:spend:<principal>:<period>`, expiring a day after their period could
end; when Redis fails, the store keeps counting locally, logs a warning and reports the event.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from seawall.clock import Clock, SystemClock
from seawall.pipeline import EventSink, discard
from seawall.types import Usage

__all__ = [
    "LedgeredSpendStore",
    "MemorySpendStore",
    "RedisSpendStore",
    "SpendLedger",
    "SpendStore",
    "SpendStoreFailed",
]

logger = logging.getLogger("seawall.policies.spend")

DEFAULT_PREFIX = "seawall:spend:"
#: A key lives this long after its last add: longer than any period (a month) plus a day.
_TTL_S = 32 * 86_400
_WARN_INTERVAL_S = 10.0


class SpendStore(Protocol):
    """Where spend adds up: `spent` is the total so far, `add` records one call's cost."""

    async def spent(self, principal: str, period: str) -> float: ...

    async def add(
        self, principal: str, period: str, model: str, usd: float, usage: Usage
    ) -> None: ...


class SpendLedger(Protocol):
    """The record of spend (the database): totals to start from, amounts to keep."""

    async def total_usd(self, principal: str, period: str) -> float: ...

    def record(
        self,
        principal: str,
        period: str,
        model: str,
        usd: float,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        """Keep one call's spend; must not block (writes behind)."""
        ...


class MemorySpendStore:
    """Spend in this process only (one replica; forgotten at restart)."""

    def __init__(self) -> None:
        self._totals: dict[tuple[str, str], float] = {}

    async def spent(self, principal: str, period: str) -> float:
        return self._totals.get((principal, period), 0.0)

    async def add(self, principal: str, period: str, model: str, usd: float, usage: Usage) -> None:
        self._totals[(principal, period)] = self._totals.get((principal, period), 0.0) + usd


class LedgeredSpendStore:
    """One replica: totals start from the ledger once per key, then add up in memory."""

    def __init__(self, ledger: SpendLedger) -> None:
        self._ledger = ledger
        self._totals: dict[tuple[str, str], float] = {}

    async def spent(self, principal: str, period: str) -> float:
        key = (principal, period)
        if key not in self._totals:
            self._totals[key] = await self._ledger.total_usd(principal, period)
        return self._totals[key]

    async def add(self, principal: str, period: str, model: str, usd: float, usage: Usage) -> None:
        await self.spent(principal, period)
        self._totals[(principal, period)] += usd
        self._ledger.record(
            principal, period, model, usd, usage.prompt_tokens, usage.completion_tokens
        )


# KEYS[1]: the key; ARGV[1]: the amount to add (0 to read); ARGV[2]: the ledger's total, used
# only if the key does not exist yet; ARGV[3]: TTL in seconds. Replies the new total as a string.
_ADD_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[2])
end
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return total
"""


class SpendStoreFailed:
    """The shared spend store failed; this replica counts locally until it answers."""

    __slots__ = ("error", "target")

    def __init__(self, target: str, error: str) -> None:
        self.target = target
        self.error = error


class RedisSpendStore:
    """Every replica adds to one total per key in Redis (started from the ledger's total)."""

    def __init__(
        self,
        client: aioredis.Redis,
        ledger: SpendLedger,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock | None = None,
        on_event: EventSink = discard,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._script = client.register_script(_ADD_LUA)
        self.prefix = prefix
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._local = LedgeredSpendStore(_Unrecorded(ledger))
        self._warned_at = -math.inf
        self._seeds: dict[tuple[str, str], float] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def spent(self, principal: str, period: str) -> float:
        return await self._add(principal, period, 0.0)

    async def add(self, principal: str, period: str, model: str, usd: float, usage: Usage) -> None:
        self._ledger.record(
            principal, period, model, usd, usage.prompt_tokens, usage.completion_tokens
        )
        await self._add(principal, period, usd)

    async def _add(self, principal: str, period: str, usd: float) -> float:
        seed = await self._seed(principal, period)
        key = f"{self.prefix}{principal}:{period}"
        try:
            reply = await self._script(keys=[key], args=[repr(usd), repr(seed), str(_TTL_S)])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            await self._local.add(principal, period, "", usd, Usage())
            return await self._local.spent(principal, period)
        return float(reply)

    async def _seed(self, principal: str, period: str) -> float:
        # Read once per key and process: only used if Redis has no total for it (a new key, or
        # a Redis that lost its data), so a stale seed costs nothing once the key exists.
        key = (principal, period)
        if key not in self._seeds:
            self._seeds[key] = await self._ledger.total_usd(principal, period)
        return self._seeds[key]

    def _failed(self, exc: BaseException) -> None:
        self._on_event(SpendStoreFailed("budget", f"{type(exc).__name__}: {exc}"))
        now = self._clock.monotonic()
        if now - self._warned_at >= _WARN_INTERVAL_S:
            self._warned_at = now
            logger.warning(
                "the shared spend store failed (%s); budgets are counted by this replica alone "
                "until it answers",
                exc,
            )


class _Unrecorded:
    """The ledger's totals without recording again (the Redis store records every add itself)."""

    def __init__(self, ledger: SpendLedger) -> None:
        self._ledger = ledger

    async def total_usd(self, principal: str, period: str) -> float:
        return await self._ledger.total_usd(principal, period)

    def record(self, *args: object) -> None:
        return None
