"""RateLimitPolicy: buckets per key, model and global; headers; refusals; Redis and its failures."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import BackendTimeoutError, OverloadedError, RateLimitedError
from seawall.pipeline import Pipeline
from seawall.policies.bucket import (
    Bucket,
    BucketStorage,
    BucketStorageError,
    Decision,
    MemoryBucketStorage,
    RedisBucketStorage,
)
from seawall.policies.ratelimit import (
    OnStorageError,
    RateLimit,
    RateLimited,
    RateLimitOptions,
    RateLimitPolicy,
    RateLimitStorageFailed,
)

Request = dict[str, Any]


class Harness:
    """A policy on a FakeClock, a counting `call_next` and the events it emitted."""

    def __init__(
        self,
        options: RateLimitOptions,
        *,
        target: str = "iris:1",
        storage: BucketStorage | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.events: list[object] = []
        self.calls = 0
        self.policy: RateLimitPolicy[Request, str] = RateLimitPolicy(
            options,
            storage=storage,
            clock=self.clock,
            on_event=self.events.append,
            target=target,
        )

    async def call_next(self, request: Request, ctx: CallContext) -> str:
        self.calls += 1
        return "ok"

    async def call(self, principal: str | None = "alice", **request: Any) -> CallContext:
        ctx = CallContext.new("r", principal=principal)
        assert await self.policy(request, ctx, self.call_next) == "ok"
        return ctx

    async def refused(self, principal: str | None = "alice", **request: Any) -> RateLimitedError:
        ctx = CallContext.new("r", principal=principal)
        before = self.calls
        with pytest.raises(RateLimitedError) as info:
            await self.policy(request, ctx, self.call_next)
        assert self.calls == before  # a refused request never reaches the backend
        info.value.headers = ctx.response_headers  # type: ignore[attr-defined]
        return info.value


def headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset),
    }


def key_only(rate: float = 1.0, burst: float = 3.0, **kw: Any) -> RateLimitOptions:
    return RateLimitOptions(key_limit=RateLimit(rate, burst), **kw)


# --- options -----------------------------------------------------------------------------------


def test_options_need_a_limit_and_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^key_limit: at least one"):
        RateLimitOptions()
    with pytest.raises(ValueError, match=r"^on_storage_error: expected 'local' or 'deny'"):
        key_only(on_storage_error="open")
    with pytest.raises(ValueError, match=r"^warn_interval_s: "):
        key_only(warn_interval_s=-1.0)
    with pytest.raises(ValueError, match=r"^rate_per_s: "):
        RateLimit(0.0, 1.0)
    with pytest.raises(ValueError, match=r"^burst: "):
        RateLimit(1.0, 0.5)
    with pytest.raises(ValueError, match=r"^target: a per-model limit"):
        RateLimitPolicy(RateLimitOptions(model_limit=RateLimit(1.0, 1.0)))
    assert key_only(on_storage_error="deny").on_storage_error is OnStorageError.DENY
    tiers = RateLimitOptions(key_limits={"gold": RateLimit(1.0, 9.0)}).key_limits
    assert tiers is not None
    assert tiers["gold"] == RateLimit(1.0, 9.0)


# --- token arithmetic, headers, refusals --------------------------------------------------------


async def test_the_burst_passes_and_every_response_carries_the_headers() -> None:
    h = Harness(key_only(rate=1.0, burst=3.0))
    assert (await h.call()).response_headers == headers(3, 2, 1)
    assert (await h.call()).response_headers == headers(3, 1, 2)
    assert (await h.call()).response_headers == headers(3, 0, 3)
    refusal = await h.refused()
    assert refusal.retry_after_s == 1.0
    assert refusal.headers == headers(3, 0, 3)  # type: ignore[attr-defined]
    assert str(refusal) == (
        "model 'iris:1': rate limit of API key 'alice' (1/s, burst 3) exceeded; retry in 1.000 s"
    )
    assert h.events == [RateLimited("iris:1", "key", "alice", 1.0, 1.0)]
    assert h.calls == 3


async def test_tokens_refill_at_the_rate() -> None:
    h = Harness(key_only(rate=4.0, burst=2.0))
    await h.call()
    await h.call()
    h.clock.advance(0.125)  # half a token
    assert (await h.refused()).retry_after_s == 0.125
    h.clock.advance(0.125)
    assert (await h.call()).response_headers == headers(2, 0, 1)
    h.clock.advance(60.0)
    assert (await h.call()).response_headers == headers(2, 1, 1)  # capped at the burst


async def test_each_key_has_its_own_bucket_and_anonymous_callers_share_one() -> None:
    h = Harness(key_only(rate=1.0, burst=1.0))
    await h.call("alice")
    await h.refused("alice")
    await h.call("bob")
    await h.call(None)
    refusal = await h.refused(None)  # another anonymous caller: the same bucket
    assert "anonymous callers" in str(refusal)
    await h.call("anonymous")  # a key named "anonymous" is not the anonymous callers
    assert h.events[-1] == RateLimited("iris:1", "key", "anonymous", 1.0, 1.0)


async def test_named_keys_can_have_their_own_limits() -> None:
    options = RateLimitOptions(
        key_limit=RateLimit(1.0, 1.0), key_limits={"gold": RateLimit(10.0, 5.0)}
    )
    h = Harness(options)
    for _ in range(5):
        await h.call("gold")
    await h.refused("gold")
    await h.call("alice")
    await h.refused("alice")


async def test_a_request_must_pass_every_scope_and_a_refusal_takes_nothing() -> None:
    clock = FakeClock()
    storage = MemoryBucketStorage(clock=clock)
    options = RateLimitOptions(
        key_limit=RateLimit(1.0, 2.0),
        model_limit=RateLimit(1.0, 10.0),
        global_limit=RateLimit(1.0, 100.0),
    )
    h = Harness(options, storage=storage, clock=clock)
    await h.call("alice")
    assert (await h.call("alice")).response_headers == headers(2, 0, 2)  # the key is tightest
    refusal = await h.refused("alice")
    assert h.events == [RateLimited("iris:1", "key", "alice", 1.0, 1.0)]
    assert refusal.headers == headers(2, 0, 2)  # type: ignore[attr-defined]
    model, world = Bucket("model:iris:1", 1.0, 10.0), Bucket("global", 1.0, 100.0)
    left = await storage.acquire([model, world], 0.0)
    assert [s.tokens for s in left.states] == [8.0, 98.0]  # the refusal took from neither


async def test_the_model_and_global_buckets_are_shared_through_the_storage() -> None:
    clock = FakeClock()
    storage = MemoryBucketStorage(clock=clock)
    options = RateLimitOptions(model_limit=RateLimit(1.0, 2.0), global_limit=RateLimit(1.0, 3.0))
    iris = Harness(options, target="iris:1", storage=storage, clock=clock)
    wine = Harness(options, target="wine:1", storage=storage, clock=clock)
    await iris.call("alice")
    await iris.call("bob")
    refusal = await iris.refused("carol")
    assert iris.events == [RateLimited("iris:1", "model", "iris:1", 1.0, 1.0)]
    assert "rate limit of model 'iris:1' (1/s, burst 2)" in str(refusal)
    ctx = await wine.call("dave")
    assert ctx.response_headers == headers(3, 0, 3)  # the global bucket is the tightest now
    await wine.refused("erin")
    assert wine.events == [RateLimited("wine:1", "global", "global", 1.0, 1.0)]


async def test_the_longest_wait_decides_retry_after() -> None:
    options = RateLimitOptions(key_limit=RateLimit(2.0, 1.0), model_limit=RateLimit(0.5, 1.0))
    h = Harness(options)
    await h.call()
    refusal = await h.refused()
    assert refusal.retry_after_s == 2.0  # the model bucket refills in 2 s, the key's in 0.5 s
    assert h.events == [RateLimited("iris:1", "model", "iris:1", 2.0, 1.0)]


async def test_a_request_can_cost_more_than_one_unit() -> None:
    h = Harness(key_only(rate=10.0, burst=100.0, cost=lambda request: request["tokens"]))
    assert (await h.call(tokens=30)).response_headers == headers(100, 70, 3)
    assert (await h.call(tokens=70)).response_headers == headers(100, 0, 10)
    h.clock.advance(2.0)
    refusal = await h.refused(tokens=25)
    assert refusal.retry_after_s == 0.5
    assert h.events == [RateLimited("iris:1", "key", "alice", 0.5, 25.0)]
    assert (await h.call(tokens=0)).response_headers == headers(100, 20, 8)


async def test_a_cost_above_the_burst_can_never_pass() -> None:
    h = Harness(key_only(rate=10.0, burst=100.0, cost=lambda request: request["tokens"]))
    refusal = await h.refused(tokens=101)
    assert refusal.retry_after_s is None  # retrying cannot help
    assert str(refusal) == (
        "model 'iris:1': a request costing 101 units can never pass the rate limit of "
        "API key 'alice' (10/s, burst 100)"
    )
    assert h.events == [RateLimited("iris:1", "key", "alice", math.inf, 101.0)]
    assert (await h.call(tokens=100)).response_headers == headers(100, 0, 10)


async def test_a_bad_cost_function_is_a_programming_error() -> None:
    h = Harness(key_only(cost=lambda request: -1))
    with pytest.raises(ValueError, match=r"^cost: the cost function returned -1.0"):
        await h.call()


async def test_headers_stay_when_the_backend_fails() -> None:
    h = Harness(key_only())

    async def failing(request: Request, ctx: CallContext) -> str:
        raise RuntimeError("backend broke")

    ctx = CallContext.new("r", principal="alice")
    with pytest.raises(RuntimeError):
        await h.policy({}, ctx, failing)
    assert ctx.response_headers == headers(3, 2, 1)


async def test_a_call_past_its_deadline_fails_fast_and_takes_nothing() -> None:
    h = Harness(key_only(burst=1.0))
    ctx = CallContext.new("r", principal="alice", deadline=h.clock.monotonic())
    with pytest.raises(BackendTimeoutError, match=r"deadline passed before the rate limit"):
        await h.policy({}, ctx, h.call_next)
    await h.call()  # the one token is still there


async def test_rate_limit_accuracy_over_ten_seconds_in_memory() -> None:
    h = Harness(RateLimitOptions(model_limit=RateLimit(50.0, 20.0)))
    allowed = 0
    for _ in range(10_000):  # one request a millisecond, 20 times the rate
        ctx = CallContext.new("r")
        try:
            await h.policy({}, ctx, h.call_next)
            allowed += 1
        except RateLimitedError:
            pass
        h.clock.advance(0.001)
    expected = 20 + 50 * 10
    assert abs(allowed - expected) <= 0.05 * expected
    assert allowed == pytest.approx(expected, abs=2)  # in fact nearly exact


async def test_the_policy_is_named_in_a_pipeline() -> None:
    h = Harness(key_only())
    pipeline = Pipeline([h.policy], h.call_next)
    assert repr(pipeline) == "Pipeline(ratelimit → Harness.call_next)"
    assert "RateLimitPolicy(target='iris:1', storage=<seawall" in repr(h.policy)
    assert await pipeline({}, CallContext.new("r", principal="alice")) == "ok"


# --- storage failures --------------------------------------------------------------------------


class BrokenStorage:
    """Fails every decision; `attempted` alternates as a cooling-off storage's would."""

    def __init__(self, attempted: Sequence[bool] = (True,)) -> None:
        self.attempted = list(attempted)
        self.calls = 0

    async def acquire(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        attempted = self.attempted[min(self.calls, len(self.attempted) - 1)]
        self.calls += 1
        raise BucketStorageError("Redis failed: boom", attempted=attempted, retry_in_s=0.75)


class Hanging:
    """Never decides (a storage stuck on I/O), until cancelled."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def acquire(self, buckets: Sequence[Bucket], cost: float) -> Decision:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


@pytest.fixture
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """Warnings of the rate-limit logger (attached directly: the gateway may stop propagation)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("seawall.policies.ratelimit")
    handler, level = Collect(logging.WARNING), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_failing_storage_falls_back_to_local_buckets(
    warnings_logged: list[logging.LogRecord],
) -> None:
    storage = BrokenStorage(attempted=[True, False, False, False, True])
    h = Harness(key_only(rate=1.0, burst=3.0, warn_interval_s=10.0), storage=storage)
    contexts = [await h.call() for _ in range(3)]
    assert contexts[0].annotations["ratelimit_storage"] == "local"
    assert contexts[2].response_headers == headers(3, 0, 3)  # the local bucket counts
    await h.refused()  # local limits still hold
    failed = [e for e in h.events if isinstance(e, RateLimitStorageFailed)]
    assert failed == [RateLimitStorageFailed("iris:1", "Redis failed: boom", "local")]
    assert len(warnings_logged) == 1  # not one per request
    assert warnings_logged[0].getMessage() == (
        "model 'iris:1': the rate-limit storage failed (Redis failed: boom); its limits are "
        "enforced by this replica alone until it answers (0 more failures since the last warning)"
    )
    h.clock.advance(10.0)
    await h.call()
    assert len([e for e in h.events if isinstance(e, RateLimitStorageFailed)]) == 2
    assert len(warnings_logged) == 2
    assert "(3 more failures since the last warning)" in warnings_logged[1].getMessage()


async def test_deny_mode_fails_closed_with_503_and_retry_after(
    warnings_logged: list[logging.LogRecord],
) -> None:
    h = Harness(key_only(on_storage_error="deny"), storage=BrokenStorage())
    ctx = CallContext.new("r", principal="alice")
    with pytest.raises(OverloadedError) as info:
        await h.policy({}, ctx, h.call_next)
    assert info.value.retry_after_s == 0.75
    assert str(info.value) == (
        "model 'iris:1': the rate-limit storage is unavailable and the policy fails closed; "
        "retry in 0.750 s"
    )
    assert ctx.response_headers == headers(3, 0, 1)
    assert h.events == [RateLimitStorageFailed("iris:1", "Redis failed: boom", "deny")]
    assert h.calls == 0
    assert "its requests are refused" in warnings_logged[0].getMessage()


async def test_a_hanging_storage_is_cancelled_at_the_deadline() -> None:
    hanging = Hanging()
    h = Harness(key_only(), storage=hanging)
    clock = h.clock
    tasks_before = len(asyncio.all_tasks())
    ctx = CallContext.new("r", principal="alice", deadline=clock.monotonic() + 0.2)
    call = asyncio.create_task(h.policy({}, ctx, h.call_next))
    await clock.run_for(0.2, step=0.05)
    with pytest.raises(BackendTimeoutError, match=r"while the rate-limit storage was deciding"):
        await call
    assert hanging.cancelled == 1
    assert len(asyncio.all_tasks()) == tasks_before
    assert h.events == []  # a deadline says nothing about the storage's health


async def test_cancelling_a_call_is_not_a_storage_failure() -> None:
    hanging = Hanging()
    h = Harness(key_only(), storage=hanging)
    call = asyncio.create_task(h.policy({}, CallContext.new("r"), h.call_next))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert hanging.cancelled == 1
    assert h.events == []
    assert h.calls == 0


# --- Redis -------------------------------------------------------------------------------------


async def test_an_unreachable_redis_falls_back_then_is_retried_after_the_cooloff(
    warnings_logged: list[logging.LogRecord],
) -> None:
    clock = FakeClock()
    dead = RedisBucketStorage.from_url("redis://127.0.0.1:1/0", cooloff_s=1.0, clock=clock)
    h = Harness(key_only(rate=1.0, burst=3.0), storage=dead, clock=clock)
    try:
        ctx = await h.call()
        assert ctx.annotations["ratelimit_storage"] == "local"
        (event,) = h.events
        assert isinstance(event, RateLimitStorageFailed)
        assert event.fallback == "local"
        assert "ConnectionError" in event.error
        await h.call()  # cooling off: Redis not tried, no new event
        assert len(h.events) == 1
        clock.advance(1.0)
        assert (await h.call()).response_headers == headers(3, 1, 2)  # local counted all three
        assert len(h.events) == 2
        assert len(warnings_logged) == 1
    finally:
        await dead.aclose()


async def test_an_unreachable_redis_in_deny_mode_refuses_with_503() -> None:
    dead = RedisBucketStorage.from_url("redis://127.0.0.1:1/0", cooloff_s=1.0)
    h = Harness(key_only(on_storage_error=OnStorageError.DENY), storage=dead)
    try:
        with pytest.raises(OverloadedError) as info:
            await h.call()
        assert info.value.retry_after_s == 1.0
        assert h.calls == 0
        with pytest.raises(OverloadedError) as again:  # cooling off: refused at once
            await h.call()
        assert again.value.retry_after_s is not None
        assert 0 < again.value.retry_after_s <= 1.0
        assert len(h.events) == 1
    finally:
        await dead.aclose()


async def test_redis_headers_and_refusals(redis_url: str, redis_prefix: str) -> None:
    store = RedisBucketStorage.from_url(redis_url, prefix=redis_prefix, timeout_s=1.0)
    h = Harness(key_only(rate=1e-6, burst=2.0), storage=store)
    try:
        assert (await h.call()).response_headers["x-ratelimit-remaining"] == "1"
        await h.call()
        refusal = await h.refused()
        assert refusal.retry_after_s is not None
        assert refusal.retry_after_s > 1e5
        assert h.events == [RateLimited("iris:1", "key", "alice", refusal.retry_after_s, 1.0)]
    finally:
        await store.aclose()


async def test_two_replicas_share_one_limit_on_redis(redis_url: str, redis_prefix: str) -> None:
    """Two policies with their own Redis clients, hammered concurrently for 3 s of real time."""
    rate, burst, duration_s = 100.0, 20.0, 3.0
    options = RateLimitOptions(model_limit=RateLimit(rate, burst))
    stores = [RedisBucketStorage.from_url(redis_url, prefix=redis_prefix, timeout_s=1.0)
              for _ in range(2)]  # fmt: skip
    replicas = [Harness(options, storage=s) for s in stores]
    allowed = refused = 0

    async def caller(h: Harness, stop_at: float) -> None:
        nonlocal allowed, refused
        while time.monotonic() < stop_at:
            try:
                await h.policy({}, CallContext.new("r"), h.call_next)
                allowed += 1
            except RateLimitedError:
                refused += 1
            await asyncio.sleep(0.002)

    try:
        started = time.monotonic()
        stop_at = started + duration_s
        await asyncio.gather(*(caller(replicas[i % 2], stop_at) for i in range(16)))
        elapsed = time.monotonic() - started
    finally:
        for store in stores:
            await store.aclose()
    expected = burst + rate * elapsed
    assert refused > allowed  # the limit was really under pressure
    assert abs(allowed - expected) <= 0.05 * expected, (allowed, expected)
    assert not any(isinstance(e, RateLimitStorageFailed) for h in replicas for e in h.events)
