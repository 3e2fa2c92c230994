"""`TokenLimitPolicy`: tokens-per-minute limits on LLM calls, per API key and per model group.

A call is admitted if the buckets hold its prompt's estimated tokens, which are taken at once;
when the answer is complete (for a stream: when it ends), the tokens used beyond that estimate
are charged too, even if that drives a bucket below zero — the next calls then wait until it
refills. So a limit holds for the tokens actually used, while the decision to admit a call never
waits for the model. The buckets live in the rate limiter's storage: on Redis, every replica
shares one limit. Headers: `x-ratelimit-limit-tokens`, `-remaining-tokens`, `-reset-tokens`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from typing import Any

from seawall.clock import Clock
from seawall.context import CallContext
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.bucket import Bucket, BucketStorage, BucketStorageError
from seawall.policies.ratelimit import RateLimit, RateLimitOptions, RateLimitPolicy
from seawall.types import LlmRequest, LlmResponse, Usage

__all__ = ["TOKENS", "TokenLimitPolicy", "per_minute"]

logger = logging.getLogger("seawall.policies.tokens")

#: The unit of the token buckets (their keys and headers say so).
TOKENS = "tokens"


def per_minute(tokens: float) -> RateLimit:
    """A bucket of `tokens` a minute: refilled at tokens/60 a second, holding a minute's worth."""
    return RateLimit(rate_per_s=tokens / 60.0, burst=tokens)


def _prompt_tokens(request: Any) -> float:
    return float(request.estimated_prompt_tokens()) if isinstance(request, LlmRequest) else 0.0


class TokenLimitPolicy(RateLimitPolicy[LlmRequest, LlmResponse]):
    """Token buckets charged the prompt estimate up front and the rest of the usage after."""

    name = "token_limit"

    def __init__(
        self,
        options: RateLimitOptions,
        *,
        storage: BucketStorage | None = None,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        super().__init__(
            replace(options, unit=TOKENS, cost=_prompt_tokens),
            storage=storage,
            clock=clock,
            on_event=on_event,
            target=target,
        )
        self._settling: set[asyncio.Task[None]] = set()

    async def __call__(
        self,
        request: LlmRequest,
        ctx: CallContext,
        call_next: Handler[LlmRequest, LlmResponse],
    ) -> LlmResponse:
        buckets = [n.bucket for n in self._buckets(ctx.principal)]
        charged = _prompt_tokens(request)
        response = await super().__call__(request, ctx, call_next)
        if response.stream is not None:
            response.stream.on_done.append(
                lambda usage: self._settle_later(buckets, charged, usage)
            )
        else:
            await self._settle(buckets, charged, response.usage)
        return response

    def _settle_later(self, buckets: list[Bucket], charged: float, usage: Usage) -> None:
        # Called when a stream ends, from synchronous code: the charge runs as its own task,
        # kept referenced until it is done (it takes one storage round trip).
        task = asyncio.get_running_loop().create_task(self._settle(buckets, charged, usage))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, buckets: list[Bucket], charged: float, usage: Usage) -> None:
        extra = usage.total_tokens - charged
        if not (math.isfinite(extra) and extra > 0) or not buckets:
            return
        try:
            await self._storage.debit(buckets, extra)
        except BucketStorageError:
            await self._local.debit(buckets, extra)

    async def drain(self) -> None:
        """Wait for the charges of finished streams (at shutdown, and in tests)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
