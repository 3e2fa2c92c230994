"""`Gateway`: the ASGI app (OIP v2 and OpenAI routes, /metrics, lifespan, readiness, draining)."""

from __future__ import annotations

import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from seawall.assemble import Assembly
from seawall.backends import ModelRepository
from seawall.clock import Clock
from seawall.config import ServerSettings
from seawall.errors import NotFoundError
from seawall.gateway.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    json_body,
    send_response,
)
from seawall.gateway.metrics import GatewayMetrics
from seawall.gateway.oip import OipRoutes, error_response
from seawall.gateway.openai import OpenAiRoutes

__all__ = ["Gateway"]

logger = logging.getLogger("seawall.gateway")
access_logger = logging.getLogger("seawall.access")

_INDEX = json_body(
    {
        "name": "seawall",
        "endpoints": {
            "server metadata": "GET /v2",
            "liveness": "GET /v2/health/live",
            "readiness": "GET /v2/health/ready",
            "model metadata": "GET /v2/models/{model}[/versions/{version}]",
            "model readiness": "GET /v2/models/{model}[/versions/{version}]/ready",
            "inference": "POST /v2/models/{model}[/versions/{version}]/infer",
            "model states": "GET /v2/repository/index",
            "OpenAI chat": "POST /v1/chat/completions",
            "OpenAI completions": "POST /v1/completions",
            "OpenAI embeddings": "POST /v1/embeddings",
            "OpenAI models": "GET /v1/models[/{model}]",
            "metrics": "GET /metrics",
            "admin API (a key with a role)": "/admin/... (schema: GET /openapi.json)",
        },
    }
)


#: Paths served by the admin app (FastAPI, imported on the first call).
ADMIN_PATHS = ("/admin/", "/openapi.json")


class Gateway:
    """Serves the models of a `ModelRepository`; loads them at start-up and closes them at exit."""

    def __init__(
        self,
        models: Assembly | ModelRepository,
        settings: ServerSettings | None = None,
        *,
        metrics: GatewayMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.assembly = models if isinstance(models, Assembly) else Assembly(models)
        self.repository = self.assembly.repository
        self.settings = settings or ServerSettings()
        self.clock = clock or self.repository.clock
        self.metrics = metrics or GatewayMetrics()
        self.metrics.watch(self.assembly)
        self._admin: ASGIApp | None = None  # built on first use: FastAPI is not on the hot path
        self.started = False
        self.draining = False
        self._oip = OipRoutes(self)
        self._openai = OpenAiRoutes(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.settings.access_log:
                await self._logged(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: not served
            await send({"type": "websocket.close", "code": 1003})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path == "/v2" or path.startswith("/v2/"):
            await self._oip(scope, receive, send)
        elif path == "/v1" or path.startswith("/v1/"):
            await self._openai(scope, receive, send)
        elif path == "/metrics":
            body = generate_latest(self.metrics.exposition())
            await send_response(send, 200, body, content_type=CONTENT_TYPE_LATEST.encode())
        elif path.startswith(ADMIN_PATHS):
            if self._admin is None:
                from seawall.gateway.admin import admin_app

                self._admin = admin_app(self.assembly)
            await self._admin(scope, receive, send)
        elif path == "/":
            await send_response(send, 200, _INDEX)
        else:
            status, body, headers = error_response(NotFoundError(f"path {path!r} not found"))
            await send_response(send, status, body, headers=headers)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0
        request_id = ""

        async def capture(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                request_id = next(
                    (v.decode() for k, v in message["headers"] if k == b"x-request-id"), ""
                )
            await send(message)

        try:
            await self._http(scope, receive, capture)
        finally:
            access_logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "request_id": request_id,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # report to the server, which exits non-zero
                    logger.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Load every model (concurrently); failures are recorded per model, not raised."""
        await self.assembly.start()
        self.started = True
        ready = sum(1 for m in self.repository if m.ready)
        logger.info("gateway started", extra={"models": len(self.repository), "ready": ready})

    async def shutdown(self) -> None:
        """Close every backend; called after in-flight requests have drained."""
        self.draining = True
        await self.repository.close_all()
        await self.assembly.aclose()
        logger.info("gateway stopped")

    def drain(self) -> None:
        """Report not ready from now on, so load balancers stop sending new requests."""
        self.draining = True

    def readiness(self) -> tuple[bool, str]:
        """Whether the gateway should receive traffic, and why not."""
        if self.draining:
            return False, "shutting down"
        if not self.started:
            return False, "loading models"
        models = list(self.repository)
        not_ready = [m for m in models if not m.ready]
        if self.settings.strict_readiness and not_ready:
            m = not_ready[0]
            return False, f"model {m.name!r} version {m.version!r} is not ready: {m.reason}"
        if models and len(not_ready) == len(models):
            return False, "no model is ready"
        return True, ""
