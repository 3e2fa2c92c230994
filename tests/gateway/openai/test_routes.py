"""The OpenAI-compatible routes over ASGI: plain HTTP, the official `openai` SDK, disconnects."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import openai
import orjson
import pytest
import uvicorn
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from seawall.assemble import Assembly
from seawall.backends import ModelRepository
from seawall.config import ServerSettings
from seawall.context import CallContext, Priority
from seawall.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    ForbiddenError,
    InvalidInputError,
    OverloadedError,
    RateLimitedError,
    UnauthorizedError,
)
from seawall.gateway import Gateway
from seawall.gateway.asgi import Message
from seawall.pipeline import Pipeline
from seawall.policies.cache import CachePolicy
from seawall.policies.cache_codec import LlmCodec
from seawall.types import ChunkStream, LlmKind, LlmRequest, LlmResponse, Usage

Group = Callable[[LlmRequest, CallContext], Awaitable[LlmResponse]]
CREATED = 1_700_000_000


def chat_body(text: str, *, model: str = "up-model", usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    return body


def chat_chunk(text: str | None, *, finish: str | None = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "up-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def completion_body(text: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": CREATED,
        "model": "up-model",
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7},
    }


def embedding_body(count: int) -> dict[str, Any]:
    return {
        "object": "list",
        "model": "up-embed",
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.5, -0.25, float(i)]}
            for i in range(count)
        ],
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }


def chat_request(**extra: Any) -> dict[str, Any]:
    """A valid chat body for the model group `chat`."""
    return {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **extra}


@dataclass
class Tracker:
    """What became of the fake streams: started, closed (generator clean-up ran) and closed
    through `ChunkStream`'s close callback (the upstream connection)."""

    started: int = 0
    generators_closed: int = 0
    connections_closed: int = 0
    usages: list[Usage] = field(default_factory=list)
    #: Set when a connection is closed.
    closing: asyncio.Event = field(default_factory=asyncio.Event)


def streamed(
    chunks: list[dict[str, Any]],
    tracker: Tracker,
    *,
    then: BaseException | None = None,
    hang: bool = False,
    endless: bool = False,
    served_by: str = "",
) -> Group:
    """A group answering with `chunks[0]` first, then the rest; `then` is raised after them,
    `hang` stalls forever after them, `endless` repeats the last chunk without end."""

    async def rest() -> AsyncIterator[dict[str, Any]]:
        try:
            for chunk in chunks[1:]:
                yield chunk
            while endless:
                await asyncio.sleep(0)
                yield chunks[-1]
            if hang:
                await asyncio.Event().wait()
            if then is not None:
                raise then
        finally:
            tracker.generators_closed += 1

    def close() -> None:
        tracker.connections_closed += 1
        tracker.closing.set()

    async def group(request: LlmRequest, ctx: CallContext) -> LlmResponse:
        tracker.started += 1
        stream = ChunkStream(rest(), prompt_tokens=request.estimated_prompt_tokens(), close=close)
        stream.count(chunks[0])
        stream.on_done.append(tracker.usages.append)
        return LlmResponse(request.model, first=chunks[0], stream=stream, served_by=served_by)

    return group


def complete(
    body: dict[str, Any],
    *,
    served_by: str = "",
    headers: dict[str, str] | None = None,
    seen: list[tuple[LlmRequest, CallContext]] | None = None,
    delay_s: float = 0.0,
) -> Group:
    """A group answering `body` (after a real `delay_s`), setting `headers` as policies do."""

    async def group(request: LlmRequest, ctx: CallContext) -> LlmResponse:
        if seen is not None:
            seen.append((request, ctx))
        if delay_s:
            await asyncio.sleep(delay_s)
        ctx.response_headers.update(headers or {})
        return LlmResponse(request.model, body=body, served_by=served_by)

    return group


def failing(error: BaseException, *, headers: dict[str, str] | None = None) -> Group:
    async def group(request: LlmRequest, ctx: CallContext) -> LlmResponse:
        ctx.response_headers.update(headers or {})
        raise error

    return group


def echo() -> Group:
    """Answers every kind with a fitting body (streamed when asked), for property tests."""

    async def group(request: LlmRequest, ctx: CallContext) -> LlmResponse:
        if request.kind is LlmKind.EMBEDDING:
            return LlmResponse(request.model, body=embedding_body(1))
        if request.stream:
            stream = ChunkStream(_nothing(), prompt_tokens=1)
            return LlmResponse(request.model, first=chat_chunk("ok"), stream=stream)
        return LlmResponse(request.model, body=chat_body("ok"))

    return group


