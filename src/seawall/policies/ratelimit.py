"""Rate limits and quotas: token buckets per API key, per model and global.

A request costs `cost(request)` units (1 by default; LLM tokens later) and passes only if every
applicable bucket holds that many: then the cost is taken from all of them, else from none (see
`seawall.policies.bucket`). Refusals are 429 with `Retry-After` = the time until every bucket
holds the cost. Every response, allowed or refused, carries `x-ratelimit-limit`,
`x-ratelimit-remaining` and `x-ratelimit-reset` (seconds until full) of the most restrictive
bucket, as GitHub's and the IETF RateLimit-header draft's limiters do.

When the shared storage (Redis) fails, decisions fall back to buckets in this process (each
replica then enforces the full limit on its own: at most N times the limit for N replicas) or
the policy fails closed with 503, as configured; either way a warning is logged at most once per
`warn_interval_s` and `RateLimitStorageFailed` is emitted for each failed attempt.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError, OverloadedError, RateLimitedError
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.bucket import (
    Bucket,
    BucketStorage,
    BucketStorageError,
    Decision,
    MemoryBucketStorage,
)

__all__ = [
    "ANONYMOUS",
    "OnStorageError",
    "RateLimit",
    "RateLimitOptions",
    "RateLimitPolicy",
    "RateLimitStorageFailed",
    "RateLimited",
    "Scope",
    "unit_cost",
]

logger = logging.getLogger("seawall.policies.ratelimit")

#: The key name callers without a principal share.
ANONYMOUS = "anonymous"


class Scope(StrEnum):
    """What a bucket counts: one API key's calls, one model's, or everything."""

    KEY = "key"
    MODEL = "model"
    GLOBAL = "global"


class OnStorageError(StrEnum):
    """What to do when the shared storage cannot decide."""

    #: Decide with buckets in this process's memory.
    LOCAL = "local"
    #: Refuse with 503 until the storage answers again (fail closed).
    DENY = "deny"


def unit_cost(request: object) -> float:
    """Every request costs one unit."""
    return 1.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate_per_s` units a second on average, up to `burst` at once."""

    rate_per_s: float
    burst: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"rate_per_s: must be a positive number, got {self.rate_per_s}")
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError(f"burst: must be a number of at least 1, got {self.burst}")


#: Limit for each API key (anonymous callers share one bucket); None: no per-key limit.
DEFAULT_KEY_LIMIT: RateLimit | None = None
#: Limit for the policy's target model, all callers together; None: no per-model limit.
DEFAULT_MODEL_LIMIT: RateLimit | None = None
#: Limit for everything that shares the storage; None: no global limit.
DEFAULT_GLOBAL_LIMIT: RateLimit | None = None
#: Per-key limits that replace `key_limit` for the named keys (quota tiers); None: no overrides.
DEFAULT_KEY_LIMITS: Mapping[str, RateLimit] | None = None
#: Units a request costs.
DEFAULT_COST: Callable[[Any], float] = unit_cost
#: What to do when the shared storage fails.
DEFAULT_ON_STORAGE_ERROR = OnStorageError.LOCAL
#: Seconds between two warnings about a failing storage (failures in between are counted).
DEFAULT_WARN_INTERVAL_S = 10.0


@dataclass(frozen=True, slots=True)
class RateLimitOptions:
    """Which buckets a request must pass, what it costs, and what to do without the storage."""

    #: Each API key's bucket (callers without a key share the "anonymous" one).
    key_limit: RateLimit | None = DEFAULT_KEY_LIMIT
    #: The target model's bucket, shared by all callers.
    model_limit: RateLimit | None = DEFAULT_MODEL_LIMIT
    #: One bucket for everything that shares the storage.
    global_limit: RateLimit | None = DEFAULT_GLOBAL_LIMIT
    #: Limits for named keys, replacing `key_limit` for them.
    key_limits: Mapping[str, RateLimit] | None = DEFAULT_KEY_LIMITS
    #: Units a request costs: `cost(request)`, a number >= 0.
    cost: Callable[[Any], float] = DEFAULT_COST
    #: `local` (buckets in this process) or `deny` (503) while the storage fails.
    on_storage_error: OnStorageError = DEFAULT_ON_STORAGE_ERROR
    #: Seconds between two warnings logged about a failing storage.
    warn_interval_s: float = DEFAULT_WARN_INTERVAL_S
    #: What a unit is, when not requests: prefixes the bucket keys (`tokens:key:app`) and
    #: suffixes the headers (`x-ratelimit-remaining-tokens`), as OpenAI names them.
    unit: str = ""

    def __post_init__(self) -> None:
        limits = (self.key_limit, self.model_limit, self.global_limit)
        if all(limit is None for limit in limits) and not self.key_limits:
            raise ValueError("key_limit: at least one of key, model or global limit is needed")
        try:
            object.__setattr__(self, "on_storage_error", OnStorageError(self.on_storage_error))
        except ValueError:
            raise ValueError(
                f"on_storage_error: expected 'local' or 'deny', got {self.on_storage_error!r}"
            ) from None
        if not (self.warn_interval_s >= 0):
            raise ValueError(f"warn_interval_s: must be 0 or more, got {self.warn_interval_s}")
        if self.key_limits is not None:  # a copy the caller cannot change afterwards
            object.__setattr__(self, "key_limits", MappingProxyType(dict(self.key_limits)))


