"""`SpendBuffer`: spend added up in memory and written to the ledger in batches (write-behind).

Recording a call's cost must not cost a database round trip on the request path. The buffer
sums deltas per (principal, period, model) and a background task writes them every
`flush_interval_s` on the injected clock, in one transaction, or earlier once `max_keys`
distinct keys are waiting. A write that fails keeps its deltas: they are merged back and
written with the next batch, so spend is never dropped (a commit whose acknowledgement is lost
may be counted twice: at-least-once). After a failure, early writes pause until the next
interval, so a dead database is not hammered. `aclose()` writes whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from seawall.clock import Clock, SystemClock
from seawall.store.errors import StoreError
from seawall.store.spend import SpendDelta, SpendKey

__all__ = [
    "DEFAULT_FLUSH_INTERVAL_S",
    "DEFAULT_MAX_KEYS",
    "SpendBuffer",
    "SpendBufferOptions",
    "SpendFlushFailed",
    "SpendFlushed",
    "SpendWriter",
]

logger = logging.getLogger("seawall.store.spend")

#: Seconds between two writes of the accumulated spend.
DEFAULT_FLUSH_INTERVAL_S = 5.0
#: Distinct (principal, period, model) keys waiting that start a write before the interval ends.
DEFAULT_MAX_KEYS = 1_000


class SpendWriter(Protocol):
    """Where batches go: `SpendLedger` (or a test double)."""

    async def add_many(self, deltas: Mapping[SpendKey, SpendDelta]) -> None: ...


@dataclass(frozen=True, slots=True)
class SpendBufferOptions:
    """How often, and how early, the buffer writes."""

    #: Seconds between two writes of the accumulated spend.
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    #: Distinct keys waiting that start a write at once (bounds memory under many keys).
    max_keys: int = DEFAULT_MAX_KEYS

    def __post_init__(self) -> None:
        if not self.flush_interval_s > 0:
            raise ValueError(f"flush_interval_s: must be > 0, got {self.flush_interval_s}")
        if self.max_keys < 1:
            raise ValueError(f"max_keys: at least 1, got {self.max_keys}")


@dataclass(frozen=True, slots=True)
class SpendFlushed:
    """A batch was written to the database."""

    keys: int
    usd: float
    requests: int


@dataclass(frozen=True, slots=True)
class SpendFlushFailed:
    """A batch could not be written; its deltas are kept for the next write."""

    keys: int
    usd: float
    error: str


@dataclass(slots=True)
class _Batch:
    """Deltas per key, plus dollars per (principal, period) so `pending_usd` is O(1)."""

    deltas: dict[SpendKey, SpendDelta] = field(default_factory=dict)
    usd: dict[tuple[str, str], float] = field(default_factory=dict)

    def add(self, key: SpendKey, delta: SpendDelta) -> None:
        known = self.deltas.get(key)
        self.deltas[key] = delta if known is None else known + delta
        owner = (key.principal, key.period)
        self.usd[owner] = self.usd.get(owner, 0.0) + delta.usd


def _discard(event: object) -> None:
    """Drop the event."""


class SpendBuffer:
    """Write-behind spend recording; see the module docstring for the guarantees."""

    def __init__(
        self,
        writer: SpendWriter,
        options: SpendBufferOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: Callable[[object], None] = _discard,
    ) -> None:
        self.options = options or SpendBufferOptions()
        self._writer = writer
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._pending = _Batch()
        self._writing: list[_Batch] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._backing_off = False

    @property
    def pending_keys(self) -> int:
        """Keys waiting for the next write (not counting a write in progress)."""
        return len(self._pending.deltas)

    def pending_usd(self, principal: str, period: str) -> float:
        """Dollars recorded for `principal` in `period` that the database does not hold yet."""
        owner = (principal, period)
        return self._pending.usd.get(owner, 0.0) + sum(b.usd.get(owner, 0.0) for b in self._writing)

    def add(
        self,
        principal: str,
        period: str,
        model: str,
        usd: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Record one request's cost and tokens; never waits, never touches the database."""
        if self._closing:
            raise StoreError("spend buffer: closed, the spend was not recorded")
        delta = SpendDelta(usd, prompt_tokens, completion_tokens, requests=1)
        self._pending.add(SpendKey(principal, period, model), delta)
        if len(self._pending.deltas) >= self.options.max_keys and not self._backing_off:
            self._wake.set()

    async def start(self) -> None:
        """Start the background writer (idempotent); the first interval starts now."""
        if self._task is None and not self._closing:
            waiting = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(waiting), name="seawall spend buffer"
            )
            await waiting.wait()

    async def aclose(self) -> None:
        """Stop the background writer, then write what is left (raises if that write fails)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def flush(self) -> int:
        """Write everything recorded so far; the number of keys written. Raises on failure."""
        written, error = await self._flush_once()
        if error is not None:
            raise error
        return written

    async def _run(self, waiting: asyncio.Event) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with self._clock.timeout(self.options.flush_interval_s):
                    waiting.set()
                    await self._wake.wait()
            self._wake.clear()
            if not self._closing:
                # A failure is logged and reported there; its deltas wait for the next try.
                await self._flush_once()

    async def _flush_once(self) -> tuple[int, Exception | None]:
        async with self._lock:
            batch = self._pending
            if not batch.deltas:
                return 0, None
            self._pending = _Batch()
            self._writing.append(batch)
            write = asyncio.ensure_future(self._writer.add_many(batch.deltas))
            try:
                # Shielded: a cancelled caller must not leave the batch's fate unknown.
                await asyncio.shield(write)
            except asyncio.CancelledError:
                write.add_done_callback(functools.partial(self._settle_later, batch))
                raise
            except Exception as exc:  # any failure: keep the deltas, report, retry later
                self._settle(batch, exc)
                return 0, exc
            self._settle(batch, None)
            return len(batch.deltas), None

    def _settle_later(self, batch: _Batch, write: asyncio.Future[None]) -> None:
        cancelled = StoreError("spend buffer: the write was cancelled")
        self._settle(batch, cancelled if write.cancelled() else write.exception())

    def _settle(self, batch: _Batch, error: BaseException | None) -> None:
        self._writing.remove(batch)
        usd = sum(batch.usd.values())
        if error is None:
            self._backing_off = False
            requests = sum(d.requests for d in batch.deltas.values())
            self._on_event(SpendFlushed(len(batch.deltas), usd, requests))
            return
        self._backing_off = True
        for key, delta in batch.deltas.items():
            self._pending.add(key, delta)
        logger.warning(
            "spend not written yet (%d keys, $%.6f), kept for the next write: %s",
            len(batch.deltas),
            usd,
            error,
            exc_info=error if not isinstance(error, StoreError) else None,
        )
        self._on_event(SpendFlushFailed(len(batch.deltas), usd, str(error)))
