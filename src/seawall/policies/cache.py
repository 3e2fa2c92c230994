"""Response cache: an exact-match answer for a request seen before, without calling the model.

The key (see `cache_codec`) covers everything that determines the answer, including the
model's resolved version and its backend *generation* (it goes up each time the model is
loaded), so when a model is reloaded or its name points at another version, entries of the old
one are never served. Entries live `ttl_s` in a `CacheStore` (memory LRU or Redis).

Per call, marked in `x-seawall-cache` and in `ctx.annotations["cache"]`:

- `hit`: the stored answer, addressed to the caller's own request id; the model is not called.
- `miss`: the model is called, and a complete answer is stored. Errors are never stored, nor
  answers a fallback gave (`x-seawall-fallback` set, or `ctx.annotations["fallback"]`), nor
  partial ones, nor any larger than `max_entry_bytes`.
- `bypass`: `Cache-Control: no-cache` skips the lookup but stores the fresh answer;
  `no-store` neither reads nor writes; a request the codec refuses (a streamed LLM call, a
  non-deterministic one, a stateful model's) passes through untouched. The reason is in
  `ctx.annotations["cache_reason"]`.

With `coalesce`, identical misses that arrive while one is being answered wait for that
answer instead of calling the model too (single flight, per process): each gets its own copy,
marked `hit` (and `ctx.annotations["cache_coalesced"]`). If the first call fails or its answer
cannot be stored, each waiting call calls the model itself; a waiting call's own deadline
still applies. A store that fails (Redis down) makes lookups misses, never failed requests.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.cache_codec import CacheCodec
from seawall.policies.cache_store import CacheStore, MemoryCacheStore

__all__ = [
    "CACHE_HEADER",
    "CacheEntrySkipped",
    "CacheOptions",
    "CachePolicy",
    "CacheSnapshot",
]

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

CACHE_HEADER = "x-seawall-cache"
FALLBACK_HEADER = "x-seawall-fallback"
#: How long an answer is served from the cache, in seconds.
DEFAULT_TTL_S = 300.0
#: Largest answer stored, in bytes as stored (larger ones are answered, not kept).
DEFAULT_MAX_ENTRY_BYTES = 1024 * 1024

Result = Literal["hit", "miss", "bypass"]
#: Why an answer was not stored.
SkipReason = Literal["fallback", "partial", "too_large", "unencodable", "unreadable"]


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """How long answers are kept, how large they may be, and whether identical misses share."""

    #: Seconds an answer is served after it was stored.
    ttl_s: float = DEFAULT_TTL_S
    #: Largest answer kept, in bytes as stored.
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES
    #: Identical calls arriving while one is answered wait for its answer (in this process).
    coalesce: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ttl_s) and self.ttl_s > 0):
            raise ValueError(f"ttl_s: must be a positive number, got {self.ttl_s}")
        if self.max_entry_bytes < 1:
            raise ValueError(f"max_entry_bytes: must be at least 1, got {self.max_entry_bytes}")


@dataclass(frozen=True, slots=True)
class CacheEntrySkipped:
    """An answer was not stored (too large, not encodable), or a stored one was unreadable."""

    target: str
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class CacheSnapshot:
    """Lookups by result since start, and the store's size when it is in memory (metrics)."""

    target: str
    hits: int
    misses: int
    bypasses: int
    #: Hits that waited for an identical call in flight (counted in `hits` too).
    coalesced: int
    entries: int | None
    size_bytes: int | None


