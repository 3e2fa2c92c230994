"""LLM calls in the OpenAI shape, the lingua franca of providers (adapters translate the others).

A request keeps the client's OpenAI body as is (`body`), so fields seawall does not know pass
through to OpenAI-compatible upstreams untouched. A streamed answer is an `LlmResponse` whose
`stream` yields the chunks after the first: the pipeline returns only once the first chunk has
arrived, so every policy (timeouts, retries, failover, fallback) acts on the part of a stream
the client has not seen yet, and a failure after that ends the stream with an error event.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["ChunkStream", "LlmKind", "LlmRequest", "LlmResponse", "Usage", "estimate_tokens"]

#: Characters per token of English text in the usual BPE vocabularies (OpenAI's rule of thumb).
CHARS_PER_TOKEN = 4


class LlmKind(StrEnum):
    """Which OpenAI endpoint a request came from."""

    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"


@dataclass(slots=True)
class Usage:
    """Tokens a call used; `estimated` when the provider did not say and seawall counted."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        """The OpenAI `usage` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """Read an OpenAI `usage` object; None if it is absent or malformed."""
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
        if not isinstance(prompt, int) or not isinstance(completion, int | None):
            return None
        return cls(prompt, completion or 0)


def estimate_tokens(value: Any) -> int:
    """Tokens in a prompt, message list or text, by character count (no tokenizer download)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return max(1, -(-len(value) // CHARS_PER_TOKEN)) if value else 0
    if isinstance(value, int) and not isinstance(value, bool):
        return 1  # a token id: completion prompts and embedding inputs may be given as tokens
    if isinstance(value, list):
        return sum(estimate_tokens(v) for v in value)
    if isinstance(value, dict):
        # A message: its text parts count, plus a few tokens of role and framing per message.
        return 4 + sum(estimate_tokens(v) for k, v in value.items() if k in ("content", "text"))
    return 0


@dataclass(slots=True)
class LlmRequest:
    """An OpenAI-shaped call: `model` is the name the client used (a model group)."""

    kind: LlmKind
    model: str
    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def max_tokens(self) -> int | None:
        value = self.body.get("max_completion_tokens", self.body.get("max_tokens"))
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def prompt(self) -> Any:
        """What the client sent to be read: messages, prompt or input."""
        return self.body.get({"chat": "messages", "completion": "prompt"}.get(self.kind, "input"))

    def estimated_prompt_tokens(self) -> int:
        return estimate_tokens(self.prompt())

    def body_for(self, upstream_model: str) -> dict[str, Any]:
        """The body to send upstream: the client's, addressed to the upstream's model name."""
        return {**self.body, "model": upstream_model}


class ChunkStream:
    """The chunks of a streamed answer after the first, with the usage known at the end.

    Iterate it once. `usage` is the provider's if a chunk carried it, else an estimate from
    the text streamed. `close()` (or `aclose()`) stops the upstream stream and frees its
    connection; `on_done` callbacks run once, when the stream ends or is closed, with the usage.
    """

    def __init__(
        self,
        chunks: AsyncIterator[dict[str, Any]],
        *,
        prompt_tokens: int,
        close: Callable[[], Any] | None = None,
    ) -> None:
        self._chunks = chunks
        self._close = close
        self._text_chars = 0
        self._finished = False
        self.usage = Usage(prompt_tokens, 0, estimated=True)
        self.on_done: list[Callable[[Usage], None]] = []

    def count(self, chunk: dict[str, Any]) -> None:
        """Account for one chunk (the first, which the pipeline already holds, included)."""
        reported = Usage.from_openai(chunk.get("usage"))
        if reported is not None:
            # In place: whoever holds `usage` (LlmResponse.usage of a stream) sees the final count.
            self.usage.prompt_tokens = reported.prompt_tokens
            self.usage.completion_tokens = reported.completion_tokens
            self.usage.estimated = False
            return
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content") or choice.get("text") or ""
            if isinstance(text, str):
                self._text_chars += len(text)
        if self.usage.estimated:
            self.usage.completion_tokens = -(-self._text_chars // CHARS_PER_TOKEN)

    def __aiter__(self) -> ChunkStream:
        # The stream is its own iterator (not a generator per `aiter()`): an abandoned
        # generator would close the stream from a garbage-collection finalizer, mid-answer.
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._finished:
            raise StopAsyncIteration
        try:
            chunk = await anext(self._chunks)
        except BaseException:  # the end (StopAsyncIteration), an error or a cancellation
            await self.aclose()
            raise
        self.count(chunk)
        return chunk

    async def aclose(self) -> None:
        if self._finished:
            return
        self._finished = True
        # An async generator left suspended would be finalised at garbage collection, in a task.
        if inspect.isasyncgen(self._chunks) and not self._chunks.ag_running:
            await self._chunks.aclose()
        if self._close is not None:
            result = self._close()
            if hasattr(result, "__await__"):
                await result
        for callback in self.on_done:
            callback(self.usage)


@dataclass(slots=True)
class LlmResponse:
    """A complete answer (`body`), or a streamed one (`first` chunk, then `stream`)."""

    model: str
    body: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    stream: ChunkStream | None = None
    usage: Usage = field(default_factory=Usage)
    #: Deployment that answered (`group/deployment`), for `x-seawall-served-by`.
    served_by: str = ""
