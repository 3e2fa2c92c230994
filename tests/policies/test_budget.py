"""`BudgetPolicy`: per-key spend budgets per day or month, priced by the serving deployment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import RateLimitedError
from seawall.policies.budget import (
    BudgetExceededError,
    BudgetOptions,
    BudgetPeriod,
    BudgetPolicy,
    MemorySpendStore,
    Price,
    SpendRecorded,
)
from seawall.types import ChunkStream, LlmKind, LlmRequest, LlmResponse, Usage

NOV_26 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
PRICES = {"chat/primary": Price(input_per_mtok=1.0, output_per_mtok=2.0)}


def request() -> LlmRequest:
    return LlmRequest(LlmKind.CHAT, "chat", {"model": "chat", "messages": []})


def answering(usage: Usage, served_by: str = "chat/primary"):  # type: ignore[no-untyped-def]
    async def handler(req: LlmRequest, ctx: CallContext) -> LlmResponse:
        return LlmResponse(model="chat", body={}, usage=usage, served_by=served_by)

    return handler


def budget(
    usd: float | None,
    *,
    period: BudgetPeriod = BudgetPeriod.MONTH,
    events: list[object] | None = None,
) -> tuple[BudgetPolicy, MemorySpendStore, FakeClock]:
    clock = FakeClock(wall_start=NOV_26)
    store = MemorySpendStore()
    sink = events.append if events is not None else (lambda e: None)
    options = BudgetOptions(default_usd=usd, period=period, prices=PRICES)
    return BudgetPolicy(options, store, clock=clock, on_event=sink, target="chat"), store, clock


@pytest.mark.parametrize(
    ("period", "key", "left_h"),
    [(BudgetPeriod.DAY, "2026-11-26", 12.0), (BudgetPeriod.MONTH, "2026-11", 4 * 24 + 12.0)],
)
def test_periods_are_utc_calendar_days_and_months(
    period: BudgetPeriod, key: str, left_h: float
) -> None:
    assert period.key(NOV_26) == key
    assert period.seconds_left(NOV_26) / 3600 == pytest.approx(left_h)


def test_price_per_million_tokens() -> None:
    assert Price(1.0, 2.0).cost(Usage(1_000_000, 500_000)) == pytest.approx(2.0)


async def test_spend_is_priced_by_the_deployment_that_served() -> None:
    events: list[object] = []
    policy, store, _ = budget(None, events=events)
    await policy(request(), CallContext.new(principal="app"), answering(Usage(1000, 500)))
    assert await store.spent("app", "2026-11") == pytest.approx((1000 * 1 + 500 * 2) / 1e6)
    assert isinstance(events[0], SpendRecorded)
    await policy(request(), CallContext.new(principal="app"), answering(Usage(10**6, 0), "free/x"))
    assert await store.spent("app", "2026-11") == pytest.approx(0.002)  # unknown price: free


async def test_a_key_over_budget_gets_429_until_the_period_ends() -> None:
    policy, store, _ = budget(0.01)
    ctx = CallContext.new(principal="app")
    await store.add("app", "2026-11", "chat/primary", 0.01, Usage())
    with pytest.raises(BudgetExceededError) as info:
        await policy(request(), ctx, answering(Usage(1, 1)))
    error = info.value
    assert isinstance(error, RateLimitedError)
    assert error.code == "budget_exceeded"
    assert error.retry_after_s == pytest.approx(BudgetPeriod.MONTH.seconds_left(NOV_26))
    assert "'app' has spent $0.0100 of its $0.01 monthly budget" in str(error)


async def test_a_new_period_starts_with_nothing_spent() -> None:
    policy, store, clock = budget(0.01, period=BudgetPeriod.DAY)
    await store.add("app", "2026-11-26", "chat/primary", 5.0, Usage())
    clock.advance(BudgetPeriod.DAY.seconds_left(NOV_26))
    await policy(request(), CallContext.new(principal="app"), answering(Usage(1, 1)))


async def test_named_keys_override_the_default() -> None:
    clock = FakeClock(wall_start=NOV_26)
    store = MemorySpendStore()
    options = BudgetOptions(keys={"vip": 100.0}, default_usd=0.0, prices=PRICES)
    policy = BudgetPolicy(options, store, clock=clock)
    await policy(request(), CallContext.new(principal="vip"), answering(Usage(1, 1)))
    with pytest.raises(BudgetExceededError):
        await policy(request(), CallContext.new(principal="other"), answering(Usage(1, 1)))


async def test_a_stream_is_recorded_when_it_ends() -> None:
    policy, store, _ = budget(None)

    async def rest():  # type: ignore[no-untyped-def]
        yield {
            "choices": [{"delta": {"content": "y"}}],
            "usage": {"prompt_tokens": 2000, "completion_tokens": 1000},
        }

    stream = ChunkStream(rest(), prompt_tokens=10)

    async def streaming(req: LlmRequest, ctx: CallContext) -> LlmResponse:
        return LlmResponse(model="chat", first={}, stream=stream, served_by="chat/primary")

    await policy(request(), CallContext.new(principal="app"), streaming)
    assert await store.spent("app", "2026-11") == 0.0
    async for _ in stream:
        pass
    await policy.drain()
    assert await store.spent("app", "2026-11") == pytest.approx((2000 + 2000) / 1e6)


async def test_a_failing_store_never_fails_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemorySpendStore):
        async def add(self, *args: object, **kwargs: object) -> None:
            raise ConnectionError("down")

    policy = BudgetPolicy(BudgetOptions(prices=PRICES), Broken(), clock=FakeClock())
    response = await policy(request(), CallContext.new(), answering(Usage(1, 1)))
    assert response.served_by == "chat/primary"
    assert "spend not recorded" in caplog.text


def test_budgets_are_checked() -> None:
    with pytest.raises(ValueError, match=r"keys\.app"):
        BudgetOptions(keys={"app": -1.0})
