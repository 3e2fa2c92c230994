"""Open Inference Protocol v2 REST routes, as plain ASGI (the infer route is the hot path).

```
GET  /v2                                        server metadata
GET  /v2/health/live | /v2/health/ready         liveness, readiness
GET  /v2/models/{m}[/versions/{v}]              model metadata
GET  /v2/models/{m}[/versions/{v}]/ready        model readiness
POST /v2/models/{m}[/versions/{v}]/infer        inference
GET|POST /v2/repository/index                   each model version and its state (Triton)
```
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from seawall import __version__
from seawall.backends import ServedModel
from seawall.backends.oip.codec import decode_infer_request, encode_infer_response
from seawall.context import CallContext
from seawall.errors import InvalidInputError, NotFoundError, SeawallError
from seawall.gateway.asgi import (
    ClientDisconnectedError,
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
from seawall.gateway.status import error_status, retry_after_header

if TYPE_CHECKING:
    from seawall.gateway.app import Gateway

__all__ = ["OipRoutes", "error_response"]

logger = logging.getLogger("seawall.gateway")

SERVER_NAME = "seawall"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
_ALLOWED = {"metadata": "GET", "ready": "GET", "infer": "POST"}
SERVED_BY_HEADER = "x-seawall-served-by"
_LIVE = json_body({"live": True})
_CANCELLED = json_body({"error": "the gateway shut down before this request finished; retry"})


def error_response(exc: SeawallError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, `{"error": ...}` body and headers (`Retry-After` on 429 and 503) for an error."""
    status = error_status(exc)
    headers: list[tuple[bytes, bytes]] = []
    retry_after = retry_after_header(exc) or ("1" if status in (429, 503) else None)
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    return status, json_body({"error": exc.message}), headers