@dataclass(frozen=True, slots=True)
class RateLimited:
    """A request was refused; `scope` and `key` name the refusing bucket with the longest wait."""

    target: str
    scope: str
    key: str
    retry_after_s: float
    cost: float = 1.0


@dataclass(frozen=True, slots=True)
class RateLimitStorageFailed:
    """The shared storage failed a decision; `fallback` says what decided instead."""

    target: str
    error: str
    fallback: str


@dataclass(frozen=True, slots=True)
class _Named:
    """A bucket with the scope and key name it stands for (for events and messages)."""

    bucket: Bucket
    scope: Scope
    name: str


RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class RateLimitPolicy(Generic[RequestT, ResponseT]):
    """Token buckets per API key, per model and global; 429 with `Retry-After` when one is empty.

    `storage` holds the buckets (`MemoryBucketStorage` on `clock` when not given; share one
    storage between the policies of every model so the global and per-key buckets are really
    global). Buckets are named `key:<principal>`, `anonymous`, `model:<target>` and `global`.
    """

    name = "ratelimit"

    def __init__(
        self,
        options: RateLimitOptions,
        *,
        storage: BucketStorage | None = None,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        if options.model_limit is not None and not target:
            raise ValueError("target: a per-model limit needs the model's name")
        self.options = options
        self.target = target
        self._clock = clock or SystemClock()
        self._storage: BucketStorage = (
            MemoryBucketStorage(clock=self._clock) if storage is None else storage
        )
        self._local = MemoryBucketStorage(clock=self._clock)
        self._on_event = on_event
        self._key_limits = dict(options.key_limits or {})
        self._shared = tuple(self._shared_buckets())
        # Bucket tuples by principal, built on first use: keys come from config, so few.
        self._by_principal: dict[str | None, tuple[_Named, ...]] = {}
        # In-process storage decides without waiting: no deadline timer needed around it.
        self._instant = isinstance(self._storage, MemoryBucketStorage)
        suffix = f"-{options.unit}" if options.unit else ""
        self._suffix = suffix
        self._header_names = (
            f"x-ratelimit-limit{suffix}",
            f"x-ratelimit-remaining{suffix}",
            f"x-ratelimit-reset{suffix}",
        )
        self._warned_at = -math.inf
        self._unwarned = 0

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        named = self._by_principal.get(ctx.principal)
        if named is None:
            named = self._buckets(ctx.principal)
            if len(self._by_principal) < _MAX_CACHED_PRINCIPALS:
                self._by_principal[ctx.principal] = named
        cost = self._cost(request)
        decision = await self._decide(named, cost, ctx)
        if decision.states:
            _set_headers(ctx, decision, self._header_names)
        if not decision.allowed:
            raise self._refusal(named, decision)
        return await call_next(request, ctx)

    def _shared_buckets(self) -> list[_Named]:
        out = []
        prefix = f"{self.options.unit}:" if self.options.unit else ""
        if (limit := self.options.model_limit) is not None:
            key = f"{prefix}model:{self.target}"
            out.append(_Named(Bucket(key, limit.rate_per_s, limit.burst), Scope.MODEL, self.target))
        if (limit := self.options.global_limit) is not None:
            bucket = Bucket(f"{prefix}global", limit.rate_per_s, limit.burst)
            out.append(_Named(bucket, Scope.GLOBAL, "global"))
        return out

    def _buckets(self, principal: str | None) -> tuple[_Named, ...]:
        name = principal or ANONYMOUS
        limit = self._key_limits.get(name, self.options.key_limit)
        if limit is None:
            return self._shared
        # A key literally named "anonymous" must not share the anonymous callers' bucket.
        key = f"key:{principal}" if principal else ANONYMOUS
        if self.options.unit:
            key = f"{self.options.unit}:{key}"
        mine = _Named(Bucket(key, limit.rate_per_s, limit.burst), Scope.KEY, name)
        return (mine, *self._shared)

    def _cost(self, request: RequestT) -> float:
        cost = float(self.options.cost(request))
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"cost: the cost function returned {cost}, not a number >= 0")
        return cost

    async def _decide(self, named: tuple[_Named, ...], cost: float, ctx: CallContext) -> Decision:
        buckets = [n.bucket for n in named]
        try:
            return await self._ask(buckets, cost, ctx)
        except BucketStorageError as exc:
            self._storage_failed(exc)
            if self.options.on_storage_error is OnStorageError.DENY:
                raise self._closed(buckets, exc, ctx) from None
        ctx.annotations["ratelimit_storage"] = "local"
        return await self._local.acquire(buckets, cost)

    async def _ask(self, buckets: list[Bucket], cost: float, ctx: CallContext) -> Decision:
        left = ctx.time_left(self._clock.monotonic())
        if left is not None and left <= 0:
            raise BackendTimeoutError(
                f"model {self.target!r}: the deadline passed before the rate limit was checked"
            )
        if left is None or self._instant:
            return await self._storage.acquire(buckets, cost)
        try:
            async with self._clock.timeout(left):
                return await self._storage.acquire(buckets, cost)
        except TimeoutError:
            raise BackendTimeoutError(
                f"model {self.target!r}: the deadline passed while the rate-limit storage "
                f"was deciding ({left:.3f} s left)"
            ) from None

    def _storage_failed(self, exc: BucketStorageError) -> None:
        mode = self.options.on_storage_error
        if exc.attempted:
            self._on_event(RateLimitStorageFailed(self.target, str(exc), mode.value))
        now = self._clock.monotonic()
        if now - self._warned_at < self.options.warn_interval_s:
            self._unwarned += 1
            return
        consequence = (
            "its requests are refused"
            if mode is OnStorageError.DENY
            else "its limits are enforced by this replica alone"
        )
        logger.warning(
            "model %r: the rate-limit storage failed (%s); %s until it answers "
            "(%d more failures since the last warning)",
            self.target,
            exc,
            consequence,
            self._unwarned,
            extra={"target": self.target, "fallback": mode.value},
        )
        self._warned_at = now
        self._unwarned = 0

    def _closed(
        self, buckets: list[Bucket], exc: BucketStorageError, ctx: CallContext
    ) -> Exception:
        wait = max(exc.retry_in_s, 0.0)
        tightest = min(buckets, key=lambda b: b.burst)
        ctx.response_headers.update(_header_values(tightest.burst, 0.0, wait, self._suffix))
        return OverloadedError(
            f"model {self.target!r}: the rate-limit storage is unavailable and the policy "
            f"fails closed; retry in {wait:.3f} s",
            retry_after_s=wait,
        )

    def _refusal(self, named: tuple[_Named, ...], decision: Decision) -> RateLimitedError:
        index = max(range(len(named)), key=lambda i: decision.states[i].wait_s(decision.cost))
        which, state = named[index], decision.states[index]
        wait = state.wait_s(decision.cost)
        self._on_event(RateLimited(self.target, which.scope.value, which.name, wait, decision.cost))
        limit = f"{_describe(which)} ({which.bucket.rate_per_s:g}/s, burst {which.bucket.burst:g})"
        if math.isinf(wait):
            return RateLimitedError(
                f"model {self.target!r}: a request costing {decision.cost:g} units can never "
                f"pass the rate limit of {limit}"
            )
        return RateLimitedError(
            f"model {self.target!r}: rate limit of {limit} exceeded; retry in {wait:.3f} s",
            retry_after_s=wait,
        )

    def __repr__(self) -> str:
        return f"RateLimitPolicy(target={self.target!r}, storage={self._storage!r})"