async def _nothing() -> AsyncIterator[dict[str, Any]]:
    for chunk in ():
        yield chunk


def make_gateway(groups: dict[str, Group], **settings: Any) -> Gateway:
    return Gateway(Assembly(ModelRepository(), llm=groups), ServerSettings(**settings))


async def http_client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


@pytest.fixture
def groups() -> dict[str, Group]:
    """The gateway's model groups; tests put their fakes in (the gateway reads it live)."""
    return {"chat": complete(chat_body("Hello!"))}


@pytest.fixture
def gateway(groups: dict[str, Group]) -> Gateway:
    return make_gateway(groups)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async for http in http_client(gateway):
        yield http


@dataclass
class Exchange:
    """What an app sent for one request driven by `drive`."""

    messages: list[Message] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def events(self) -> list[bytes]:
        """The `data:` payloads of the SSE events sent."""
        return [e.removeprefix(b"data: ") for e in self.body.split(b"\n\n") if e]


async def drive(
    gateway: Gateway,
    body: dict[str, Any],
    *,
    path: str = "/v1/chat/completions",
    leave_after_events: int | None = None,
) -> Exchange:
    """POST `body` straight through ASGI; the client disconnects once it has received
    `leave_after_events` SSE events (never, if None)."""
    exchange = Exchange()
    left = asyncio.Event()
    inbox: list[Message] = [{"type": "http.request", "body": orjson.dumps(body)}]

    async def receive() -> Message:
        if inbox:
            return inbox.pop(0)
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        exchange.messages.append(message)
        if leave_after_events is not None and len(exchange.events()) >= leave_after_events:
            left.set()
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            left.set()  # as servers do: the response is complete, the exchange is over

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json")],
    }
    await gateway(scope, receive, send)
    return exchange


