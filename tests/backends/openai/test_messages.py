"""Tests of the OpenAI ⇄ Anthropic Messages API translation: requests, answers, stream events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from seawall.backends.openai.messages import (
    AnthropicChunkDecoder,
    anthropic_usage,
    finish_reason,
    from_message,
    to_messages_request,
)
from seawall.backends.openai.sse import SseEvent
from seawall.errors import BackendUnavailableError, BadResponseError, InvalidInputError
from seawall.types import Usage


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return to_messages_request(body, "claude-x", max_tokens=100)


def test_a_plain_chat_becomes_a_messages_request() -> None:
    assert translate() == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 100,
    }


def test_system_and_developer_messages_are_hoisted_into_system() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        {
            "role": "developer",
            "content": [{"type": "text", "text": "No "}, {"type": "text", "text": "jokes."}],
        },
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
    ]
    body = translate(messages=messages)
    assert body["system"] == "Be brief.\n\nNo jokes."
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
    ]


def test_sampling_stop_user_and_stream_carry_over() -> None:
    body = translate(temperature=0.2, top_p=0.9, stop="END", user="u-1", stream=True, seed=3)
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["stream"] is True
    assert "seed" not in body
    assert translate(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert "stream" not in translate(stream=False)
    assert "temperature" not in translate(temperature=None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"n": 2}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": "Hi"}, "messages"),
        ({"messages": ["Hi"]}, "messages[0]"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].role"),
        ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_what_cannot_be_translated_faithfully_is_refused(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        translate(**body)
    assert caught.value.field == field


def test_harmless_defaults_of_unsupported_fields_pass() -> None:
    body = translate(n=1, logprobs=False, tools=[], response_format={"type": "text"})
    assert set(body) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, None),
    ],
)
def test_finish_reasons(stop_reason: str | None, expected: str | None) -> None:
    assert finish_reason(stop_reason) == expected


def test_usage_counts_cached_input_as_prompt() -> None:
    usage = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 100,
        "output_tokens": 7,
    }
    assert anthropic_usage(usage) == Usage(115, 7)
    assert anthropic_usage({"input_tokens": 3, "cache_read_input_tokens": None}) == Usage(3, 0)
    assert anthropic_usage("nope") is None


MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x-20250101",
    "content": [
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        {"type": "text", "text": " world"},
    ],
    "stop_reason": "max_tokens",
    "usage": {"input_tokens": 12, "output_tokens": 2},
}


def test_a_message_becomes_a_chat_completion() -> None:
    assert from_message(MESSAGE, created=1_700_000_000, where="up") == {
        "id": "msg_1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "claude-x-20250101",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world"},
                "finish_reason": "length",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }


def test_a_message_without_usage_has_none() -> None:
    message = {k: v for k, v in MESSAGE.items() if k != "usage"}
    assert "usage" not in from_message(message, created=1, where="up")


@pytest.mark.parametrize(
    "answer", [{"type": "error", "error": {}}, {"type": "message", "content": "text"}]
)
def test_an_answer_that_is_not_a_message_is_a_bad_response(answer: dict[str, Any]) -> None:
    with pytest.raises(BadResponseError, match=r"^up: the answer is not a message"):
        from_message(answer, created=1, where="up")


# Stream events.


def ev(kind: str, **fields: Any) -> SseEvent:
    return SseEvent(orjson.dumps({"type": kind, **fields}).decode(), kind)


START = ev(
    "message_start",
    message={"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 25, "output_tokens": 1}},
)


def text_delta(text: str) -> SseEvent:
    return ev("content_block_delta", index=0, delta={"type": "text_delta", "text": text})


def decode(
    events: list[SseEvent], *, forward_usage: bool = False
) -> tuple[AnthropicChunkDecoder, list[dict[str, Any]], list[dict[str, Any]]]:
    decoder = AnthropicChunkDecoder("up", created=77, forward_usage=forward_usage)
    emitted: list[dict[str, Any]] = []
    observed: list[dict[str, Any]] = []
    for event in events:
        decoder.decode(event, emitted.append, observed.append)
    return decoder, emitted, observed


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {
        "id": "msg_1",
        "object": "chat.completion.chunk",
        "created": 77,
        "model": "claude-x",
        "choices": [choice],
    }


FULL_STREAM = [
    START,
    ev("ping"),
    ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    text_delta("Hel"),
    ev("ping"),
    text_delta("lo"),
    ev("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "hm"}),
    ev("content_block_stop", index=0),
    ev("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 6}),
    ev("message_stop"),
]
USAGE_CHUNK = {
    **chunk({}),
    "choices": [],
    "usage": {"prompt_tokens": 25, "completion_tokens": 6, "total_tokens": 31},
}


def test_a_stream_becomes_chunks_with_the_role_on_the_first_text() -> None:
    decoder, emitted, observed = decode(FULL_STREAM)
    assert emitted == [
        chunk({"role": "assistant", "content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
    ]
    assert observed == [USAGE_CHUNK]  # the client did not ask for a usage chunk
    assert decoder.finished
    assert decoder.complete


def test_the_usage_chunk_is_emitted_when_the_client_asked() -> None:
    _, emitted, observed = decode(FULL_STREAM, forward_usage=True)
    assert emitted[-1] == USAGE_CHUNK
    assert observed == []


def test_message_start_alone_emits_nothing_so_ttft_means_the_first_token() -> None:
    decoder, emitted, _ = decode(
        [
            START,
            ev("ping"),
            ev("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        ]
    )
    assert emitted == []
    assert not decoder.finished


def test_text_in_content_block_start_is_emitted() -> None:
    start_block = ev("content_block_start", index=0, content_block={"type": "text", "text": "Hi"})
    _, emitted, _ = decode([START, start_block])
    assert emitted == [chunk({"role": "assistant", "content": "Hi"})]


def test_an_empty_answer_still_sends_the_role_with_its_finish_reason() -> None:
    stop = ev("message_delta", delta={"stop_reason": "max_tokens"}, usage={"output_tokens": 0})
    _, emitted, observed = decode([START, stop, ev("message_stop")])
    assert emitted == [chunk({"role": "assistant", "content": ""}, "length")]
    assert observed[0]["usage"]["completion_tokens"] == 0


def test_input_tokens_in_message_delta_replace_the_start_count() -> None:
    delta = ev(
        "message_delta",
        delta={"stop_reason": "end_turn"},
        usage={"input_tokens": 30, "cache_read_input_tokens": 70, "output_tokens": 2},
    )
    _, _, observed = decode([START, text_delta("x"), delta, ev("message_stop")])
    assert observed[0]["usage"] == {
        "prompt_tokens": 100,
        "completion_tokens": 2,
        "total_tokens": 102,
    }


def test_an_error_before_the_first_text_is_unavailable_after_it_a_bad_response() -> None:
    error = ev("error", error={"type": "overloaded_error", "message": "Overloaded"})
    with pytest.raises(
        BackendUnavailableError,
        match=r"^up: .*instead of an answer: Overloaded \(overloaded_error\)",
    ):
        decode([START, error])
    with pytest.raises(BadResponseError, match=r"mid-stream: Overloaded \(overloaded_error\)"):
        decode([START, text_delta("a"), error])


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([text_delta("a")], "'content_block_delta' event came before message_start"),
        ([ev("message_start")], "message_start without a message"),
        ([SseEvent("{nope", "message_start")], "^up: malformed JSON"),
        ([SseEvent("[1]", "ping")], "a 'ping' event is not an object"),
    ],
)
def test_malformed_events_are_bad_responses(events: list[SseEvent], message: str) -> None:
    with pytest.raises(BadResponseError, match=message):
        decode(events)
