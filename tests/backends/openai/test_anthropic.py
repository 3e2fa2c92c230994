"""Tests of `AnthropicBackend` against a real scripted HTTP server speaking the Messages API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from seawall.backends.http import HttpUpstream
from seawall.backends.llm import LlmBackend
from seawall.backends.openai.anthropic import AnthropicBackend
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    InvalidInputError,
)
from seawall.types import LlmKind, LlmRequest, LlmResponse, Usage

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.backends.openai.conftest import ScriptedServer

TTFT_S = 0.2
IDLE_S = 0.2
CUT_MAX_S = 2.0
DISCONNECT_MAX_S = 1.0

MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [{"type": "text", "text": "Hi there"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 14, "output_tokens": 3},
}


def chat(*, stream: bool = False, **extra: Any) -> LlmRequest:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    body: dict[str, Any] = {"model": "group", "messages": messages, **extra}
    if stream:
        body["stream"] = True
    return LlmRequest(LlmKind.CHAT, "group", body)


def event(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **fields}) + b"\n\n"


START = event(
    "message_start",
    message={"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 14, "output_tokens": 1}},
)
BLOCK = event("content_block_start", index=0, content_block={"type": "text", "text": ""})
PING = event("ping")


def text(value: str) -> bytes:
    return event("content_block_delta", index=0, delta={"type": "text_delta", "text": value})


END = [
    event("content_block_stop", index=0),
    event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 5}),
    event("message_stop"),
]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall_start=1_700_000_123.0)


@pytest.fixture
async def backend(upstream: HttpUpstream) -> AsyncIterator[AnthropicBackend]:
    claude = AnthropicBackend(
        upstream,
        "claude-x",
        api_key="sk-ant",
        first_token_timeout_s=TTFT_S,
        idle_timeout_s=IDLE_S,
    )
    await claude.load()
    yield claude
    await claude.close()


async def rest(response: LlmResponse) -> list[dict[str, Any]]:
    assert response.stream is not None
    return [chunk async for chunk in response.stream]


async def wait_until_closed(server: ScriptedServer) -> None:
    async with asyncio.timeout(DISCONNECT_MAX_S):
        # Polling: aiohttp offers no event for "a connection closed".
        while server.open_connections or server.active:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_chat_is_translated_there_and_back(
    server: ScriptedServer, upstream: HttpUpstream, clock: FakeClock
) -> None:
    server.script(server.json(MESSAGE))
    backend = AnthropicBackend(
        upstream,
        "claude-x",
        api_key="sk-ant",
        extra_headers={"anthropic-beta": "b1"},
        max_tokens_default=321,
        clock=clock,
    )
    await backend.load()
    response = await backend.call(chat(temperature=0.5), CallContext.new("r-9"))
    assert response.body == {
        "id": "msg_1",
        "object": "chat.completion",
        "created": 1_700_000_123,
        "model": "claude-x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17},
    }
    assert response.usage == Usage(14, 3)
    assert response.model == "group"
    assert response.served_by == backend.name == f"anthropic:{upstream.base_url}/claude-x"
    (seen,) = server.seen
    assert seen.path == "/v1/messages"
    assert seen.body == {
        "model": "claude-x",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 321,
        "temperature": 0.5,
    }
    assert seen.headers["x-api-key"] == "sk-ant"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "b1"
    assert seen.headers["x-request-id"] == "r-9"
    assert "authorization" not in seen.headers


@pytest.mark.parametrize("suffix", ["", "/v1"])
async def test_the_path_is_right_whether_or_not_the_base_url_ends_in_v1(
    server: ScriptedServer, suffix: str
) -> None:
    server.script(server.json(MESSAGE))
    backend = AnthropicBackend(
        HttpUpstream(server.base_url + suffix), "c", api_key="k", anthropic_version="2024-01-01"
    )
    await backend.load()
    try:
        await backend.call(chat(max_tokens=9), CallContext.new())
    finally:
        await backend.close()
    assert server.seen[0].path == "/v1/messages"
    assert server.seen[0].body["max_tokens"] == 9
    assert server.seen[0].headers["anthropic-version"] == "2024-01-01"


async def test_usage_is_estimated_when_the_message_has_none(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    server.script(server.json({k: v for k, v in MESSAGE.items() if k != "usage"}))
    request = chat()
    response = await backend.call(request, CallContext.new())
    assert response.usage == Usage(request.estimated_prompt_tokens(), 2, estimated=True)


@pytest.mark.parametrize("kind", [LlmKind.COMPLETION, LlmKind.EMBEDDING])
async def test_only_chat_is_supported(
    server: ScriptedServer, backend: AnthropicBackend, kind: LlmKind
) -> None:
    request = LlmRequest(kind, "group", {"prompt": "x", "input": "x"})
    with pytest.raises(InvalidInputError, match=f"chat completions only, not {kind.value}"):
        await backend.call(request, CallContext.new())
    assert server.seen == []


async def test_an_untranslatable_request_is_refused_before_calling(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    with pytest.raises(InvalidInputError, match="tools: not supported"):
        await backend.call(chat(tools=[{"type": "function"}]), CallContext.new())
    assert server.seen == []


@pytest.mark.parametrize(
    ("status", "headers", "error_type", "retry_after_s"),
    [
        (529, {}, BackendUnavailableError, None),
        (429, {"retry-after": "3"}, BackendUnavailableError, 3.0),
        (400, {}, InvalidInputError, None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_carry_anthropics_message(
    server: ScriptedServer,
    backend: AnthropicBackend,
    status: int,
    headers: dict[str, str],
    error_type: type[Exception],
    retry_after_s: float | None,
    stream: bool,
) -> None:
    body = {"type": "error", "error": {"type": "some_error", "message": f"Nope {status}"}}
    server.script(server.json(body, status=status, headers=headers))
    with pytest.raises(error_type, match=f"Nope {status}") as caught:
        await backend.call(chat(stream=stream), CallContext.new())
    assert type(caught.value) is error_type
    assert getattr(caught.value, "retry_after_s", None) == retry_after_s


# Streams.


async def test_a_stream_answers_at_its_first_text_and_translates_the_rest(
    server: ScriptedServer, upstream: HttpUpstream, clock: FakeClock
) -> None:
    go = asyncio.Event()
    server.script(server.sse([START, BLOCK, PING, text("Hel"), go, text("lo"), PING, *END]))
    backend = AnthropicBackend(upstream, "claude-x", api_key="k", clock=clock)
    response = await backend.call(chat(stream=True), CallContext.new())
    base = {"id": "msg_1", "object": "chat.completion.chunk", "created": 1_700_000_123}
    base["model"] = "claude-x"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {**base, "choices": [choice]}

    assert response.first == chunk({"role": "assistant", "content": "Hel"})
    go.set()
    assert await rest(response) == [chunk({"content": "lo"}), chunk({}, "stop")]
    assert response.stream is not None
    assert response.stream.usage == Usage(14, 5)
    assert server.seen[0].body["stream"] is True


async def test_the_usage_chunk_is_passed_on_when_the_client_asked_for_it(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    server.script(server.sse([START, text("Hi"), *END]))
    request = chat(stream=True, stream_options={"include_usage": True})
    response = await backend.call(request, CallContext.new())
    chunks = await rest(response)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19}
    assert "stream_options" not in server.seen[0].body


async def test_message_start_and_pings_then_silence_is_cut_at_the_ttft_limit(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    server.script(server.sse([START, BLOCK, PING, 0.05, PING], then="hang"))
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="time to first token"):
        await backend.call(chat(stream=True), CallContext.new())
    assert TTFT_S <= time.monotonic() - start < CUT_MAX_S
    await wait_until_closed(server)


async def test_an_overloaded_error_before_the_first_text_raises_from_call(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    overloaded = event("error", error={"type": "overloaded_error", "message": "Overloaded"})
    server.script(server.sse([START, PING, overloaded], then="hang"))
    with pytest.raises(BackendUnavailableError, match=r"Overloaded \(overloaded_error\)"):
        await backend.call(chat(stream=True), CallContext.new())
    await wait_until_closed(server)


async def test_an_error_mid_stream_raises_while_iterating(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    overloaded = event("error", error={"type": "api_error", "message": "Internal"})
    server.script(server.sse([START, text("a"), 0.05, overloaded], then="hang"))
    response = await backend.call(chat(stream=True), CallContext.new())
    with pytest.raises(BadResponseError, match=r"mid-stream: Internal \(api_error\)"):
        await rest(response)
    await wait_until_closed(server)


async def test_a_stall_mid_stream_is_cut_at_the_idle_limit(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    server.script(server.sse([START, text("a"), PING], then="hang"))
    response = await backend.call(chat(stream=True), CallContext.new())
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="idle mid-stream"):
        await rest(response)
    assert IDLE_S <= time.monotonic() - start < CUT_MAX_S
    await wait_until_closed(server)


async def test_a_dropped_connection_mid_stream_raises_while_iterating(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    server.script(server.sse([START, text("a"), text("b"), 0.05], then="drop"))
    response = await backend.call(chat(stream=True), CallContext.new())
    with pytest.raises(BadResponseError, match="while reading the stream"):
        await rest(response)


async def test_a_stream_ending_without_a_stop_reason_is_truncated(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    server.script(server.sse([START, text("a"), text("b")]))
    response = await backend.call(chat(stream=True), CallContext.new())
    with pytest.raises(BadResponseError, match="ended before the answer was complete"):
        await rest(response)


async def test_closing_a_stream_early_closes_the_upstream_connection(
    server: ScriptedServer, backend: AnthropicBackend
) -> None:
    server.script(server.sse([START, text("a"), text("b")], then="hang"))
    response = await backend.call(chat(stream=True), CallContext.new())
    assert response.stream is not None
    await response.stream.aclose()
    await asyncio.wait_for(server.disconnected.wait(), DISCONNECT_MAX_S)
    await wait_until_closed(server)


async def test_lifecycle_and_protocol(upstream: HttpUpstream) -> None:
    backend = AnthropicBackend(upstream, "c", api_key="k", name="claude-a")
    assert isinstance(backend, LlmBackend)
    assert repr(backend) == "AnthropicBackend('claude-a')"
    assert not backend.ready()
    await backend.load()
    assert backend.ready()
    await backend.close()
    assert not backend.ready()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upstream_model": ""}, "upstream_model: must not be empty"),
        ({"max_tokens_default": 0}, "max_tokens_default: must be at least 1"),
        ({"first_token_timeout_s": 0.0}, "first_token_timeout_s: must be more than 0"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnthropicBackend(
            HttpUpstream("http://x"), **{"upstream_model": "m", "api_key": "k", **kwargs}
        )