def _describe(named: _Named) -> str:
    if named.scope is Scope.KEY:
        return "anonymous callers" if named.bucket.key == ANONYMOUS else f"API key {named.name!r}"
    if named.scope is Scope.MODEL:
        return f"model {named.name!r}"
    return "all models"


# Float noise (4.999999999 tokens) must not show as one unit less, or a second more.
_EPSILON = 1e-9
#: Principals whose bucket tuples are kept (API keys come from config: this is plenty).
_MAX_CACHED_PRINCIPALS = 10_000


def _set_headers(ctx: CallContext, decision: Decision, names: tuple[str, str, str]) -> None:
    """The rate-limit headers of the tightest bucket (names built once: on every call's path)."""
    states = decision.states
    if len(states) == 1:
        state = states[0]
    else:
        state = decision.blocking() or min(states, key=lambda s: (s.tokens, s.bucket.burst))
    headers = ctx.response_headers
    headers[names[0]] = str(math.floor(state.bucket.burst + _EPSILON))
    headers[names[1]] = str(max(0, math.floor(state.tokens + _EPSILON)))
    headers[names[2]] = str(max(0, math.ceil(state.full_in_s() - _EPSILON)))


def _header_values(limit: float, tokens: float, reset_s: float, suffix: str = "") -> dict[str, str]:
    return {
        f"x-ratelimit-limit{suffix}": str(math.floor(limit + _EPSILON)),
        f"x-ratelimit-remaining{suffix}": str(max(0, math.floor(tokens + _EPSILON))),
        f"x-ratelimit-reset{suffix}": str(max(0, math.ceil(reset_s - _EPSILON))),
    }
