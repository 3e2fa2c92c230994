"""OpenAI request decoding and validation, answer and SSE encoding."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from seawall.errors import BadResponseError, InvalidInputError
from seawall.gateway.openai.codec import (
    DONE_EVENT,
    as_chunk,
    decode_request,
    encode_response,
    parse_body,
    sse_event,
)
from seawall.types import ChunkStream, LlmKind, LlmResponse

CHAT = LlmKind.CHAT
COMPLETION = LlmKind.COMPLETION
EMBEDDING = LlmKind.EMBEDDING


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **fields}


def _invalid(kind: LlmKind, body: dict[str, Any]) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        decode_request(kind, body)
    return caught.value


# --- parse_body ---------------------------------------------------------------------------


def test_parse_body_reads_a_json_object() -> None:
    assert parse_body(b'{"model": "m", "x": [1, 2]}') == {"model": "m", "x": [1, 2]}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{nope", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object, got a list"),
        (b'"text"', "expected a JSON object, got 'text'"),
        (b"null", "expected a JSON object, got null"),
    ],
)
def test_parse_body_refuses_anything_but_an_object(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_body(raw)
    assert caught.value.field == "body"
    assert caught.value.reason.startswith(reason)


# --- chat -----------------------------------------------------------------------------------


def test_a_chat_body_is_kept_as_sent_unknown_fields_included() -> None:
    body = _chat(temperature=0.5, x_vendor={"keep": [1, 2]}, stream=True)
    request = decode_request(CHAT, body)
    assert request.kind is CHAT
    assert request.model == "chat"
    assert request.body is body
    assert request.body["x_vendor"] == {"keep": [1, 2]}
    assert request.stream is True


def test_every_role_and_content_form_is_accepted() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "really"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "assistant", "tool_calls": [{"id": "c2"}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "function", "content": "43", "name": "f"},
    ]
    assert decode_request(CHAT, _chat(messages=messages)).body["messages"] == messages


def test_null_optional_parameters_count_as_absent() -> None:
    names = ["temperature", "top_p", "n", "max_tokens", "stop", "stream", "seed", "tools"]
    decode_request(CHAT, _chat(**dict.fromkeys(names)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 0),
        ("temperature", 2),
        ("temperature", 1.3),
        ("top_p", 1),
        ("top_p", 0.0),
        ("n", 1),
        ("n", 128),
        ("max_tokens", 1),
        ("max_completion_tokens", 4096),
        ("stop", "END"),
        ("stop", ["a", "b", "c", "d"]),
        ("stop", []),
        ("presence_penalty", -2),
        ("frequency_penalty", 2.0),
        ("seed", -5),
        ("logprobs", True),
        ("top_logprobs", 20),
        ("tool_choice", "auto"),
        ("tool_choice", {"type": "function", "function": {"name": "f"}}),
        ("response_format", {"type": "json_object"}),
        ("user", "u-1"),
    ],
)
def test_parameters_in_range_are_accepted(field: str, value: Any) -> None:
    assert decode_request(CHAT, _chat(**{field: value})).body[field] == value


@pytest.mark.parametrize(
    ("fields", "param", "reason"),
    [
        ({"model": None}, "model", "expected a model name, got null"),
        ({"model": ""}, "model", "expected a model name, got ''"),
        ({"model": 7}, "model", "expected a model name, got 7"),
        ({"messages": None}, "messages", "expected a non-empty list of messages, got null"),
        ({"messages": []}, "messages", "expected a non-empty list of messages, got a list"),
        ({"messages": "hi"}, "messages", "expected a non-empty list of messages, got 'hi'"),
        ({"messages": [["user"]]}, "messages[0]", "expected a message object, got a list"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
            "messages[1].role",
            "expected one of system, developer, user, assistant, tool, function, got 'robot'",
        ),
        (
            {"messages": [{"content": "a"}]},
            "messages[0].role",
            "expected one of system, developer, user, assistant, tool, function, got null",
        ),
        (
            {"messages": [{"role": "user"}]},
            "messages[0].content",
            "expected a string or a list of content parts, got null",
        ),
        (
            {"messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "expected a string or a list of content parts, got 5",
        ),
        (
            {"messages": [{"role": "user", "content": ["hi"]}]},
            "messages[0].content[0]",
            "expected a content part object, got 'hi'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            "messages[0].content[0].type",
            "expected a part type, got null",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            "messages[0].content[0].text",
            "expected a string, got 3",
        ),
        (
            {"messages": [{"role": "user", "content": "a", "name": 1}]},
            "messages[0].name",
            "expected a string, got 1",
        ),
        (
            {"messages": [{"role": "tool", "content": "42"}]},
            "messages[0].tool_call_id",
            "a tool message needs the id of its tool call, got null",
        ),
        ({"temperature": 2.5}, "temperature", "must be between 0 and 2, got 2.5"),
        ({"temperature": -0.1}, "temperature", "must be between 0 and 2, got -0.1"),
        ({"temperature": "hot"}, "temperature", "expected a number, got 'hot'"),
        ({"temperature": True}, "temperature", "expected a number, got true"),
        ({"top_p": 1.01}, "top_p", "must be between 0 and 1, got 1.01"),
        ({"n": 0}, "n", "must be at least 1, got 0"),
        ({"n": 129}, "n", "must be at most 128, got 129"),
        ({"n": 1.5}, "n", "expected a whole number, got 1.5"),
        ({"max_tokens": 0}, "max_tokens", "must be at least 1, got 0"),
        ({"max_completion_tokens": -1}, "max_completion_tokens", "must be at least 1, got -1"),
        ({"stop": ["a"] * 5}, "stop", "at most 4 stop sequences, got 5"),
        ({"stop": [1]}, "stop", "expected a string or a list of strings, got a list"),
        ({"stream": "yes"}, "stream", "expected true or false, got 'yes'"),
        ({"stream": 1}, "stream", "expected true or false, got 1"),
        ({"stream_options": []}, "stream_options", "expected an object, got a list"),
        ({"presence_penalty": 3}, "presence_penalty", "must be between -2 and 2, got 3"),
        ({"top_logprobs": 21}, "top_logprobs", "must be at most 20, got 21"),
        ({"tools": {}}, "tools", "expected a list, got an object"),
        ({"tool_choice": 1}, "tool_choice", "expected a string or an object, got 1"),
        ({"user": ["me"]}, "user", "expected a string, got a list"),
        ({"seed": "s" * 60}, "seed", f"expected a whole number, got '{'s' * 37}...'"),
    ],
)
def test_an_invalid_chat_field_is_named_with_the_reason(
    fields: dict[str, Any], param: str, reason: str
) -> None:
    error = _invalid(CHAT, _chat(**fields))
    assert error.field == param
    assert error.reason == reason
    assert error.message == f"{param}: {reason}"


def test_a_missing_model_is_named_before_anything_else() -> None:
    assert _invalid(CHAT, {"messages": "nope", "temperature": 9}).field == "model"


# --- completions ------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "Once", ["a", ""], [1, 2, 3], [[1, 2], [3]]])
def test_every_prompt_form_is_accepted(prompt: Any) -> None:
    body = {"model": "m", "prompt": prompt, "best_of": 2, "echo": True, "logprobs": 5}
    assert decode_request(COMPLETION, body).prompt() == prompt


@pytest.mark.parametrize(
    ("fields", "param", "reason"),
    [
        ({}, "prompt", "expected a string or a non-empty list, got null"),
        ({"prompt": []}, "prompt", "expected a string or a non-empty list, got a list"),
        ({"prompt": ["a", 1]}, "prompt[1]", "expected a string, got 1"),
        ({"prompt": [1, -1]}, "prompt[1]", "expected a token id (a whole number, at least 0)"),
        ({"prompt": [[1], []]}, "prompt[1]", "expected a non-empty list of token ids, got a list"),
        ({"prompt": [{"a": 1}]}, "prompt[0]", "expected a string, a token id or a list of token"),
        ({"prompt": [True]}, "prompt[0]", "expected a string, a token id or a list of token ids"),
        ({"prompt": "a", "logprobs": 6}, "logprobs", "must be at most 5, got 6"),
        ({"prompt": "a", "best_of": 0}, "best_of", "must be at least 1, got 0"),
        ({"prompt": "a", "echo": "no"}, "echo", "expected true or false, got 'no'"),
        ({"prompt": "a", "temperature": 3}, "temperature", "must be between 0 and 2, got 3"),
    ],
)
def test_an_invalid_completion_field_is_named(
    fields: dict[str, Any], param: str, reason: str
) -> None:
    error = _invalid(COMPLETION, {"model": "m", **fields})
    assert error.field == param
    assert error.reason.startswith(reason)


# --- embeddings ------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["text", ["a", "b"], [5, 6], [[5], [6, 7]]])
def test_every_embedding_input_form_is_accepted(given: Any) -> None:
    body = {"model": "e", "input": given, "encoding_format": "base64", "dimensions": 8}
    request = decode_request(EMBEDDING, body)
    assert request.kind is EMBEDDING
    assert request.prompt() == given


@pytest.mark.parametrize(
    ("fields", "param", "reason"),
    [
        ({"input": ""}, "input", "must not be empty"),
        ({"input": ["a", ""]}, "input[1]", "expected a non-empty string, got ''"),
        ({"input": None}, "input", "expected a string or a non-empty list, got null"),
        ({"input": ["a"] * 2049}, "input", "at most 2048 inputs, got 2049"),
        ({"input": "a", "encoding_format": "hex"}, "encoding_format", "expected 'float' or"),
        ({"input": "a", "dimensions": 0}, "dimensions", "must be at least 1, got 0"),
        ({"input": "a", "stream": True}, "stream", "embeddings are not streamed"),
    ],
)
def test_an_invalid_embedding_field_is_named(
    fields: dict[str, Any], param: str, reason: str
) -> None:
    error = _invalid(EMBEDDING, {"model": "e", **fields})
    assert error.field == param
    assert error.reason.startswith(reason)


def test_chat_parameters_are_not_checked_on_embeddings() -> None:
    body = {"model": "e", "input": "a", "temperature": 99, "stream": False}
    assert decode_request(EMBEDDING, body).body["temperature"] == 99


# --- encoding ---------------------------------------------------------------------------------


def test_a_complete_answer_is_passed_through() -> None:
    body = {"id": "x", "choices": [], "vendor": {"extra": True}, "usage": None}
    assert orjson.loads(encode_response(LlmResponse("m", body=body), "chat")) == body


async def test_a_stream_where_a_complete_answer_was_asked_is_a_bad_response() -> None:
    stream = ChunkStream(_nothing(), prompt_tokens=1)
    response = LlmResponse("m", first={"choices": []}, stream=stream)
    with pytest.raises(BadResponseError, match="model 'chat': answered a request for a complete"):
        encode_response(response, "chat")


async def _nothing() -> Any:
    for chunk in ():
        yield chunk


def test_sse_events_are_data_lines_ending_in_a_blank_line() -> None:
    assert sse_event({"a": [1, "é"]}) == b'data: {"a":[1,"\xc3\xa9"]}\n\n'
    assert DONE_EVENT == b"data: [DONE]\n\n"


def test_a_complete_chat_answer_becomes_one_chunk() -> None:
    body = {
        "id": "c1",
        "object": "chat.completion",
        "created": 5,
        "model": "up",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hey"},
                "finish_reason": "stop",
            },
            {"message": None, "finish_reason": "length", "logprobs": {"content": []}},
            "junk",
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    assert as_chunk(CHAT, body) == {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "up",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "hey"},
                "finish_reason": "stop",
                "logprobs": None,
            },
            {"index": 1, "delta": {}, "finish_reason": "length", "logprobs": {"content": []}},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def test_a_complete_text_completion_is_its_own_chunk() -> None:
    body = {"object": "text_completion", "choices": [{"index": 0, "text": "x"}]}
    assert as_chunk(COMPLETION, body) == body