class CachePolicy(Generic[RequestT, ResponseT]):
    """Answers repeated requests from a store; see the module doc for the rules."""

    name = "cache"

    def __init__(
        self,
        codec: CacheCodec[RequestT, ResponseT],
        options: CacheOptions | None = None,
        *,
        store: CacheStore | None = None,
        generation: Callable[[], int] | None = None,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = options or CacheOptions()
        self.target = target
        self._codec = codec
        self._clock = clock or SystemClock()
        # Not `store or ...`: an empty memory store is falsy (it has a length).
        self.store: CacheStore = MemoryCacheStore(clock=self._clock) if store is None else store
        self._generation = generation or _first_generation
        self._on_event = on_event
        self._flights: dict[bytes, asyncio.Future[bytes | None]] = {}
        self._hits = self._misses = self._bypasses = self._coalesced = 0

    def snapshot(self) -> CacheSnapshot:
        """Counts so far, and the memory store's entries and bytes (None for Redis)."""
        entries = size_bytes = None
        if isinstance(self.store, MemoryCacheStore):
            entries, size_bytes = len(self.store), self.store.size_bytes
        return CacheSnapshot(
            self.target,
            self._hits,
            self._misses,
            self._bypasses,
            self._coalesced,
            entries,
            size_bytes,
        )

    async def __call__(
        self, request: RequestT, ctx: CallContext, call_next: Handler[RequestT, ResponseT]
    ) -> ResponseT:
        directive = _directive(ctx.headers.get("cache-control"))
        reason = "no-store" if directive == "no-store" else self._codec.refusal(request)
        if reason is not None:
            self._mark(ctx, "bypass", reason)
            return await call_next(request, ctx)
        try:
            key = self._codec.key(request, self._generation())
        except (TypeError, ValueError):  # e.g. a parameter JSON cannot hold: serve, do not keep
            self._mark(ctx, "bypass", "unkeyable")
            return await call_next(request, ctx)
        if directive == "no-cache":
            self._mark(ctx, "bypass", "no-cache")
            return await self._fill(request, ctx, call_next, key)
        data = await self.store.get(key)
        if data is not None and (found := self._decode(data, request)) is not None:
            self._mark(ctx, "hit")
            return found
        flight = self._flights.get(key) if self.options.coalesce else None
        if flight is not None:
            shared = await self._follow(flight, ctx)
            if shared is not None and (found := self._decode(shared, request)) is not None:
                self._coalesced += 1
                ctx.annotations["cache_coalesced"] = True
                self._mark(ctx, "hit")
                return found
        self._mark(ctx, "miss")
        return await self._fill(request, ctx, call_next, key)

    async def _fill(
        self,
        request: RequestT,
        ctx: CallContext,
        call_next: Handler[RequestT, ResponseT],
        key: bytes,
    ) -> ResponseT:
        """Call the model; store a storable answer; hand it to identical calls waiting."""
        flight: asyncio.Future[bytes | None] | None = None
        if self.options.coalesce and key not in self._flights:
            flight = asyncio.get_running_loop().create_future()
            self._flights[key] = flight
        data: bytes | None = None
        try:
            response = await call_next(request, ctx)
            data = self._storable(request, response, ctx)
        finally:
            if flight is not None:
                # Before the store's write: waiters need not wait for Redis too. None (an
                # error, a cancellation, an answer not to keep) sends them to the model.
                del self._flights[key]
                flight.set_result(data)
        if data is not None:
            await self.store.set(key, data, self.options.ttl_s)
        return response

    async def _follow(self, flight: asyncio.Future[bytes | None], ctx: CallContext) -> bytes | None:
        """The stored form of the answer of the identical call in flight (None: none came)."""
        left = ctx.time_left(self._clock.monotonic())
        try:
            async with self._clock.timeout(left):
                # Shielded: a waiter that gives up must not cancel the answer for the others.
                return await asyncio.shield(flight)
        except TimeoutError:
            raise BackendTimeoutError(
                f"{self._who}: the deadline passed waiting for an identical call in flight"
            ) from None

    def _storable(self, request: RequestT, response: ResponseT, ctx: CallContext) -> bytes | None:
        """The answer as stored, or None (the reason in `ctx.annotations["cache_skipped"]`)."""
        reason: SkipReason
        if FALLBACK_HEADER in ctx.response_headers or "fallback" in ctx.annotations:
            reason = "fallback"
        elif not self._codec.complete(request, response):
            reason = "partial"
        else:
            try:
                data = self._codec.encode(response)
            except ValueError:
                reason = "unencodable"
            else:
                if len(data) <= self.options.max_entry_bytes:
                    return data
                reason = "too_large"
            self._on_event(CacheEntrySkipped(self.target, reason))
        ctx.annotations["cache_skipped"] = reason
        return None

    def _decode(self, data: bytes, request: RequestT) -> ResponseT | None:
        try:
            return self._codec.decode(data, request)
        except ValueError:  # another format, or damaged: a miss, and the answer overwrites it
            self._on_event(CacheEntrySkipped(self.target, "unreadable"))
            return None

    def _mark(self, ctx: CallContext, result: Result, reason: str | None = None) -> None:
        ctx.response_headers[CACHE_HEADER] = result
        ctx.annotations["cache"] = result
        if result == "hit":
            self._hits += 1
        elif result == "miss":
            self._misses += 1
        else:
            self._bypasses += 1
            ctx.annotations["cache_reason"] = reason

    @property
    def _who(self) -> str:
        return f"model {self.target!r}" if self.target else "the model"

    def __repr__(self) -> str:
        return f"CachePolicy({self.target!r}, ttl_s={self.options.ttl_s}, store={self.store!r})"


def _first_generation() -> int:
    return 0


def _directive(value: str | None) -> str | None:
    """`no-store`, `no-cache` or None, from a request's `Cache-Control` (no-store wins)."""
    if value is None:
        return None
    found = {part.partition("=")[0].strip().lower() for part in value.split(",")}
    if "no-store" in found:
        return "no-store"
    return "no-cache" if "no-cache" in found else None
