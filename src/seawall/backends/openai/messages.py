"""The Anthropic Messages API in the OpenAI chat shape: requests, answers and stream events.

Requests: system (and developer) messages become `system`; user and assistant messages keep
their text (a string, or text parts); `temperature`, `top_p`, `stop` (→ `stop_sequences`) and
`user` (→ `metadata.user_id`) carry over. Whatever cannot be translated faithfully (tools,
images, logprobs, JSON response formats, `n` > 1, other roles) is refused with
`InvalidInputError` naming the field, rather than dropped; other OpenAI fields are ignored.

Answers become a `chat.completion`, with the stop reason mapped (`end_turn` and `stop_sequence`
→ `stop`, `max_tokens` → `length`, `tool_use` → `tool_calls`, `refusal` → `content_filter`) and
the usage (cached input tokens count as prompt tokens). Stream events become
`chat.completion.chunk`s; the role goes out with the first text, so the first chunk (and the
time-to-first-token limit) means the first token: Anthropic sends `message_start` before any
text is generated, and an `overloaded_error` right after it can still fail over unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from seawall.backends.openai.sse import SseEvent
from seawall.backends.openai.stream import Emit, stream_error
from seawall.errors import BadResponseError, InvalidInputError
from seawall.types import Usage

__all__ = [
    "AnthropicChunkDecoder",
    "anthropic_usage",
    "finish_reason",
    "from_message",
    "to_messages_request",
]

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
#: OpenAI fields with no faithful translation: refused rather than silently dropped.
_UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "audio",
    "prediction",
)
_SYSTEM_ROLES = ("system", "developer")
#: Events that belong to a message, so cannot come before its `message_start`.
_MESSAGE_EVENTS = ("content_block_start", "content_block_delta", "message_delta", "message_stop")


def to_messages_request(
    body: Mapping[str, Any], upstream_model: str, *, max_tokens: int
) -> dict[str, Any]:
    """An OpenAI chat body as a Messages API body; `InvalidInputError` if it cannot be one."""
    _refuse_untranslatable(body)
    system, turns = _split_messages(body.get("messages"))
    out: dict[str, Any] = {"model": upstream_model, "messages": turns, "max_tokens": max_tokens}
    if system:
        out["system"] = "\n\n".join(system)
    out.update({k: body[k] for k in ("temperature", "top_p") if body.get(k) is not None})
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("stream") is True:
        out["stream"] = True
    return out


def _refuse_untranslatable(body: Mapping[str, Any]) -> None:
    for name in _UNSUPPORTED:
        if body.get(name):
            raise InvalidInputError(name, "not supported by the Anthropic adapter")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type", "text") != "text":
        raise InvalidInputError(
            "response_format", "only text is supported by the Anthropic adapter"
        )
    if body.get("n") not in (None, 1):
        raise InvalidInputError(
            "n", f"the Anthropic Messages API gives one choice, not {body['n']}"
        )


def _split_messages(messages: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """The system prompt's parts, and the user and assistant turns."""
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError("messages", "must be a non-empty list")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidInputError(f"messages[{i}]", "must be an object")
        role, content = message.get("role"), _content(message.get("content"), f"messages[{i}]")
        if role in _SYSTEM_ROLES:
            system.append(content if isinstance(content, str) else _text(content))
        elif role in ("user", "assistant"):
            turns.append({"role": role, "content": content})
        else:
            raise InvalidInputError(
                f"messages[{i}].role", f"{role!r} is not supported by the Anthropic adapter"
            )
    if not turns:
        raise InvalidInputError("messages", "needs a user or assistant message, not only system")
    return system, turns


