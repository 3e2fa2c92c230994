"""`TokenLimitPolicy`: tokens per minute, prompt estimate up front, the rest charged after."""

from __future__ import annotations

import pytest

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import RateLimitedError
from seawall.policies.bucket import MemoryBucketStorage
from seawall.policies.ratelimit import RateLimitOptions
from seawall.policies.tokens import TokenLimitPolicy, per_minute
from seawall.types import ChunkStream, LlmKind, LlmRequest, LlmResponse, Usage

PROMPT = "x" * 400  # about 100 tokens (4 characters a token)


def request() -> LlmRequest:
    body = {"model": "chat", "messages": [{"role": "user", "content": PROMPT}]}
    return LlmRequest(LlmKind.CHAT, "chat", body)


def answering(usage: Usage):  # type: ignore[no-untyped-def]
    async def handler(req: LlmRequest, ctx: CallContext) -> LlmResponse:
        return LlmResponse(model="chat", body={}, usage=usage)

    return handler


def policy(
    tokens_per_minute: float, clock: FakeClock, storage: MemoryBucketStorage
) -> TokenLimitPolicy:
    return TokenLimitPolicy(
        RateLimitOptions(key_limit=per_minute(tokens_per_minute)),
        storage=storage,
        clock=clock,
        target="chat",
    )


def test_per_minute_is_a_minute_of_tokens() -> None:
    limit = per_minute(6000)
    assert (limit.rate_per_s, limit.burst) == (100.0, 6000)


async def test_the_prompt_is_charged_up_front_and_the_completion_after() -> None:
    clock = FakeClock()
    storage = MemoryBucketStorage(clock=clock)
    limiter = policy(1000, clock, storage)
    estimate = request().estimated_prompt_tokens()
    ctx = CallContext.new(principal="app")
    await limiter(request(), ctx, answering(Usage(estimate, 300)))
    assert ctx.response_headers["x-ratelimit-limit-tokens"] == "1000"
    assert ctx.response_headers["x-ratelimit-remaining-tokens"] == str(1000 - estimate)
    # The completion (300) was charged after: the bucket holds 1000 - estimate - 300.
    level = await storage.acquire(
        limiter._buckets("app")[0:1] and [limiter._buckets("app")[0].bucket], 0
    )
    assert level.states[0].tokens == pytest.approx(1000 - estimate - 300)


async def test_a_key_over_its_tokens_per_minute_gets_429_until_the_bucket_refills() -> None:
    clock = FakeClock()
    limiter = policy(600, clock, MemoryBucketStorage(clock=clock))
    big = Usage(100, 1000)  # far more than the minute's 600 tokens: the bucket goes negative
    await limiter(request(), CallContext.new(principal="app"), answering(big))
    with pytest.raises(RateLimitedError, match="rate limit") as info:
        await limiter(request(), CallContext.new(principal="app"), answering(big))
    assert info.value.retry_after_s is not None
    assert info.value.retry_after_s > 60  # debt of 500 plus 100 for the prompt, at 10 a second
    clock.advance(info.value.retry_after_s)
    await limiter(request(), CallContext.new(principal="app"), answering(Usage(100, 0)))


async def test_other_keys_are_not_affected() -> None:
    clock = FakeClock()
    limiter = policy(600, clock, MemoryBucketStorage(clock=clock))
    await limiter(request(), CallContext.new(principal="a"), answering(Usage(100, 2000)))
    await limiter(request(), CallContext.new(principal="b"), answering(Usage(100, 0)))


async def test_a_stream_is_charged_when_it_ends() -> None:
    clock = FakeClock()
    storage = MemoryBucketStorage(clock=clock)
    limiter = policy(1000, clock, storage)

    async def rest():  # type: ignore[no-untyped-def]
        yield {"choices": [{"delta": {"content": "y" * 800}}]}  # about 200 tokens

    stream = ChunkStream(rest(), prompt_tokens=100)

    async def streaming(req: LlmRequest, ctx: CallContext) -> LlmResponse:
        return LlmResponse(model="chat", first={"choices": []}, stream=stream)

    await limiter(request(), CallContext.new(principal="app"), streaming)
    bucket = limiter._buckets("app")[0].bucket
    before = (await storage.acquire([bucket], 0)).states[0].tokens
    async for _ in stream:
        pass
    await limiter.drain()
    after = (await storage.acquire([bucket], 0)).states[0].tokens
    charged_up_front = request().estimated_prompt_tokens()
    assert before - after == pytest.approx(stream.usage.total_tokens - charged_up_front)


async def test_token_and_request_buckets_do_not_collide() -> None:
    clock = FakeClock()
    limiter = policy(600, clock, MemoryBucketStorage(clock=clock))
    assert limiter._buckets("app")[0].bucket.key == "tokens:key:app"