class OipRoutes:
    """Dispatches `/v2/...` paths to their handlers."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._repository = gateway.repository
        self._metrics = gateway.metrics
        self._limit = gateway.settings.max_body_bytes
        self._calls = CallHeaders(gateway.settings, gateway.clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].rstrip("/").split("/")[2:]  # after "", "v2"
        method = scope["method"]
        try:
            if parts and parts[0] == "models" and len(parts) >= 2:
                await self._model_route(scope, receive, send, parts[1], parts[2:])
            elif not parts:
                _require(method, "GET", scope)
                await send_response(send, 200, self._server_metadata())
            elif parts == ["health", "live"]:
                _require(method, "GET", scope)
                await send_response(send, 200, _LIVE)
            elif parts == ["health", "ready"]:
                _require(method, "GET", scope)
                ready, reason = self._gateway.readiness()
                if ready:
                    await send_response(send, 200, json_body({"ready": True}))
                else:
                    await send_response(
                        send,
                        503,
                        json_body({"ready": False, "reason": reason}),
                        headers=[(b"retry-after", b"1")],
                    )
            elif parts == ["repository", "index"]:
                await self._repository_index(scope, receive, send)
            else:
                raise NotFoundError(f"path {scope['path']!r} not found")
        except _MethodNotAllowedError as exc:
            await send_response(
                send, 405, json_body({"error": str(exc)}), headers=[(b"allow", exc.allow)]
            )
        except SeawallError as exc:
            status, body, headers = error_response(exc)
            await send_response(send, status, body, headers=headers)

    async def _model_route(
        self, scope: Scope, receive: Receive, send: Send, name: str, rest: list[str]
    ) -> None:
        version: str | None = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        if len(rest) > 1 or (rest and rest[0] not in _ALLOWED):
            raise NotFoundError(f"path {scope['path']!r} not found")
        action = rest[0] if rest else "metadata"
        _require(scope["method"], _ALLOWED[action], scope)
        if action == "infer":
            await self.infer(scope, receive, send, name, version)
            return
        model = self._repository.get(name, version)
        if action == "ready":
            body: dict[str, Any] = {
                "name": model.name,
                "version": model.version,
                "ready": model.ready,
            }
            if model.ready:
                await send_response(send, 200, json_body(body))
                return
            body["reason"] = model.reason or model.state.value.lower()
            await send_response(send, 503, json_body(body), headers=[(b"retry-after", b"1")])
        else:
            await send_response(send, 200, self._model_metadata(model))

    async def infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        """Decode, run the model's pipeline, encode; every failure becomes a JSON error."""
        started = time.perf_counter()
        headers = request_headers(scope)
        ctx = CallContext.new(
            headers.get("x-request-id"), traceparent=headers.get("traceparent"), headers=headers
        )
        extra = [(b"x-request-id", ctx.request_id.encode())]
        model_label, version_label = UNKNOWN, ""
        in_flight = None
        content_type = b"application/json"
        try:
            self._calls.apply(ctx, headers)
            model = self._repository.get(name, version)
            model_label, version_label = model.name, model.version
            in_flight = self._metrics.in_flight_for(model.name)
            in_flight.inc()
            model.check_ready()
            body = await read_body(receive, headers, self._limit)
            request = decode_infer_request(body, _json_length(headers), model.name, model.version)
            router = None if version else self._repository.routed(name)
            response = await (router or model.handler)(request, ctx)
            served = ctx.annotations.get("version", model.version)  # a router's choice
            ctx.response_headers.setdefault(SERVED_BY_HEADER, f"{model.name}:{served}")
            payload, content_type, json_length = encode_infer_response(response, request)
            if json_length is not None:
                extra.append((b"inference-header-content-length", str(json_length).encode()))
            status = 200
        except ClientDisconnectedError:
            self._metrics.observe(model_label, version_label, 499, time.perf_counter() - started)
            return
        except asyncio.CancelledError:
            # Only the server cancels a request task: its shutdown grace period has run out.
            # Answer (503, retry elsewhere) instead of uvicorn's plain-text 500, then end the
            # task quietly: it is being torn down and nothing awaits its result.
            status, payload = 503, _CANCELLED
            extra.extend([(b"retry-after", b"1"), (b"connection", b"close")])
        except SeawallError as exc:
            status, payload, headers_out = error_response(exc)
            extra.extend(headers_out)
        except Exception:  # a bug must cost one request, never the process
            logger.exception(
                "unexpected error in infer", extra={"request_id": ctx.request_id, "model": name}
            )
            status = 500
            payload = json_body({"error": f"internal error (request id {ctx.request_id})"})
        finally:
            if in_flight is not None:
                in_flight.dec()
        if ctx.response_headers:
            extra.extend((k.encode(), v.encode()) for k, v in ctx.response_headers.items())
        await send_response(send, status, payload, content_type=content_type, headers=extra)
        version_label = str(ctx.annotations.get("version", version_label))  # a router's choice
        self._metrics.observe(model_label, version_label, status, time.perf_counter() - started)

    def _server_metadata(self) -> bytes:
        return json_body({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})

    def _model_metadata(self, model: ServedModel) -> bytes:
        metadata = model.metadata()
        return json_body(
            {
                "name": model.name,
                "versions": list(self._repository.versions(model.name)),
                "platform": metadata.platform,
                "inputs": [spec.to_dict() for spec in metadata.inputs],
                "outputs": [spec.to_dict() for spec in metadata.outputs],
            }
        )

    async def _repository_index(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD", "POST"):
            raise _MethodNotAllowedError(scope, "GET, POST")
        only_ready = False
        if scope["method"] == "POST":
            body = await read_body(receive, request_headers(scope), self._limit)
            only_ready = _ready_filter(body)
        index = [
            {
                "name": m.name,
                "version": m.version,
                "state": m.state.value,
                "reason": m.reason,
            }
            for m in self._repository
            if m.ready or not only_ready
        ]
        await send_response(send, 200, json_body(index))


def _ready_filter(body: bytes) -> bool:
    if not body.strip():
        return False
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError("body", f"invalid JSON: {exc}") from None
    ready = document.get("ready", False) if isinstance(document, dict) else None
    if not isinstance(ready, bool):
        raise InvalidInputError("ready", "expected true or false")
    return ready


def _json_length(headers: dict[str, str]) -> int | None:
    value = headers.get("inference-header-content-length")
    if value is None:
        return None
    if not (value.isascii() and value.strip().isdigit()):  # isdigit() alone accepts "²"
        raise InvalidInputError(
            "inference-header-content-length", f"expected a byte count, got {value!r}"
        )
    return int(value)


class _MethodNotAllowedError(Exception):
    def __init__(self, scope: Scope, allow: str) -> None:
        super().__init__(
            f"method {scope['method']} is not allowed on {scope['path']} (allow: {allow})"
        )
        self.allow = allow.encode()


def _require(method: str, allowed: str, scope: Scope) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise _MethodNotAllowedError(scope, allowed)