def _content(content: Any, where: str) -> str | list[dict[str, str]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidInputError(f"{where}.content", "must be text or a list of text parts")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise InvalidInputError(
                f"{where}.content[{j}]", f"part type {kind!r} is not supported (text only)"
            )
        parts.append({"type": "text", "text": part["text"]})
    return parts


def _text(blocks: Any) -> str:
    return "".join(
        block["text"]
        for block in blocks
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


def finish_reason(stop_reason: Any) -> str | None:
    """An Anthropic `stop_reason` as an OpenAI `finish_reason` (unknown reasons → `stop`)."""
    return None if stop_reason is None else _FINISH_REASONS.get(stop_reason, "stop")


def anthropic_usage(usage: Any) -> Usage | None:
    """Anthropic's `usage` (input, cached input and output tokens) as a `Usage`."""
    if not isinstance(usage, dict):
        return None
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    prompt = sum(v for k in keys if isinstance(v := usage.get(k), int))
    output = usage.get("output_tokens")
    return Usage(prompt, output if isinstance(output, int) else 0)


def from_message(message: Mapping[str, Any], *, created: int, where: str) -> dict[str, Any]:
    """An Anthropic `message` as an OpenAI `chat.completion`."""
    if message.get("type") != "message" or not isinstance(message.get("content"), list):
        raise BadResponseError(f"{where}: the answer is not a message: {message!r:.200}")
    document: dict[str, Any] = {
        "id": message.get("id", ""),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _text(message["content"])},
                "finish_reason": finish_reason(message.get("stop_reason")),
                "logprobs": None,
            }
        ],
    }
    usage = anthropic_usage(message.get("usage"))
    if usage is not None:
        document["usage"] = usage.to_dict()
    return document


class AnthropicChunkDecoder:
    """Anthropic stream events to OpenAI chunks: `message_stop` ends the stream."""

    def __init__(self, where: str, *, created: int, forward_usage: bool = False) -> None:
        self.finished = False
        self.complete = False
        self._where = where
        self._created = created
        self._forward_usage = forward_usage
        self._message: dict[str, Any] | None = None  # the `message` of `message_start`
        self._usage = Usage()
        self._role_sent = False

    def decode(self, event: SseEvent, emit: Emit, observe: Emit) -> None:
        try:
            payload = event.json()
        except BadResponseError as exc:
            raise BadResponseError(f"{self._where}: {exc}") from None
        kind = payload.get("type", event.event) if isinstance(payload, dict) else event.event
        if kind == "error" or event.event == "error":
            raise stream_error(self._where, payload, started=self._role_sent)
        if not isinstance(payload, dict):
            raise BadResponseError(f"{self._where}: a {kind!r} event is not an object")
        if kind == "message_start":
            self._start(payload)
        elif kind in _MESSAGE_EVENTS and self._message is None:
            raise BadResponseError(f"{self._where}: a {kind!r} event came before message_start")
        elif kind == "content_block_start":
            self._text(payload.get("content_block"), "text", emit)
        elif kind == "content_block_delta":
            self._text(payload.get("delta"), "text_delta", emit)
        elif kind == "message_delta":
            self._finish(payload, emit)
        elif kind == "message_stop":
            self.finished = True
            chunk = {**self._chunk([]), "usage": self._usage.to_dict()}
            (emit if self._forward_usage else observe)(chunk)
        # ping, content_block_stop, and types added later: nothing for the client

    def _start(self, payload: dict[str, Any]) -> None:
        message = payload.get("message")
        if not isinstance(message, dict):
            raise BadResponseError(f"{self._where}: message_start without a message")
        self._message = message
        self._usage = anthropic_usage(message.get("usage")) or Usage()

    def _text(self, block: Any, text_type: str, emit: Emit) -> None:
        # Other blocks (tool_use, thinking) and deltas (input_json, thinking) are not text.
        if isinstance(block, dict) and block.get("type") == text_type:
            text = block.get("text")
            if isinstance(text, str) and text:
                emit(self._delta({"content": text}))

    def _finish(self, payload: dict[str, Any], emit: Emit) -> None:
        reported, usage = payload.get("usage"), anthropic_usage(payload.get("usage"))
        if isinstance(reported, dict) and usage is not None:  # cumulative counts
            if "output_tokens" in reported:
                self._usage.completion_tokens = usage.completion_tokens
            if "input_tokens" in reported:
                self._usage.prompt_tokens = usage.prompt_tokens
        delta = payload.get("delta")
        reason = finish_reason(delta.get("stop_reason")) if isinstance(delta, dict) else None
        if reason is not None:
            self.complete = True
            emit(self._delta({}, reason))

    def _delta(self, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", "content": "", **delta}
        choice = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        return self._chunk([choice])

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        message = self._message or {}
        return {
            "id": message.get("id", ""),
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": message.get("model", ""),
            "choices": choices,
        }
