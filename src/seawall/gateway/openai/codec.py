"""OpenAI request bodies in, `LlmRequest` out; answers and Server-Sent Events back.

Decoding checks what OpenAI checks before a model is called (required fields, types, numeric
ranges) and keeps the body as sent: unknown fields pass through to the upstream untouched.
A bad field raises `InvalidInputError` whose `field` is the OpenAI `param` path
(`messages[2].content[0].text`); `body` names the body as a whole.

Streams are SSE as OpenAI sends them: one `data: <chunk JSON>` event per chunk, then
`data: [DONE]`. A failure after the first chunk cannot change the status any more (the client
already has its 200), so the stream ends with one `data: {"error": {...}}` event, the same
object as an error body, then `data: [DONE]`; the `openai` SDK raises `APIError` on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from seawall.errors import BadResponseError, InvalidInputError
from seawall.types import LlmKind, LlmRequest, LlmResponse

__all__ = ["DONE_EVENT", "as_chunk", "decode_request", "encode_response", "parse_body", "sse_event"]

#: The event that ends every stream.
DONE_EVENT = b"data: [DONE]\n\n"
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
#: Most stop sequences OpenAI accepts.
MAX_STOP = 4
#: Most inputs in one embeddings request (OpenAI's limit).
MAX_EMBEDDING_INPUTS = 2048

#: Checks a present, non-null value; returns why it is invalid, or None.
Check = Callable[[Any], str | None]


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError("body", f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInputError("body", f"expected a JSON object, got {_describe(document)}")
    return document


def decode_request(kind: LlmKind, document: dict[str, Any]) -> LlmRequest:
    """Validate a parsed body for the endpoint `kind`; the request keeps the body as is."""
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInputError("model", f"expected a model name, got {_describe(model)}")
    _check_payload(kind, document)
    for name, check in _PARAMS[kind].items():
        value = document.get(name)
        if value is not None and (reason := check(value)) is not None:
            raise InvalidInputError(name, reason)
    return LlmRequest(kind, model, document)


def encode_response(response: LlmResponse, group: str) -> bytes:
    """The body of a complete (non-streamed) answer, passed through as the upstream sent it."""
    if response.body is None:
        raise BadResponseError(
            f"model {group!r}: answered a request for a complete answer with a stream"
        )
    return orjson.dumps(response.body)


def sse_event(document: Any) -> bytes:
    """One Server-Sent Event carrying `document` as JSON."""
    return b"data: " + orjson.dumps(document) + b"\n\n"


def as_chunk(kind: LlmKind, body: Mapping[str, Any]) -> dict[str, Any]:
    """A complete answer (say, a cached fallback) as the single chunk of a stream."""
    if kind is not LlmKind.CHAT:
        return dict(body)  # a text_completion chunk has the shape of the complete answer
    choices = [
        {
            "index": choice.get("index", i),
            "delta": choice.get("message") or {},
            "finish_reason": choice.get("finish_reason"),
            "logprobs": choice.get("logprobs"),
        }
        for i, choice in enumerate(body.get("choices") or ())
        if isinstance(choice, dict)
    ]
    return {**body, "object": "chat.completion.chunk", "choices": choices}


# --- the payload: messages, prompt or input ------------------------------------------------


def _check_payload(kind: LlmKind, document: dict[str, Any]) -> None:
    if kind is LlmKind.CHAT:
        _check_messages(document.get("messages"))
    elif kind is LlmKind.COMPLETION:
        _check_inputs("prompt", document.get("prompt"), allow_empty_text=True)
    else:
        _check_inputs("input", document.get("input"), allow_empty_text=False)
        if document.get("stream") is True:
            raise InvalidInputError("stream", "embeddings are not streamed")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(
            "messages", f"expected a non-empty list of messages, got {_describe(messages)}"
        )
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidInputError(where, f"expected a message object, got {_describe(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidInputError(
                f"{where}.role", f"expected one of {', '.join(ROLES)}, got {_describe(role)}"
            )
        _check_content(where, role, message.get("content"))
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidInputError(f"{where}.name", f"expected a string, got {_describe(name)}")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise InvalidInputError(
                f"{where}.tool_call_id",
                f"a tool message needs the id of its tool call, got "
                f"{_describe(message.get('tool_call_id'))}",
            )


def _check_content(where: str, role: str, content: Any) -> None:
    if isinstance(content, str) or (content is None and role == "assistant"):
        return  # an assistant message may carry tool calls instead of content
    if not isinstance(content, list):
        raise InvalidInputError(
            f"{where}.content",
            f"expected a string or a list of content parts, got {_describe(content)}",
        )
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise InvalidInputError(at, f"expected a content part object, got {_describe(part)}")
        kind = part.get("type")
        if not isinstance(kind, str) or not kind:
            raise InvalidInputError(f"{at}.type", f"expected a part type, got {_describe(kind)}")
        if kind == "text" and not isinstance(part.get("text"), str):
            raise InvalidInputError(
                f"{at}.text", f"expected a string, got {_describe(part.get('text'))}"
            )


def _check_inputs(name: str, value: Any, *, allow_empty_text: bool) -> None:
    """A string, or a non-empty list of strings, of token ids, or of token id lists."""
    if isinstance(value, str):
        if not value and not allow_empty_text:
            raise InvalidInputError(name, "must not be empty")
        return
    if not isinstance(value, list) or not value:
        raise InvalidInputError(
            name, f"expected a string or a non-empty list, got {_describe(value)}"
        )
    if name == "input" and len(value) > MAX_EMBEDDING_INPUTS:
        raise InvalidInputError(name, f"at most {MAX_EMBEDDING_INPUTS} inputs, got {len(value)}")
    # The first item says which of the three list forms this is; the others must match it.
    first = value[0]
    valid: Callable[[Any], bool]
    if isinstance(first, str):
        expected = "a string" if allow_empty_text else "a non-empty string"
        valid = (lambda s: isinstance(s, str)) if allow_empty_text else _is_text
    elif isinstance(first, list):
        expected, valid = "a non-empty list of token ids", _is_token_list
    elif _is_token(first):
        expected, valid = "a token id (a whole number, at least 0)", _is_token
    else:
        expected, valid = "a string, a token id or a list of token ids", lambda _: False
    for i, item in enumerate(value):
        if not valid(item):
            raise InvalidInputError(f"{name}[{i}]", f"expected {expected}, got {_describe(item)}")


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(map(_is_token, value))


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


# --- scalar parameters ------------------------------------------------------------------------


def _number(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {_describe(value)}"
        if not (math.isfinite(value) and low <= value <= high):
            return f"must be between {low:g} and {high:g}, got {value!r}"
        return None

    return check


def _integer(low: int | None = None, high: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected a whole number, got {_describe(value)}"
        if low is not None and value < low:
            return f"must be at least {low}, got {value}"
        if high is not None and value > high:
            return f"must be at most {high}, got {value}"
        return None

    return check


def _of_type(kind: type, name: str) -> Check:
    def check(value: Any) -> str | None:
        return None if isinstance(value, kind) else f"expected {name}, got {_describe(value)}"

    return check


def _stop(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        return f"expected a string or a list of strings, got {_describe(value)}"
    if len(value) > MAX_STOP:
        return f"at most {MAX_STOP} stop sequences, got {len(value)}"
    return None


def _tool_choice(value: Any) -> str | None:
    if isinstance(value, str | dict):
        return None
    return f"expected a string or an object, got {_describe(value)}"


def _encoding_format(value: Any) -> str | None:
    if value in ("float", "base64"):
        return None
    return f"expected 'float' or 'base64', got {_describe(value)}"


_BOOL = _of_type(bool, "true or false")
_STR = _of_type(str, "a string")
_OBJECT = _of_type(dict, "an object")
_LIST = _of_type(list, "a list")
_SAMPLING: dict[str, Check] = {
    "stream": _BOOL,
    "stream_options": _OBJECT,
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "n": _integer(1, 128),
    "max_tokens": _integer(1),
    "stop": _stop,
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "logit_bias": _OBJECT,
    "seed": _integer(),
    "user": _STR,
}
_PARAMS: dict[LlmKind, dict[str, Check]] = {
    LlmKind.CHAT: _SAMPLING
    | {
        "max_completion_tokens": _integer(1),
        "logprobs": _BOOL,
        "top_logprobs": _integer(0, 20),
        "tools": _LIST,
        "tool_choice": _tool_choice,
        "parallel_tool_calls": _BOOL,
        "response_format": _OBJECT,
        "metadata": _OBJECT,
    },
    LlmKind.COMPLETION: _SAMPLING
    | {"best_of": _integer(1, 20), "echo": _BOOL, "logprobs": _integer(0, 5), "suffix": _STR},
    LlmKind.EMBEDDING: {
        "encoding_format": _encoding_format,
        "dimensions": _integer(1),
        "user": _STR,
    },
}


def _describe(value: Any) -> str:
    """A value as it appears in an error message: short, in JSON terms."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, int | float):
        return repr(value)
    return "a list" if isinstance(value, list) else "an object"
