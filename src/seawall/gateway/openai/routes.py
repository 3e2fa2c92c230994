"""OpenAI-compatible routes, as plain ASGI, in front of the LLM model groups.

```
POST /v1/chat/completions       chat (streamed with "stream": true)
POST /v1/completions            text completion (streamed with "stream": true)
POST /v1/embeddings             embeddings
GET  /v1/models                 the model groups clients can call
GET  /v1/models/{id}            one of them (ids may contain "/")
```

Every answer carries `x-request-id`, the headers the policies set (`x-seawall-attempts`,
rate-limit state...), `x-seawall-served-by` (the deployment that answered, when known) and
`x-seawall-overhead-ms`: the time seawall spent on the request before the response started
(reading and checking the body, encoding the answer or the first chunk) minus the time spent
awaiting the model group's pipeline, in milliseconds. Pipeline time counts as upstream time in
full (policies' own work there is microseconds, and their waits, such as a retry's back-off,
are spent for the upstream); a stream's relaying after the first chunk is not in it, since the
header is sent before.

Metrics use the model group's name as the `model` label (`_unknown` for a name that is not a
group) and an empty version. A stream is counted when it ends, with 200, the status of the error
that ended it (the client saw a 200 and an error event), or 499 if the client left first. Tokens
go to `seawall_llm_tokens_total`: a stream's when it ends, from `ChunkStream.usage`; an answer
from the response cache adds none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from seawall.context import CallContext
from seawall.errors import BadResponseError, SeawallError
from seawall.gateway.asgi import (
    ClientDisconnectedError,
    Headers,
    Receive,
    Scope,
    Send,
    json_body,
    read_body,
    request_headers,
    send_response,
)
from seawall.gateway.calls import CallHeaders
from seawall.gateway.metrics import UNKNOWN
from seawall.gateway.openai.codec import (
    DONE_EVENT,
    as_chunk,
    decode_request,
    encode_response,
    parse_body,
    sse_event,
)
from seawall.gateway.openai.errors import OpenAiError, unknown_model
from seawall.gateway.openai.stream import CLIENT_CLOSED, relay, unless_disconnected
from seawall.types import LlmKind, LlmRequest, LlmResponse, Usage

if TYPE_CHECKING:
    from seawall.gateway.app import Gateway

__all__ = ["OVERHEAD_HEADER", "SERVED_BY_HEADER", "OpenAiRoutes"]

logger = logging.getLogger("seawall.gateway")

SERVED_BY_HEADER = "x-seawall-served-by"
OVERHEAD_HEADER = "x-seawall-overhead-ms"
_CALLS = {
    "/v1/chat/completions": LlmKind.CHAT,
    "/v1/completions": LlmKind.COMPLETION,
    "/v1/embeddings": LlmKind.EMBEDDING,
}
_MODELS = "/v1/models"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx and friends: pass each event on at once
]
_CANCELLED = "the gateway shut down before this request finished; retry"


@dataclass(slots=True)
class _Exchange:
    """One call's bookkeeping: its context, metrics label and timings."""

    ctx: CallContext
    started: float = field(default_factory=time.perf_counter)
    label: str = UNKNOWN
    #: Seconds spent awaiting the model group's pipeline.
    pipeline_s: float = 0.0
    #: True once the response has started: an error can no longer change the status.
    responded: bool = False

    def headers(self, response: LlmResponse | None = None) -> list[tuple[bytes, bytes]]:
        """Response headers: request id, the policies' headers, served-by and overhead."""
        found = self.ctx.response_headers
        if response is not None and response.served_by:
            found[SERVED_BY_HEADER] = response.served_by
        overhead_ms = max(0.0, time.perf_counter() - self.started - self.pipeline_s) * 1000
        found[OVERHEAD_HEADER] = f"{overhead_ms:.3f}"
        out = [(b"x-request-id", self.ctx.request_id.encode())]
        out.extend((k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in found.items())
        return out


class OpenAiRoutes:
    """Dispatches `/v1/...` paths to the model groups of `Assembly.llm`."""

    def __init__(self, gateway: Gateway) -> None:
        self._groups = gateway.assembly.llm
        self._metrics = gateway.metrics
        self._limit = gateway.settings.max_body_bytes
        self._calls = CallHeaders(gateway.settings, gateway.clock, llm=True)
        #: `created` of every listed model: when this gateway was built (unix seconds).
        self._created = int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        kind = _CALLS.get(path)
        if kind is not None:
            if method != "POST":
                await _method_not_allowed(send, method, path, "POST")
            else:
                await self.call(scope, receive, send, kind)
        elif path == _MODELS or path.startswith(_MODELS + "/"):
            if method not in ("GET", "HEAD"):
                await _method_not_allowed(send, method, path, "GET")
            else:
                await self._models(send, path[len(_MODELS) + 1 :])
        else:
            await _send_error(send, OpenAiError.unknown_path(method, path))

    async def call(self, scope: Scope, receive: Receive, send: Send, kind: LlmKind) -> None:
        """Decode, run the model group's pipeline, answer (or stream); errors in OpenAI's shape."""
        headers = request_headers(scope)
        ctx = CallContext.new(
            headers.get("x-request-id"), traceparent=headers.get("traceparent"), headers=headers
        )
        exchange = _Exchange(ctx)
        try:
            status = await self._call(exchange, headers, kind, receive, send)
        except ClientDisconnectedError:
            status = CLIENT_CLOSED
        except asyncio.CancelledError:
            # Only the server cancels a request task: its shutdown grace period has run out.
            # Answer (503, retry elsewhere), then end the task quietly, as the OIP routes do.
            error = OpenAiError(503, _CANCELLED, "server_error", None, "shutting_down", "1")
            status = await self._fail(exchange, send, error)
        except SeawallError as exc:
            status = await self._fail(exchange, send, OpenAiError.of(exc))
        except Exception:  # a bug must cost one request, never the process
            logger.exception(
                "unexpected error in an OpenAI route",
                extra={"request_id": ctx.request_id, "model": exchange.label},
            )
            status = await self._fail(exchange, send, OpenAiError.internal(ctx.request_id))
        self._metrics.observe(exchange.label, "", status, time.perf_counter() - exchange.started)

    async def _call(
        self, exchange: _Exchange, headers: Headers, kind: LlmKind, receive: Receive, send: Send
    ) -> int:
        self._calls.apply(exchange.ctx, headers)
        document = parse_body(await read_body(receive, headers, self._limit))
        name = document.get("model")
        handler = self._groups.get(name) if isinstance(name, str) else None
        if handler is None:
            request = decode_request(kind, document)
            raise unknown_model(request.model)
        exchange.label = str(name)
        in_flight = self._metrics.in_flight_for(exchange.label)
        in_flight.inc()
        try:
            request = decode_request(kind, document)
            called = time.perf_counter()
            try:
                response = await unless_disconnected(handler(request, exchange.ctx), receive)
            finally:
                exchange.pipeline_s = time.perf_counter() - called
            if request.stream:
                return await self._stream(exchange, request, response, receive, send)
            if response.stream is not None:
                await response.stream.aclose()
            payload = encode_response(response, exchange.label)
            if exchange.ctx.annotations.get("cache") != "hit":  # a cached answer used no tokens
                self._count(exchange.label, _usage_of(response))
            await send_response(send, 200, payload, headers=exchange.headers(response))
            return 200
        finally:
            in_flight.dec()

    async def _stream(
        self,
        exchange: _Exchange,
        request: LlmRequest,
        response: LlmResponse,
        receive: Receive,
        send: Send,
    ) -> int:
        stream = response.stream
        first = response.first
        if first is None and response.body is not None and stream is None:
            first = as_chunk(request.kind, response.body)  # a complete answer (a fallback's)
        if first is None:
            if stream is not None:
                await stream.aclose()
            raise BadResponseError(f"model {exchange.label!r}: answered a stream without a chunk")
        label = exchange.label
        if stream is None:
            self._count(label, _usage_of(response))
        else:
            stream.on_done.append(lambda usage: self._count(label, usage))
        try:
            await self._start_stream(exchange, response, first, send, done=stream is None)
        except BaseException as exc:
            if stream is not None:
                await stream.aclose()
            if isinstance(exc, OSError):  # servers that raise on a closed connection
                return CLIENT_CLOSED
            raise
        if stream is None:
            return 200
        request_id = exchange.ctx.request_id
        return await relay(stream, receive, send, internal=lambda: OpenAiError.internal(request_id))

    async def _start_stream(
        self, exchange: _Exchange, response: LlmResponse, first: Any, send: Send, *, done: bool
    ) -> None:
        """Send the status, the headers and the first chunk (and `[DONE]` if it is the last)."""
        headers = exchange.headers(response)
        headers.extend(_SSE_HEADERS)
        exchange.responded = True
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = sse_event(first) + DONE_EVENT if done else sse_event(first)
        await send({"type": "http.response.body", "body": body, "more_body": not done})

    async def _models(self, send: Send, name: str) -> None:
        if not name:
            data = [self._model(n) for n in self._groups]
            await send_response(send, 200, json_body({"object": "list", "data": data}))
        elif name in self._groups:
            await send_response(send, 200, json_body(self._model(name)))
        else:
            await _send_error(send, OpenAiError.of(unknown_model(name)))

    def _model(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self._created, "owned_by": "seawall"}

    def _count(self, label: str, usage: Usage | None) -> None:
        if usage is not None:
            self._metrics.count_tokens(label, usage)

    async def _fail(self, exchange: _Exchange, send: Send, error: OpenAiError) -> int:
        """Answer with `error`, unless the response has started (then the client has gone)."""
        if exchange.responded:
            return error.status
        headers = exchange.headers()
        headers.extend(error.headers())
        await send_response(send, error.status, error.body(), headers=headers)
        return error.status


def _usage_of(response: LlmResponse) -> Usage | None:
    """The answer's usage: the pipeline's if it counted, else the body's `usage`."""
    if response.usage.total_tokens:
        return response.usage
    return Usage.from_openai(response.body.get("usage")) if response.body is not None else None


async def _send_error(send: Send, error: OpenAiError) -> None:
    await send_response(send, error.status, error.body(), headers=error.headers())


async def _method_not_allowed(send: Send, method: str, path: str, allow: str) -> None:
    error = OpenAiError(
        405,
        f"method {method} is not allowed on {path} (allow: {allow})",
        "invalid_request_error",
        None,
        "method_not_allowed",
    )
    await send_response(send, 405, error.body(), headers=[(b"allow", allow.encode())])
