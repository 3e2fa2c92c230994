"""Tests of `OpenAiBackend` against a real scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from seawall.backends.http import HttpOptions, HttpUpstream
from seawall.backends.llm import LlmBackend
from seawall.backends.openai.provider import OpenAiBackend, OpenAiChunkDecoder
from seawall.backends.openai.sse import SseEvent
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    InvalidInputError,
)
from seawall.types import ChunkStream, LlmKind, LlmRequest, LlmResponse, Usage

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.backends.openai.conftest import ScriptedServer

#: The time limits under test; a cut must come after them and well before CUT_MAX_S.
TTFT_S = 0.2
IDLE_S = 0.2
CUT_MAX_S = 2.0
#: How soon the upstream must see the connection closed.
DISCONNECT_MAX_S = 1.0

MESSAGES = [{"role": "user", "content": "Say hi"}]
#: `estimate_tokens(MESSAGES)`: 4 per message and ceil(6 / 4) for "Say hi".
PROMPT_ESTIMATE = 6
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "llama-3",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


def chat(*, stream: bool = False, **extra: Any) -> LlmRequest:
    body: dict[str, Any] = {"model": "group", "messages": MESSAGES, **extra}
    if stream:
        body["stream"] = True
    return LlmRequest(LlmKind.CHAT, "group", body)


def chunk(text: str | None = "", finish: str | None = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


DONE = b"data: [DONE]\n\n"


@pytest.fixture
async def backend(upstream: HttpUpstream) -> AsyncIterator[OpenAiBackend]:
    openai = OpenAiBackend(
        upstream, "llama-3", api_key="sk-test", first_token_timeout_s=TTFT_S, idle_timeout_s=IDLE_S
    )
    await openai.load()
    yield openai
    await openai.close()


def stream_of(response: LlmResponse) -> ChunkStream:
    assert response.first is not None
    assert response.stream is not None
    return response.stream


async def rest(response: LlmResponse) -> list[dict[str, Any]]:
    return [c async for c in stream_of(response)]


async def collect(stream: ChunkStream, into: list[dict[str, Any]]) -> None:
    async for item in stream:
        into.append(item)


async def wait_until_closed(server: ScriptedServer) -> None:
    """Every connection to `server` closed and every handler gone, within DISCONNECT_MAX_S."""
    async with asyncio.timeout(DISCONNECT_MAX_S):
        # Polling: aiohttp offers no event for "a connection closed".
        while server.open_connections or server.active:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# Complete answers.


async def test_chat_sends_the_clients_body_to_the_upstream_model(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    server.script(server.json(COMPLETION))
    backend = OpenAiBackend(upstream, "llama-3", api_key="sk-test", extra_headers={"x-team": "a"})
    await backend.load()
    response = await backend.call(chat(temperature=0.3, vendor={"x": 1}), CallContext.new("r-1"))
    assert response.body == COMPLETION
    assert response.usage == Usage(12, 3)
    assert response.model == "group"
    assert response.served_by == backend.name == f"openai:{upstream.base_url}/llama-3"
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.body == {
        "model": "llama-3",
        "messages": MESSAGES,
        "temperature": 0.3,
        "vendor": {"x": 1},
    }
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["x-team"] == "a"
    assert seen.headers["x-request-id"] == "r-1"
    assert seen.headers["content-type"] == "application/json"


async def test_no_api_key_sends_no_authorization(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    server.script(server.json(COMPLETION))
    await OpenAiBackend(upstream, "llama-3").call(chat(), CallContext.new())
    assert "authorization" not in server.seen[0].headers


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        (LlmKind.CHAT, "/v1/chat/completions"),
        (LlmKind.COMPLETION, "/v1/completions"),
        (LlmKind.EMBEDDING, "/v1/embeddings"),
    ],
)
@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_each_kind_has_its_path_whether_or_not_the_base_url_ends_in_v1(
    server: ScriptedServer, kind: LlmKind, path: str, suffix: str
) -> None:
    server.script(server.json({"choices": [], "data": [], "usage": {"prompt_tokens": 5}}))
    upstream = HttpUpstream(server.base_url + suffix)
    backend = OpenAiBackend(upstream, "m")
    await backend.load()
    try:
        response = await backend.call(LlmRequest(kind, "g", {"input": "x"}), CallContext.new())
    finally:
        await backend.close()
    assert server.seen[0].path == path
    assert response.usage == Usage(5, 0)


@pytest.mark.parametrize(
    ("kind", "choice", "completion_tokens"),
    [
        (LlmKind.CHAT, {"message": {"role": "assistant", "content": "x" * 41}}, 11),
        (LlmKind.CHAT, {"message": {"role": "assistant", "content": None}}, 0),
        (LlmKind.COMPLETION, {"text": "y" * 8}, 2),
    ],
)
async def test_usage_is_estimated_when_the_answer_has_none(
    server: ScriptedServer,
    backend: OpenAiBackend,
    kind: LlmKind,
    choice: dict[str, Any],
    completion_tokens: int,
) -> None:
    server.script(server.json({"choices": [choice, choice]}))
    request = LlmRequest(kind, "g", {"messages": MESSAGES, "prompt": "Say hi"})
    response = await backend.call(request, CallContext.new())
    prompt = request.estimated_prompt_tokens()
    assert response.usage == Usage(prompt, 2 * completion_tokens, estimated=True)


@pytest.mark.parametrize(
    ("status", "headers", "error_type", "retry_after_s"),
    [
        (500, {}, BackendError, None),
        (503, {}, BackendUnavailableError, None),
        (429, {"Retry-After": "7"}, BackendUnavailableError, 7.0),
        (400, {}, InvalidInputError, None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_are_translated_with_their_message(
    server: ScriptedServer,
    backend: OpenAiBackend,
    status: int,
    headers: dict[str, str],
    error_type: type[Exception],
    retry_after_s: float | None,
    stream: bool,
) -> None:
    body = {"error": {"message": f"it went wrong ({status})", "type": "x", "code": None}}
    server.script(server.json(body, status=status, headers=headers))
    with pytest.raises(error_type, match=rf"it went wrong \({status}\)") as caught:
        await backend.call(chat(stream=stream), CallContext.new())
    assert type(caught.value) is error_type
    assert getattr(caught.value, "retry_after_s", None) == retry_after_s


async def test_an_authentication_error_is_not_retryable(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.json({"error": {"message": "Incorrect API key"}}, status=401))
    with pytest.raises(BackendError, match="Incorrect API key") as caught:
        await backend.call(chat(), CallContext.new())
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"<html>oops</html>", "invalid JSON"),
        (b"[1, 2]", "answered list, not an object"),
        (b'{"object": "chat.completion"}', "has no 'choices' list"),
        (b'{"choices": [1]}', "has no 'choices' list"),
    ],
)
async def test_a_malformed_answer_is_a_bad_response(
    server: ScriptedServer, backend: OpenAiBackend, answer: bytes, message: str
) -> None:
    server.script(server.text(answer))
    with pytest.raises(BadResponseError, match=message):
        await backend.call(chat(), CallContext.new())


async def test_a_silent_upstream_is_cut_at_the_first_byte_timeout(server: ScriptedServer) -> None:
    server.script(server.stall())
    upstream = HttpUpstream(server.base_url, HttpOptions(first_byte_timeout_s=TTFT_S))
    backend = OpenAiBackend(upstream, "m")
    await backend.load()
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="first byte"):
        await backend.call(chat(), CallContext.new())
    assert TTFT_S <= time.monotonic() - start < CUT_MAX_S
    await backend.close()
    await wait_until_closed(server)


# Streams: the first chunk.


async def test_a_stream_answers_at_its_first_chunk_and_the_rest_follows(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    go = asyncio.Event()
    parts = [chunk("Hel"), chunk("lo"), chunk(None, "stop"), usage_chunk(9, 2)]
    server.script(server.sse([server.data(parts[0]), go, *map(server.data, parts[1:]), DONE]))
    response = await backend.call(chat(stream=True), CallContext.new())
    # The upstream is still waiting for `go`: call() did not wait for more than the first chunk.
    assert response.first == parts[0]
    assert response.body is None
    assert response.served_by == backend.name
    go.set()
    assert await rest(response) == parts[1:3]  # the usage chunk was seawall's idea: not passed on
    assert stream_of(response).usage == Usage(9, 2)
    assert response.usage == Usage(9, 2)
    (seen,) = server.seen
    assert seen.body["stream"] is True
    assert seen.body["stream_options"] == {"include_usage": True}
    assert seen.headers["accept"] == "text/event-stream"
    assert server.active == 0


async def test_the_usage_chunk_is_passed_on_when_the_client_asked_for_it(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    parts = [chunk("Hi"), chunk(None, "stop"), usage_chunk(9, 1)]
    server.script(server.sse([*map(server.data, parts), DONE]))
    request = chat(stream=True, stream_options={"include_usage": True, "other": 1})
    response = await backend.call(request, CallContext.new())
    assert await rest(response) == parts[1:]
    assert server.seen[0].body["stream_options"] == {"include_usage": True, "other": 1}
    assert stream_of(response).usage == Usage(9, 1)


async def test_without_stream_usage_the_usage_is_estimated_first_chunk_included(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    parts = [chunk("abcd"), chunk("efgh"), chunk("i", "stop")]
    server.script(server.sse([*map(server.data, parts), DONE]))
    backend = OpenAiBackend(upstream, "m", stream_usage=False)
    response = await backend.call(chat(stream=True), CallContext.new())
    done: list[Usage] = []
    stream_of(response).on_done.append(done.append)
    assert await rest(response) == parts[1:]
    assert "stream_options" not in server.seen[0].body
    assert done == [Usage(PROMPT_ESTIMATE, 3, estimated=True)]  # ceil(9 characters / 4)


async def test_a_completion_stream_counts_choice_text(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    parts = [{"choices": [{"text": "abcdefgh", "finish_reason": None}]}]
    parts.append({"choices": [{"text": "ij", "finish_reason": "length"}]})
    server.script(server.sse([*map(server.data, parts), DONE]))
    request = LlmRequest(LlmKind.COMPLETION, "g", {"prompt": "Say hi", "stream": True})
    response = await backend.call(request, CallContext.new())
    assert response.first == parts[0]
    assert await rest(response) == parts[1:]
    assert stream_of(response).usage == Usage(2, 3, estimated=True)
    assert server.seen[0].path == "/v1/completions"


async def test_embeddings_cannot_be_streamed(backend: OpenAiBackend) -> None:
    request = LlmRequest(LlmKind.EMBEDDING, "g", {"input": "x", "stream": True})
    with pytest.raises(InvalidInputError, match="stream: embeddings cannot be streamed"):
        await backend.call(request, CallContext.new())


async def test_headers_then_keep_alives_then_nothing_is_cut_at_the_ttft_limit(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    keep_alive = b": keep-alive\n\n"
    server.script(server.sse([keep_alive, 0.05, keep_alive], then="hang"))
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match=r"no chunk within 200 ms \(time to first token"):
        await backend.call(chat(stream=True), CallContext.new())
    assert TTFT_S <= time.monotonic() - start < CUT_MAX_S
    await wait_until_closed(server)
    assert len(server.disconnects) == 1


async def test_no_headers_at_all_is_cut_at_the_ttft_limit(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.stall())
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="time to first token"):
        await backend.call(chat(stream=True), CallContext.new())
    assert TTFT_S <= time.monotonic() - start < CUT_MAX_S
    await wait_until_closed(server)


async def test_cancelling_the_call_before_the_first_chunk_closes_the_connection(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([b": keep-alive\n\n"], then="hang"))
    tasks_before = len(asyncio.all_tasks())
    call = asyncio.create_task(backend.call(chat(stream=True), CallContext.new()))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(server.disconnected.wait(), DISCONNECT_MAX_S)
    await wait_until_closed(server)
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_deadline_sooner_than_the_ttft_limit_cuts_first(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    server.script(server.sse([], then="hang"))
    backend = OpenAiBackend(upstream, "m", first_token_timeout_s=30.0)
    ctx = CallContext.new(deadline=time.monotonic() + TTFT_S)
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="the request's deadline"):
        await backend.call(chat(stream=True), ctx)
    assert TTFT_S * 0.9 <= time.monotonic() - start < CUT_MAX_S


async def test_a_passed_deadline_fails_before_calling(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    ctx = CallContext.new(deadline=time.monotonic() - 1)
    with pytest.raises(BackendTimeoutError, match="deadline had passed"):
        await backend.call(chat(stream=True), ctx)
    assert server.seen == []


async def test_an_error_event_before_the_first_chunk_raises_unavailable(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    error = b'event: error\ndata: {"error": {"message": "model overloaded", "type": "server"}}\n\n'
    server.script(server.sse([error], then="hang"))
    with pytest.raises(BackendUnavailableError, match=r"instead of an answer: model overloaded"):
        await backend.call(chat(stream=True), CallContext.new())
    await wait_until_closed(server)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (b"data: {oops\n\n", "malformed JSON"),
        (b"data: [1]\n\n", "a stream chunk is list, not an object"),
        (b'data: {"choices": {"0": 1}}\n\n', "choices are malformed"),
        (b'data: {"choices": [{"delta": "x"}]}\n\n', "choices are malformed"),
    ],
)
async def test_a_malformed_first_event_raises_from_call(
    server: ScriptedServer, backend: OpenAiBackend, event: bytes, message: str
) -> None:
    server.script(server.sse([event], then="hang"))
    with pytest.raises(BadResponseError, match=message):
        await backend.call(chat(stream=True), CallContext.new())
    await wait_until_closed(server)


@pytest.mark.parametrize("then", ["end", "drop"])
async def test_a_stream_that_ends_before_its_first_chunk_raises_from_call(
    server: ScriptedServer, backend: OpenAiBackend, then: Any
) -> None:
    server.script(server.sse([b": hello\n\n", 0.05], then=then))
    with pytest.raises(BackendError, match=r"ended before|broken|lost"):
        await backend.call(chat(stream=True), CallContext.new())


# Streams: after the first chunk.


async def test_a_stall_mid_stream_is_cut_at_the_idle_limit(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([server.data(chunk("a")), server.data(chunk("b"))], then="hang"))
    response = await backend.call(chat(stream=True), CallContext.new())
    stream = stream_of(response)
    assert await anext(aiter(stream)) == chunk("b")
    start = time.monotonic()
    with pytest.raises(BackendTimeoutError, match=r"no chunk within 200 ms \(idle mid-stream\)"):
        await anext(aiter(stream))
    assert IDLE_S <= time.monotonic() - start < CUT_MAX_S
    await wait_until_closed(server)


async def test_a_dropped_connection_mid_stream_raises_while_iterating(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([server.data(chunk("a")), server.data(chunk("b")), 0.05], then="drop"))
    response = await backend.call(chat(stream=True), CallContext.new())
    received: list[dict[str, Any]] = []
    with pytest.raises(BadResponseError, match="while reading the stream"):
        await collect(stream_of(response), received)
    assert received == [chunk("b")]


@pytest.mark.parametrize(
    ("event", "error_type", "message"),
    [
        (b"data: {oops\n\n", BadResponseError, "malformed JSON"),
        (b'data: {"error": {"message": "CUDA OOM"}}\n\n', BadResponseError, "mid-stream: CUDA OOM"),
        (b'event: error\ndata: {"message": "gone"}\n\n', BadResponseError, "mid-stream: gone"),
    ],
)
async def test_a_bad_event_mid_stream_raises_while_iterating(
    server: ScriptedServer,
    backend: OpenAiBackend,
    event: bytes,
    error_type: type[Exception],
    message: str,
) -> None:
    server.script(server.sse([server.data(chunk("a")), 0.05, event], then="hang"))
    response = await backend.call(chat(stream=True), CallContext.new())
    with pytest.raises(error_type, match=message):
        await rest(response)
    await wait_until_closed(server)


async def test_a_body_ending_without_done_or_finish_reason_is_truncated(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([server.data(chunk("a")), server.data(chunk("b"))]))
    response = await backend.call(chat(stream=True), CallContext.new())
    with pytest.raises(BadResponseError, match="ended before the answer was complete"):
        await rest(response)


async def test_a_body_ending_after_a_finish_reason_without_done_is_complete(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([server.data(chunk("a")), server.data(chunk("", "stop"))]))
    response = await backend.call(chat(stream=True), CallContext.new())
    assert await rest(response) == [chunk("", "stop")]


async def test_complete_streams_reuse_one_connection(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    parts = [chunk("a"), chunk("b", "stop")]
    # The end of the body comes a moment after [DONE], as it may over a real network.
    server.script(server.sse([*map(server.data, parts), DONE, 0.05]))
    for _ in range(3):
        assert await rest(await backend.call(chat(stream=True), CallContext.new())) == parts[1:]
    assert len({seen.port for seen in server.seen}) == 1


# Closing.


async def test_closing_a_stream_early_closes_the_upstream_connection_at_once(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([server.data(chunk("a")), server.data(chunk("b"))], then="hang"))
    response = await backend.call(chat(stream=True), CallContext.new())
    stream = stream_of(response)
    done: list[Usage] = []
    stream.on_done.append(done.append)
    assert await anext(aiter(stream)) == chunk("b")
    closed_at = time.monotonic()
    await stream.aclose()
    await asyncio.wait_for(server.disconnected.wait(), DISCONNECT_MAX_S)
    assert server.disconnects[0] - closed_at < DISCONNECT_MAX_S
    assert done == [Usage(PROMPT_ESTIMATE, 1, estimated=True)]
    await wait_until_closed(server)


async def test_closing_from_another_task_ends_a_waiting_consumer(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([server.data(chunk("a")), server.data(chunk("b"))], then="hang"))
    response = await backend.call(chat(stream=True), CallContext.new())
    consumer = asyncio.create_task(rest(response))
    await asyncio.sleep(0.05)  # the consumer has "b" and waits for more
    await stream_of(response).aclose()
    assert await asyncio.wait_for(consumer, DISCONNECT_MAX_S) == [chunk("b")]
    await asyncio.wait_for(server.disconnected.wait(), DISCONNECT_MAX_S)


async def test_cancelling_the_consumer_closes_the_upstream_connection(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([server.data(chunk("a"))], then="hang"))
    response = await backend.call(chat(stream=True), CallContext.new())
    consumer = asyncio.create_task(rest(response))
    await asyncio.sleep(0.05)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    await asyncio.wait_for(server.disconnected.wait(), DISCONNECT_MAX_S)
    await wait_until_closed(server)


async def test_200_abandoned_streams_leave_no_connection_or_task_behind(
    server: ScriptedServer, upstream: HttpUpstream
) -> None:
    # About leaks, not timeouts: 50 streams start at once, so allow a loaded machine time.
    backend = OpenAiBackend(upstream, "llama-3", first_token_timeout_s=10.0, idle_timeout_s=10.0)
    await backend.load()
    server.script(server.sse([server.data(chunk("a")), server.data(chunk("b"))], then="hang"))
    tasks_before = len(asyncio.all_tasks())

    async def abandon(i: int) -> None:
        response = await backend.call(chat(stream=True), CallContext.new())
        if i % 2:  # half of them after reading some of the rest
            assert await anext(aiter(stream_of(response))) == chunk("b")
        await stream_of(response).aclose()

    for batch in range(4):
        await asyncio.gather(*(abandon(batch * 50 + i) for i in range(50)))
    await wait_until_closed(server)
    assert len(server.disconnects) == 200
    assert len(asyncio.all_tasks()) == tasks_before


async def test_streams_dropped_without_closing_are_closed_when_collected(
    server: ScriptedServer, backend: OpenAiBackend
) -> None:
    server.script(server.sse([server.data(chunk("a"))], then="hang"))
    for _ in range(10):
        await backend.call(chat(stream=True), CallContext.new())
    gc.collect()
    await wait_until_closed(server)
    assert len(server.disconnects) == 10


# Lifecycle.


async def test_lifecycle_and_protocol(upstream: HttpUpstream) -> None:
    backend = OpenAiBackend(upstream, "m", name="vllm-a")
    assert isinstance(backend, LlmBackend)
    assert repr(backend) == "OpenAiBackend('vllm-a')"
    assert not backend.ready()
    await backend.load()
    assert backend.ready()
    await backend.close()
    assert not backend.ready()
    with pytest.raises(BackendUnavailableError, match="not started"):
        await backend.call(chat(), CallContext.new())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upstream_model": ""}, "upstream_model: must not be empty"),
        ({"first_token_timeout_s": 0}, "first_token_timeout_s: must be more than 0"),
        ({"idle_timeout_s": -1.0}, "idle_timeout_s: must be more than 0"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenAiBackend(HttpUpstream("http://x"), **{"upstream_model": "m", **kwargs})


def test_the_decoder_ignores_event_types_it_does_not_know_but_reads_their_data() -> None:
    decoder = OpenAiChunkDecoder("up", forward_usage=False)
    emitted: list[dict[str, Any]] = []
    observed: list[dict[str, Any]] = []
    decoder.decode(SseEvent('{"choices": []}', "custom"), emitted.append, observed.append)
    decoder.decode(SseEvent('{"choices": [], "usage": {}}'), emitted.append, observed.append)
    assert emitted == [{"choices": []}]
    assert observed == [{"choices": [], "usage": {}}]
    assert not decoder.complete
    decoder.decode(SseEvent("[DONE]"), emitted.append, observed.append)
    assert decoder.finished
