"""`BudgetPolicy`: what each API key may spend on LLM calls per day or month, in US dollars.

The cost of a call is its usage (the provider's token counts, or seawall's estimate) priced by
the deployment that served it. A key whose spend in the current period has reached its budget
gets 429 (`budget_exceeded`, OpenAI's `insufficient_quota`) with `Retry-After` until the period
ends. Spend is recorded once the answer is complete (a stream: when it ends, whatever the
client read), into a `SpendStore`: Redis when replicas share one budget, with every amount
also written to the database for the record.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import RateLimitedError
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.spend import MemorySpendStore, SpendStore
from seawall.types import LlmRequest, LlmResponse, Usage

__all__ = [
    "BudgetExceededError",
    "BudgetOptions",
    "BudgetPeriod",
    "BudgetPolicy",
    "MemorySpendStore",
    "Price",
    "SpendRecorded",
    "SpendStore",
]

logger = logging.getLogger("seawall.policies.budget")

ANONYMOUS = "anonymous"


class BudgetPeriod(StrEnum):
    """How long a budget lasts before it starts again (UTC calendar days or months)."""

    DAY = "day"
    MONTH = "month"

    @property
    def adjective(self) -> str:
        return "daily" if self is BudgetPeriod.DAY else "monthly"

    def key(self, wall: float) -> str:
        """The period `wall` (Unix time) falls in: `2026-11-26` or `2026-11`."""
        now = datetime.fromtimestamp(wall, UTC)
        return now.strftime("%Y-%m-%d" if self is BudgetPeriod.DAY else "%Y-%m")

    def seconds_left(self, wall: float) -> float:
        """Seconds from `wall` until the next period starts."""
        now = datetime.fromtimestamp(wall, UTC)
        if self is BudgetPeriod.DAY:
            start = datetime(now.year, now.month, now.day, tzinfo=UTC)
            return start.timestamp() + 86_400 - wall
        days = calendar.monthrange(now.year, now.month)[1]
        start = datetime(now.year, now.month, 1, tzinfo=UTC)
        return start.timestamp() + days * 86_400 - wall


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million prompt and completion tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.input_per_mtok
            + usage.completion_tokens * self.output_per_mtok
        ) / 1_000_000


class BudgetExceededError(RateLimitedError):
    """The key has spent its budget for the period."""

    code = "budget_exceeded"


@dataclass(frozen=True, slots=True)
class BudgetOptions:
    """Budgets per key, and the prices of the deployments that can serve a call."""

    #: Dollars per period for each named key (overrides `default_usd`).
    keys: Mapping[str, float] = field(default_factory=dict)
    #: Dollars per period for every other key (None: unlimited, spend still recorded).
    default_usd: float | None = None
    period: BudgetPeriod = BudgetPeriod.MONTH
    #: Price of each deployment by the label in `LlmResponse.served_by` (`group/deployment`).
    prices: Mapping[str, Price] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, usd in {**self.keys, "default_usd": self.default_usd or 0.0}.items():
            if not (math.isfinite(usd) and usd >= 0):
                raise ValueError(f"keys.{name}: a budget is a number of dollars >= 0, got {usd}")
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        object.__setattr__(self, "prices", MappingProxyType(dict(self.prices)))

    def budget_for(self, principal: str) -> float | None:
        return self.keys.get(principal, self.default_usd)


@dataclass(frozen=True, slots=True)
class SpendRecorded:
    """A call's cost was added to its key's spend."""

    target: str
    principal: str
    usd: float


class BudgetPolicy:
    """Refuses keys over budget (429 `budget_exceeded`); records every call's cost."""

    name = "budget"

    def __init__(
        self,
        options: BudgetOptions,
        store: SpendStore,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        self.options = options
        self._store = store
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self.target = target
        self._recording: set[asyncio.Task[None]] = set()

    async def __call__(
        self,
        request: LlmRequest,
        ctx: CallContext,
        call_next: Handler[LlmRequest, LlmResponse],
    ) -> LlmResponse:
        principal = ctx.principal or ANONYMOUS
        wall = self._clock.time()
        period = self.options.period.key(wall)
        budget = self.options.budget_for(principal)
        if budget is not None:
            spent = await self._store.spent(principal, period)
            if spent >= budget:
                raise BudgetExceededError(
                    f"API key {principal!r} has spent ${spent:.4f} of its ${budget:g} "
                    f"{self.options.period.adjective} budget; it starts again in "
                    f"{self.options.period.seconds_left(wall) / 3600:.1f} h",
                    retry_after_s=self.options.period.seconds_left(wall),
                )
        response = await call_next(request, ctx)
        if response.stream is not None:
            served_by = response.served_by
            response.stream.on_done.append(
                lambda usage: self._record_later(principal, period, served_by, usage)
            )
        else:
            await self._record(principal, period, response.served_by, response.usage)
        return response

    def _record_later(self, principal: str, period: str, served_by: str, usage: Usage) -> None:
        task = asyncio.get_running_loop().create_task(
            self._record(principal, period, served_by, usage)
        )
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, principal: str, period: str, served_by: str, usage: Usage) -> None:
        price = self.options.prices.get(served_by, Price())
        usd = price.cost(usage)
        try:
            await self._store.add(principal, period, served_by, usd, usage)
        except Exception:  # the answer is served; a lost record is logged, never raised
            logger.exception(
                "spend not recorded", extra={"principal": principal, "usd": usd, "model": served_by}
            )
            return
        self._on_event(SpendRecorded(self.target, principal, usd))

    async def drain(self) -> None:
        """Wait for the records of finished streams (at shutdown, and in tests)."""
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
