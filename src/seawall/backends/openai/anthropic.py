"""`AnthropicBackend`: a Claude model behind the Anthropic Messages API, in the OpenAI shape.

Chat only (the Messages API has no completions or embeddings). The translation, both ways and
for streams, is in `seawall.backends.openai.messages`; the HTTP side, first-chunk-first
streaming and its limits are `ProviderClient`'s, shared with `OpenAiBackend`. `max_tokens`,
which Anthropic requires, defaults to `max_tokens_default` when the client sets none.
"""

from __future__ import annotations

from collections.abc import Mapping

from seawall.backends.http import HttpUpstream
from seawall.backends.openai.client import ProviderBackend, ProviderClient, StreamLimits
from seawall.backends.openai.messages import (
    AnthropicChunkDecoder,
    from_message,
    to_messages_request,
)
from seawall.backends.openai.stream import wants_usage_chunk
from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import InvalidInputError
from seawall.types import LlmKind, LlmRequest, LlmResponse, Usage, estimate_tokens

__all__ = ["DEFAULT_ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicBackend"]

#: The `anthropic-version` header sent.
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
#: `max_tokens` when the client sets none (Anthropic requires one).
DEFAULT_MAX_TOKENS = 1024

_PATH = "/v1/messages"


class AnthropicBackend(ProviderBackend):
    """An `LlmBackend` for one Claude model behind the Anthropic Messages API (chat only)."""

    def __init__(
        self,
        upstream: HttpUpstream,
        upstream_model: str,
        *,
        api_key: str,
        anthropic_version: str = DEFAULT_ANTHROPIC_VERSION,
        max_tokens_default: int = DEFAULT_MAX_TOKENS,
        name: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        first_token_timeout_s: float | None = None,
        idle_timeout_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not upstream_model:
            raise ValueError("upstream_model: must not be empty")
        if max_tokens_default < 1:
            raise ValueError(f"max_tokens_default: must be at least 1, got {max_tokens_default}")
        self.name = name or f"anthropic:{upstream.base_url}/{upstream_model}"
        self.upstream_model = upstream_model
        self.max_tokens_default = max_tokens_default
        self._clock = clock or SystemClock()
        headers = {**(extra_headers or {}), "anthropic-version": anthropic_version}
        if api_key:
            headers["x-api-key"] = api_key
        self._client = ProviderClient(
            upstream,
            where=self.name,
            clock=self._clock,
            headers=headers,
            limits=StreamLimits(first_token_timeout_s, idle_timeout_s),
        )

    def __repr__(self) -> str:
        return f"AnthropicBackend({self.name!r})"

    async def call(self, request: LlmRequest, ctx: CallContext) -> LlmResponse:
        """Answer a chat request; a streamed one once its first text has arrived."""
        if request.kind is not LlmKind.CHAT:
            raise InvalidInputError(
                "model",
                f"{request.model!r} is served by the Anthropic Messages API, which answers chat "
                f"completions only, not {request.kind.value} requests",
            )
        max_tokens = request.max_tokens or self.max_tokens_default
        body = to_messages_request(request.body, self.upstream_model, max_tokens=max_tokens)
        created, headers = int(self._clock.time()), {"x-request-id": ctx.request_id}
        if request.stream:
            decoder = AnthropicChunkDecoder(
                self.name, created=created, forward_usage=wants_usage_chunk(request.body)
            )
            first, rest = await self._client.stream(
                _PATH,
                body,
                decoder,
                deadline=ctx.deadline,
                prompt_tokens=request.estimated_prompt_tokens(),
                headers=headers,
            )
            return LlmResponse(
                request.model, first=first, stream=rest, usage=rest.usage, served_by=self.name
            )
        message = await self._client.post_json(_PATH, body, deadline=ctx.deadline, headers=headers)
        document = from_message(message, created=created, where=self.name)
        usage = Usage.from_openai(document.get("usage"))
        if usage is None:
            text = document["choices"][0]["message"]["content"]
            usage = Usage(request.estimated_prompt_tokens(), estimate_tokens(text), estimated=True)
        return LlmResponse(request.model, body=document, usage=usage, served_by=self.name)
