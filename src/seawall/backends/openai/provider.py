"""`OpenAiBackend`: a deployment on an OpenAI-compatible server (OpenAI, vLLM, LiteLLM, Ollama...).

The client's body passes through untouched but for `model` (the upstream's name for it) and,
when streaming with `stream_usage`, `stream_options.include_usage`, so the provider reports the
tokens it counted. The usage-only chunk that brings is accounted for but not forwarded when the
client did not ask for it itself (clients that read `choices[0]` of every chunk would break).
Usage missing from an answer is estimated from the text (`Usage.estimated`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from seawall.backends.http import HttpUpstream
from seawall.backends.openai.client import ProviderBackend, ProviderClient, StreamLimits
from seawall.backends.openai.sse import SseEvent
from seawall.backends.openai.stream import Emit, stream_error, wants_usage_chunk
from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BadResponseError, InvalidInputError
from seawall.types import LlmKind, LlmRequest, LlmResponse, Usage, estimate_tokens

__all__ = ["OpenAiBackend", "OpenAiChunkDecoder"]

_PATHS = {
    LlmKind.CHAT: "/v1/chat/completions",
    LlmKind.COMPLETION: "/v1/completions",
    LlmKind.EMBEDDING: "/v1/embeddings",
}


class OpenAiBackend(ProviderBackend):
    """An `LlmBackend` for one model on an OpenAI-compatible server."""

    def __init__(
        self,
        upstream: HttpUpstream,
        upstream_model: str,
        *,
        name: str | None = None,
        api_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        first_token_timeout_s: float | None = None,
        idle_timeout_s: float | None = None,
        stream_usage: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if not upstream_model:
            raise ValueError("upstream_model: must not be empty")
        self.name = name or f"openai:{upstream.base_url}/{upstream_model}"
        self.upstream_model = upstream_model
        self.stream_usage = stream_usage
        headers = dict(extra_headers or {})
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = ProviderClient(
            upstream,
            where=self.name,
            clock=clock or SystemClock(),
            headers=headers,
            limits=StreamLimits(first_token_timeout_s, idle_timeout_s),
        )

    def __repr__(self) -> str:
        return f"OpenAiBackend({self.name!r})"

    async def call(self, request: LlmRequest, ctx: CallContext) -> LlmResponse:
        """Answer `request`; a streamed one once its first chunk has arrived."""
        body = request.body_for(self.upstream_model)
        headers = {"x-request-id": ctx.request_id}
        if not request.stream:
            document = await self._client.post_json(
                _PATHS[request.kind], body, deadline=ctx.deadline, headers=headers
            )
            usage = _usage(request, _checked(document, request.kind, self.name))
            return LlmResponse(request.model, body=document, usage=usage, served_by=self.name)
        if request.kind is LlmKind.EMBEDDING:
            raise InvalidInputError("stream", "embeddings cannot be streamed")
        if self.stream_usage:
            options = request.body.get("stream_options")
            options = options if isinstance(options, dict) else {}
            body["stream_options"] = {**options, "include_usage": True}
        decoder = OpenAiChunkDecoder(self.name, forward_usage=wants_usage_chunk(request.body))
        first, rest = await self._client.stream(
            _PATHS[request.kind],
            body,
            decoder,
            deadline=ctx.deadline,
            prompt_tokens=request.estimated_prompt_tokens(),
            headers=headers,
        )
        return LlmResponse(
            request.model, first=first, stream=rest, usage=rest.usage, served_by=self.name
        )


class OpenAiChunkDecoder:
    """OpenAI stream events to chunks: `[DONE]` ends the stream, an error event raises."""

    def __init__(self, where: str, *, forward_usage: bool = True) -> None:
        self.finished = False
        self.complete = False
        self._where = where
        self._forward_usage = forward_usage
        self._started = False

    def decode(self, event: SseEvent, emit: Emit, observe: Emit) -> None:
        if event.done:
            self.finished = True
            return
        try:
            payload = event.json()
        except BadResponseError as exc:
            raise BadResponseError(f"{self._where}: {exc}") from None
        if event.event == "error" or (isinstance(payload, dict) and "error" in payload):
            raise stream_error(self._where, payload, started=self._started)
        chunk = _checked_chunk(payload, self._where)
        choices = chunk["choices"]
        if any(choice.get("finish_reason") for choice in choices):
            self.complete = True
        if not choices and chunk.get("usage") is not None and not self._forward_usage:
            observe(chunk)  # the usage chunk seawall asked for, not the client
            return
        self._started = True
        emit(chunk)


def _checked_chunk(payload: Any, where: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise BadResponseError(
            f"{where}: a stream chunk is {type(payload).__name__}, not an object"
        )
    choices = payload.setdefault("choices", [])
    if not isinstance(choices, list) or not all(
        isinstance(c, dict) and isinstance(c.get("delta", {}), dict) for c in choices
    ):
        raise BadResponseError(f"{where}: a stream chunk's choices are malformed: {choices!r:.200}")
    return payload


def _checked(document: dict[str, Any], kind: LlmKind, where: str) -> dict[str, Any]:
    key = "data" if kind is LlmKind.EMBEDDING else "choices"
    items = document.get(key)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise BadResponseError(f"{where}: the answer has no {key!r} list: {document!r:.200}")
    return document


def _usage(request: LlmRequest, document: dict[str, Any]) -> Usage:
    reported = Usage.from_openai(document.get("usage"))
    if reported is not None:
        return reported
    completion = 0
    for choice in document.get("choices") or ():
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        completion += estimate_tokens(text if isinstance(text, str) else None)
    return Usage(request.estimated_prompt_tokens(), completion, estimated=True)