@pytest.fixture
async def sdk(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK pointed at the in-process gateway (no retries: errors surface at once)."""
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gateway))
    client = openai.AsyncOpenAI(
        base_url="http://gateway/v1", api_key="k", http_client=http, max_retries=0
    )
    try:
        yield client
    finally:
        await client.close()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _metrics(
    client: httpx.AsyncClient,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return _samples((await client.get("/metrics")).text)


def _requests(model: str, status: int) -> tuple[str, frozenset[tuple[str, str]]]:
    labels = {"model": model, "version": "", "status": str(status)}
    return "seawall_requests_total", frozenset(labels.items())


def _tokens(model: str, kind: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return "seawall_llm_tokens_total", frozenset({"model": model, "kind": kind}.items())


def _sse(body: bytes) -> list[Any]:
    raw = [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e]
    return [e.decode() if e == b"[DONE]" else orjson.loads(e) for e in raw]


def _assert_openai_error(response: httpx.Response, status: int, **expected: Any) -> dict[str, Any]:
    """The response is `status` with an OpenAI error object; `expected` keys match exactly."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert set(document) == {"error"}
    error: dict[str, Any] = document["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    for key, value in expected.items():
        assert error[key] == value, key
    return error


# --- complete answers --------------------------------------------------------------------------


async def test_a_chat_answer_is_passed_through_with_seawalls_headers(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    body = chat_body("Hello!")
    body["vendor_extra"] = {"cached": True}
    policy_headers = {"x-seawall-attempts": "2", "x-ratelimit-remaining-requests": "9"}
    groups["chat"] = complete(body, served_by="chat/primary", headers=policy_headers)
    response = await client.post(
        "/v1/chat/completions", json=chat_request(), headers={"x-request-id": "req-42"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == body
    assert response.headers["x-request-id"] == "req-42"
    assert response.headers["x-seawall-served-by"] == "chat/primary"
    assert response.headers["x-seawall-attempts"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "9"
    assert 0 <= float(response.headers["x-seawall-overhead-ms"]) < 1000


async def test_the_group_gets_the_body_and_the_call_headers(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    seen: list[tuple[LlmRequest, CallContext]] = []
    groups["chat"] = complete(chat_body("x"), seen=seen)
    sent = chat_request(temperature=0.2, vendor={"a": 1})
    before = time.monotonic()
    response = await client.post(
        "/v1/chat/completions",
        json=sent,
        headers={
            "authorization": "Bearer sk-test",
            "x-seawall-timeout-ms": "1500",
            "x-seawall-priority": "batch",
        },
    )
    assert response.status_code == 200
    [(request, ctx)] = seen
    assert (request.kind, request.model, request.body) == (LlmKind.CHAT, "chat", sent)
    assert ctx.credentials == "sk-test"
    assert ctx.priority is Priority.BATCH
    assert ctx.deadline is not None
    assert before + 1.4 < ctx.deadline < time.monotonic() + 1.6
    assert ctx.request_id == response.headers["x-request-id"]


async def test_the_policies_served_by_header_stays_when_the_answer_names_no_deployment(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    groups["chat"] = complete(chat_body("x"), headers={"x-seawall-served-by": "backup-group"})
    response = await client.post("/v1/chat/completions", json=chat_request())
    assert response.headers["x-seawall-served-by"] == "backup-group"


async def test_a_deployment_name_outside_latin_1_does_not_break_the_answer(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    groups["chat"] = complete(chat_body("x"), served_by="chat/déploiement-€")
    response = await client.post("/v1/chat/completions", json=chat_request())
    assert response.status_code == 200
    assert response.headers["x-seawall-served-by"] == "chat/déploiement-?"


async def test_the_overhead_leaves_out_the_time_spent_in_the_pipeline(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    groups["chat"] = complete(chat_body("x"), delay_s=0.5)
    started = time.perf_counter()
    response = await client.post("/v1/chat/completions", json=chat_request())
    assert time.perf_counter() - started >= 0.5
    assert 0 <= float(response.headers["x-seawall-overhead-ms"]) < 250


@pytest.mark.parametrize(
    ("path", "body", "kind", "answer"),
    [
        ("/v1/completions", {"prompt": "Once"}, LlmKind.COMPLETION, completion_body(" upon")),
        ("/v1/embeddings", {"input": ["a", "b"]}, LlmKind.EMBEDDING, embedding_body(2)),
    ],
)
async def test_completions_and_embeddings_reach_the_group_as_their_kind(
    client: httpx.AsyncClient,
    groups: dict[str, Group],
    path: str,
    body: dict[str, Any],
    kind: LlmKind,
    answer: dict[str, Any],
) -> None:
    seen: list[tuple[LlmRequest, CallContext]] = []
    groups["m"] = complete(answer, seen=seen)
    response = await client.post(path, json={"model": "m", **body})
    assert response.status_code == 200
    assert response.json() == answer
    assert seen[0][0].kind is kind
    assert seen[0][0].body == {"model": "m", **body}


async def test_a_stream_answering_a_complete_request_is_a_502_and_is_closed(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    tracker = Tracker()
    groups["chat"] = streamed([chat_chunk("a"), chat_chunk("b")], tracker)
    response = await client.post("/v1/chat/completions", json=chat_request())
    _assert_openai_error(response, 502, type="server_error", code="bad_response")
    assert (
        "model 'chat': answered a request for a complete answer with a stream"
        in (response.json()["error"]["message"])
    )
    assert tracker.connections_closed == 1


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "kind", "code", "retry_after"),
    [
        (UnauthorizedError("no API key"), 401, "authentication_error", "invalid_api_key", None),
        (ForbiddenError("key 'a' may not call 'chat'"), 403, "permission_error", None, None),
        (RateLimitedError("key 'a': 10 per minute", retry_after_s=6), 429, "rate_limit_error",
         "rate_limit_exceeded", "6"),
        (OverloadedError("shed", retry_after_s=1), 503, "server_error", "overloaded", "1"),
        (CircuitOpenError("open", retry_after_s=9), 503, "server_error", "circuit_open", "9"),
        (BackendUnavailableError("every deployment failed"), 503, "server_error", "unavailable",
         "1"),
        (BackendTimeoutError("no first chunk in 5 s"), 504, "server_error", "timeout", None),
    ],
)  # fmt: skip
async def test_a_pipeline_error_is_answered_in_openai_form(
    client: httpx.AsyncClient,
    groups: dict[str, Group],
    error: Exception,
    status: int,
    kind: str,
    code: str | None,
    retry_after: str | None,
) -> None:
    groups["chat"] = failing(error, headers={"x-ratelimit-limit-requests": "10"})
    for stream in (False, True):  # a failure before the first chunk is an ordinary answer
        response = await client.post("/v1/chat/completions", json=chat_request(stream=stream))
        _assert_openai_error(response, status, type=kind, code=code, message=str(error))
        assert response.headers.get("retry-after") == retry_after
        assert response.headers["x-ratelimit-limit-requests"] == "10"
        assert len(response.headers["x-request-id"]) == 32
        assert float(response.headers["x-seawall-overhead-ms"]) >= 0


async def test_an_unknown_model_is_404_model_not_found_and_not_a_metrics_label(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_request(model="secret-x"))
    error = _assert_openai_error(response, 404, code="model_not_found", param="model")
    assert error["message"] == "model 'secret-x' does not exist (see GET /v1/models)"
    text = (await client.get("/metrics")).text
    assert "secret-x" not in text
    assert _samples(text)[_requests("_unknown", 404)] == 1


async def test_an_invalid_field_is_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat_request(temperature=7))
    error = _assert_openai_error(response, 400, type="invalid_request_error", param="temperature")
    assert error["message"] == "temperature: must be between 0 and 2, got 7"
    assert (await _metrics(client))[_requests("chat", 400)] == 1


async def test_invalid_json_is_400_without_a_param(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", content=b"{not json")
    error = _assert_openai_error(response, 400, param=None, type="invalid_request_error")
    assert error["message"].startswith("body: invalid JSON")


async def test_a_bad_call_header_is_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_request(), headers={"x-seawall-timeout-ms": "soon"}
    )
    _assert_openai_error(response, 400, param="x-seawall-timeout-ms")


async def test_a_body_over_the_limit_is_413() -> None:
    gateway = make_gateway({"chat": complete(chat_body("x"))}, max_body_bytes=1024)
    async for client in http_client(gateway):
        big = chat_request(messages=[{"role": "user", "content": "x" * 2000}])
        response = await client.post("/v1/chat/completions", json=big)
        _assert_openai_error(response, 413, code="request_too_large", param=None)
        small = await client.post("/v1/chat/completions", json=chat_request())
        assert small.status_code == 200


async def test_a_bug_in_the_pipeline_is_a_500_naming_the_request_id(
    client: httpx.AsyncClient, groups: dict[str, Group], caplog: pytest.LogCaptureFixture
) -> None:
    groups["chat"] = failing(ZeroDivisionError("oops"))
    with caplog.at_level(logging.ERROR, logger="seawall.gateway"):
        response = await client.post(
            "/v1/chat/completions", json=chat_request(), headers={"x-request-id": "r-9"}
        )
    error = _assert_openai_error(response, 500, type="server_error")
    assert error["message"] == "internal error (request id r-9)"
    assert "unexpected error in an OpenAI route" in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/completions", "POST"),
        ("DELETE", "/v1/embeddings", "POST"),
        ("POST", "/v1/models", "GET"),
        ("DELETE", "/v1/models/chat", "GET"),
    ],
)
async def test_a_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    _assert_openai_error(response, 405, code="method_not_allowed")
    assert response.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/v1", "/v1/", "/v1/chat", "/v1/chat/completions/", "/v1/files"])
async def test_an_unknown_v1_path_is_an_openai_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json=chat_request())
    error = _assert_openai_error(response, 404, code=None, param=None)
    assert error["message"] == f"path {path!r} not found (method POST)"


async def test_a_server_shutdown_mid_call_is_answered_503(groups: dict[str, Group]) -> None:
    called = asyncio.Event()

    async def stuck(request: LlmRequest, ctx: CallContext) -> LlmResponse:
        called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    gateway = make_gateway({"chat": stuck})
    task = asyncio.create_task(drive(gateway, chat_request()))
    await called.wait()
    task.cancel()
    exchange = await task  # the route answers and ends quietly
    assert exchange.status == 503
    assert exchange.headers["retry-after"] == "1"
    assert orjson.loads(exchange.body)["error"]["code"] == "shutting_down"


# --- models ---------------------------------------------------------------------------------


async def test_the_model_list_names_every_group(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    groups["org/model-b"] = complete(chat_body("x"))
    response = await client.get("/v1/models")
    assert response.status_code == 200
    document = response.json()
    assert document["object"] == "list"
    assert [m["id"] for m in document["data"]] == ["chat", "org/model-b"]
    for model in document["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert (model["object"], model["owned_by"]) == ("model", "seawall")
        assert abs(model["created"] - time.time()) < 3600
    one = await client.get("/v1/models/org/model-b")  # ids may hold a slash
    assert one.json() == document["data"][1]


async def test_an_unknown_model_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models/gpt-9")
    _assert_openai_error(response, 404, code="model_not_found", param="model")


# --- streams --------------------------------------------------------------------------------


async def test_a_stream_is_sent_as_server_sent_events(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    chunks = [chat_chunk("Hel"), chat_chunk("lo"), chat_chunk(None, finish="stop")]
    tracker = Tracker()
    groups["chat"] = streamed(chunks, tracker, served_by="chat/primary")
    response = await client.post(
        "/v1/chat/completions", json=chat_request(stream=True), headers={"x-request-id": "s-1"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert "content-length" not in response.headers
    assert response.headers["x-request-id"] == "s-1"
    assert response.headers["x-seawall-served-by"] == "chat/primary"
    assert float(response.headers["x-seawall-overhead-ms"]) >= 0
    assert _sse(response.content) == [*chunks, "[DONE]"]
    assert (tracker.generators_closed, tracker.connections_closed) == (1, 1)


async def test_each_chunk_is_its_own_flushed_message(
    gateway: Gateway, groups: dict[str, Group]
) -> None:
    chunks = [chat_chunk("a"), chat_chunk("b"), chat_chunk("c")]
    groups["chat"] = streamed(chunks, Tracker())
    exchange = await drive(gateway, chat_request(stream=True))
    bodies = [m["body"] for m in exchange.messages[1:]]
    assert bodies == [
        b"data: " + orjson.dumps(chunks[0]) + b"\n\n",
        b"data: " + orjson.dumps(chunks[1]) + b"\n\n",
        b"data: " + orjson.dumps(chunks[2]) + b"\n\n",
        b"data: [DONE]\n\n",
    ]
    assert [m.get("more_body") for m in exchange.messages[1:]] == [True, True, True, False]


async def test_a_complete_answer_to_a_stream_request_is_one_chunk(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    groups["chat"] = complete(chat_body("cached"))
    response = await client.post("/v1/chat/completions", json=chat_request(stream=True))
    events = _sse(response.content)
    assert events[-1] == "[DONE]"
    [chunk] = events[:-1]
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"][0]["delta"] == {"role": "assistant", "content": "cached"}


async def test_an_answer_with_no_chunk_and_no_body_is_a_502(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    tracker = Tracker()
    inner = streamed([chat_chunk("a")], tracker)

    async def chunkless(request: LlmRequest, ctx: CallContext) -> LlmResponse:
        response = await inner(request, ctx)
        response.first = None
        return response

    groups["chat"] = chunkless
    response = await client.post("/v1/chat/completions", json=chat_request(stream=True))
    _assert_openai_error(response, 502, code="bad_response")
    assert tracker.connections_closed == 1


async def test_a_failure_after_the_first_chunk_ends_the_stream_with_an_error_event(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    tracker = Tracker()
    error = BackendTimeoutError("model 'chat': no chunk for 10 s")
    groups["chat"] = streamed([chat_chunk("a"), chat_chunk("b")], tracker, then=error)
    response = await client.post("/v1/chat/completions", json=chat_request(stream=True))
    assert response.status_code == 200
    assert _sse(response.content) == [
        chat_chunk("a"),
        chat_chunk("b"),
        {
            "error": {
                "message": "model 'chat': no chunk for 10 s",
                "type": "server_error",
                "param": None,
                "code": "timeout",
            }
        },
        "[DONE]",
    ]
    assert tracker.connections_closed == 1
    assert (await _metrics(client))[_requests("chat", 504)] == 1  # the answer failed


async def test_stream_tokens_are_counted_when_it_ends(
    client: httpx.AsyncClient, groups: dict[str, Group]
) -> None:
    tracker = Tracker()
    final = chat_chunk(None, finish="stop")
    final["usage"] = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    groups["chat"] = streamed([chat_chunk("abcd"), final], tracker)
    await client.post("/v1/chat/completions", json=chat_request(stream=True))
    groups["chat"] = streamed([chat_chunk("abcdefgh"), chat_chunk("ij")], tracker)
    await client.post("/v1/chat/completions", json=chat_request(stream=True))
    assert tracker.usages[0] == Usage(11, 5)  # the provider's count
    assert tracker.usages[1].completion_tokens == 3  # 10 characters, estimated
    samples = await _metrics(client)
    prompt = 11 + tracker.usages[1].prompt_tokens
    assert samples[_tokens("chat", "prompt")] == prompt
    assert samples[_tokens("chat", "completion")] == 5 + 3
    assert samples[_requests("chat", 200)] == 2


async def test_complete_answers_count_their_usage(client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json=chat_request())
    await client.post("/v1/chat/completions", json=chat_request())
    samples = await _metrics(client)
    assert samples[_tokens("chat", "prompt")] == 14
    assert samples[_tokens("chat", "completion")] == 6
    assert samples[_requests("chat", 200)] == 2
    assert samples["seawall_requests_in_flight", frozenset({("model", "chat")})] == 0


async def test_a_client_leaving_mid_stream_closes_the_upstream_and_counts_499(
    gateway: Gateway, groups: dict[str, Group]
) -> None:
    tracker = Tracker()
    groups["chat"] = streamed([chat_chunk("a"), chat_chunk("b")], tracker, hang=True)
    exchange = await drive(gateway, chat_request(stream=True), leave_after_events=2)
    assert exchange.status == 200
    assert exchange.events() == [orjson.dumps(chat_chunk("a")), orjson.dumps(chat_chunk("b"))]
    assert (tracker.generators_closed, tracker.connections_closed) == (1, 1)
    async for client in http_client(gateway):
        samples = await _metrics(client)
        assert samples[_requests("chat", 499)] == 1
        assert samples["seawall_requests_in_flight", frozenset({("model", "chat")})] == 0


async def test_a_thousand_disconnects_leave_no_task_and_close_every_stream() -> None:
    tracker = Tracker()
    chunks = [chat_chunk("a"), chat_chunk("b")]
    gateway = make_gateway(
        {
            "stalled": streamed(chunks, tracker, hang=True),  # the upstream has gone silent
            "flowing": streamed(chunks, tracker, endless=True),  # chunks keep coming
        }
    )
    before = len(asyncio.all_tasks())
    for i in range(1000):
        body = chat_request(model="stalled" if i % 2 else "flowing", stream=True)
        await drive(gateway, body, leave_after_events=2)
        assert tracker.connections_closed == i + 1  # closed before the route returned
    assert tracker.started == tracker.generators_closed == 1000
    assert len(tracker.usages) == 1000
    gc.collect()  # nothing was left for garbage collection to finalise in a new task
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before
    async for client in http_client(gateway):
        samples = await _metrics(client)
        assert samples[_requests("stalled", 499)] + samples[_requests("flowing", 499)] == 1000


async def test_a_client_hanging_up_on_uvicorn_closes_the_upstream_within_a_second() -> None:
    tracker = Tracker()
    gateway = make_gateway({"chat": streamed([chat_chunk("a")], tracker, hang=True)})
    config = uvicorn.Config(gateway, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    listener = socket.create_server(("127.0.0.1", 0))  # listening: connections queue up at once
    port = listener.getsockname()[1]
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = orjson.dumps(chat_request(stream=True))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json"
            b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        head = await reader.readuntil(b"data: ")
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readuntil(b"\n\n")  # the first chunk; the upstream is silent after it
        assert tracker.connections_closed == 0
        hung_up = time.perf_counter()
        writer.close()
        await asyncio.wait_for(tracker.closing.wait(), timeout=5)
        assert time.perf_counter() - hung_up < 1.0
        assert tracker.generators_closed == 1
    finally:
        server.should_exit = True
        await serving
        listener.close()


# --- the official openai SDK ------------------------------------------------------------------


async def test_sdk_chat(sdk: openai.AsyncOpenAI, groups: dict[str, Group]) -> None:
    seen: list[tuple[LlmRequest, CallContext]] = []
    groups["chat"] = complete(chat_body("Hello!"), seen=seen, served_by="chat/a")
    raw = await sdk.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], temperature=0.1
    )
    assert raw.headers["x-seawall-served-by"] == "chat/a"
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello!"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 10
    assert completion._request_id == seen[0][1].request_id
    assert seen[0][1].credentials == "k"  # Authorization: Bearer k
    assert seen[0][0].body["temperature"] == 0.1


async def test_sdk_chat_stream(sdk: openai.AsyncOpenAI, groups: dict[str, Group]) -> None:
    tracker = Tracker()
    chunks = [chat_chunk("Hel"), chat_chunk("lo"), chat_chunk(" there", finish="stop")]
    groups["chat"] = streamed(chunks, tracker)
    stream = await sdk.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    texts, finishes = [], []
    async for chunk in stream:
        texts.append(chunk.choices[0].delta.content)
        finishes.append(chunk.choices[0].finish_reason)
    assert texts == ["Hel", "lo", " there"]
    assert finishes == [None, None, "stop"]
    assert tracker.connections_closed == 1


async def test_sdk_raises_on_an_error_event_mid_stream(
    sdk: openai.AsyncOpenAI, groups: dict[str, Group]
) -> None:
    error = BackendUnavailableError("model 'chat': upstream connection lost")
    groups["chat"] = streamed([chat_chunk("a"), chat_chunk("b")], Tracker(), then=error)
    stream = await sdk.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    texts = []

    async def read_all() -> None:
        async for chunk in stream:
            texts.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError, match="upstream connection lost") as caught:
        await read_all()
    assert texts == ["a", "b"]
    assert caught.value.code == "unavailable"


async def test_sdk_completions(sdk: openai.AsyncOpenAI, groups: dict[str, Group]) -> None:
    groups["text"] = complete(completion_body(" upon a time"))
    completion = await sdk.completions.create(model="text", prompt="Once", max_tokens=5)
    assert completion.choices[0].text == " upon a time"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5


async def test_sdk_embeddings(sdk: openai.AsyncOpenAI, groups: dict[str, Group]) -> None:
    seen: list[tuple[LlmRequest, CallContext]] = []
    groups["embed"] = complete(embedding_body(2), seen=seen)
    result = await sdk.embeddings.create(model="embed", input=["a", "b"])
    assert [e.embedding for e in result.data] == [[0.5, -0.25, 0.0], [0.5, -0.25, 1.0]]
    assert seen[0][0].kind is LlmKind.EMBEDDING
    assert seen[0][0].body["input"] == ["a", "b"]


async def test_sdk_lists_and_retrieves_models(
    sdk: openai.AsyncOpenAI, groups: dict[str, Group]
) -> None:
    groups["embed"] = complete(embedding_body(1))
    assert [m.id async for m in sdk.models.list()] == ["chat", "embed"]
    model = await sdk.models.retrieve("embed")
    assert (model.id, model.owned_by) == ("embed", "seawall")
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.models.retrieve("gpt-9")
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("error", "sdk_error", "code"),
    [
        (UnauthorizedError("unknown API key"), openai.AuthenticationError, "invalid_api_key"),
        (ForbiddenError("key 'a' may not call 'chat'"), openai.PermissionDeniedError, None),
        (
            RateLimitedError("key 'a': 10 requests per minute", retry_after_s=3),
            openai.RateLimitError,
            "rate_limit_exceeded",
        ),
        (OverloadedError("gateway overloaded"), openai.InternalServerError, "overloaded"),
        (InvalidInputError("messages[0].content", "too long"), openai.BadRequestError, None),
    ],
)
async def test_sdk_raises_its_error_class_with_our_message(
    sdk: openai.AsyncOpenAI,
    groups: dict[str, Group],
    error: Exception,
    sdk_error: type[openai.APIStatusError],
    code: str | None,
) -> None:
    groups["chat"] = failing(error)
    with pytest.raises(sdk_error) as caught:
        await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
    assert str(error) in caught.value.message
    assert caught.value.code == code
    assert caught.value.body == {
        "message": str(error),
        "type": caught.value.type,
        "param": caught.value.param,
        "code": code,
    }


async def test_sdk_bad_request_names_the_param(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], top_p=1.5
        )
    assert caught.value.param == "top_p"
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}]
        )
    assert (missing.value.code, missing.value.param) == ("model_not_found", "model")


# --- properties -------------------------------------------------------------------------------

PROPERTY = settings(
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
#: The range rules of the numeric parameters, written from OpenAI's API reference.
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    # name: (low, high, whole numbers only)
    "temperature": (0, 2, False),
    "top_p": (0, 1, False),
    "presence_penalty": (-2, 2, False),
    "frequency_penalty": (-2, 2, False),
    "n": (1, 128, True),
    "max_tokens": (1, None, True),
    "max_completion_tokens": (1, None, True),
    "top_logprobs": (0, 20, True),
    "seed": (None, None, True),
}
_BOOLEANS = ("stream", "logprobs", "parallel_tool_calls")


def _number_ok(name: str, value: Any) -> bool:
    low, high, whole = _RANGES[name]
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if whole and not isinstance(value, int):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


@st.composite
def _mutated_chat(draw: st.DrawFn) -> tuple[dict[str, Any], str, bool | None]:
    """A valid chat body with one mutation: the body, the field it touched, and whether the
    result must be accepted (None: the rule is not modelled here, only the param is checked)."""
    body = chat_request()
    where = draw(st.sampled_from(["number", "bool", "model", "messages", "message", "unknown"]))
    if where == "number":
        name = draw(st.sampled_from(sorted(_RANGES)))
        value = draw(_JSON | st.integers(-300, 300) | st.floats(-3, 3))
        body[name] = value
        return body, name, _number_ok(name, value)
    if where == "bool":
        name = draw(st.sampled_from(_BOOLEANS))
        body[name] = draw(_JSON)
        return body, name, body[name] is None or isinstance(body[name], bool)
    if where == "model":
        body["model"] = draw(_JSON | st.just("chat"))
        return body, "model", body["model"] == "chat"
    if where == "messages":
        body["messages"] = draw(_JSON)
        return body, "messages", None
    if where == "message":
        key = draw(st.sampled_from(["role", "content", "name", "tool_call_id"]))
        body["messages"][0][key] = draw(_JSON)
        return body, "messages", None
    body[draw(st.text(min_size=1, max_size=6).filter(lambda k: k not in _KNOWN))] = draw(_JSON)
    return body, "", True


_KNOWN = {
    *_RANGES, *_BOOLEANS, "model", "messages", "stop", "stream_options", "logit_bias", "user",
    "tools", "tool_choice", "response_format", "metadata",
}  # fmt: skip


@PROPERTY
@given(case=_mutated_chat())
async def test_mutated_chat_bodies_are_answered_or_refused_naming_the_field(
    client: httpx.AsyncClient,
    groups: dict[str, Group],
    case: tuple[dict[str, Any], str, bool | None],
) -> None:
    groups["chat"] = echo()
    body, touched, accepted = case
    response = await client.post("/v1/chat/completions", json=body)
    event(f"status {response.status_code}")  # --hypothesis-show-statistics shows the mix
    assert response.status_code < 500
    if accepted is not None:
        assert (response.status_code == 200) == accepted, response.text
    if response.status_code != 200:
        param = _assert_openai_error(response, response.status_code)["param"]
        assert param == touched or param.startswith((f"{touched}[", f"{touched}.")), param


@PROPERTY
@given(body=st.dictionaries(st.sampled_from(sorted(_KNOWN)) | st.text(max_size=5), _JSON))
async def test_arbitrary_bodies_never_get_a_5xx(
    client: httpx.AsyncClient, groups: dict[str, Group], body: dict[str, Any]
) -> None:
    groups["chat"] = echo()
    response = await client.post("/v1/chat/completions", json=body)
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 404)
    if response.status_code != 200:
        error = _assert_openai_error(response, response.status_code)
        assert (
            error["param"] is None
            or error["param"].split("[")[0].split(".")[0] in body
            or (error["param"] in ("model", "messages"))
        )


async def test_a_cached_answer_is_marked_and_adds_no_tokens(
    groups: dict[str, Group], client: httpx.AsyncClient
) -> None:
    seen: list[tuple[LlmRequest, CallContext]] = []
    cache: CachePolicy[LlmRequest, LlmResponse] = CachePolicy(LlmCodec(), target="chat")
    groups["chat"] = Pipeline([cache], complete(chat_body("Hello!"), seen=seen))

    first = await client.post("/v1/chat/completions", json=chat_request(temperature=0))
    second = await client.post(
        "/v1/chat/completions",
        json=chat_request(temperature=0, user="another"),
        headers={"x-request-id": "mine"},
    )
    fresh = await client.post(
        "/v1/chat/completions",
        json=chat_request(temperature=0),
        headers={"cache-control": "no-cache"},
    )

    assert [r.headers["x-seawall-cache"] for r in (first, second, fresh)] == [
        "miss",
        "hit",
        "bypass",
    ]
    assert second.json() == first.json()
    assert second.headers["x-request-id"] == "mine"
    assert len(seen) == 2  # the first call and the no-cache one
    samples = await _metrics(client)
    assert samples[_tokens("chat", "prompt")] == 2 * 7  # the hit's tokens were not spent
    assert samples[_tokens("chat", "completion")] == 2 * 3
