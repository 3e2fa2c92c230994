"""`Gateway`: the ASGI app (OIP v2 and OpenAI routes, /metrics, lifespan, readiness, draining)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

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

__all__ = ["Gateway", "ReloadOutcome", "ReloadRefusedError"]

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


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What a reload did: the models it added, removed and kept (as `name:version`)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]
    #: Requests still in flight on the old models when they were closed (0 unless the drain
    #: ran out of time).
    abandoned: int = 0


class ReloadRefusedError(Exception):
    """The new configuration would break what serves now; nothing was changed."""


class _Generation:
    """Requests in flight on one assembly, so a reload knows when the old one is idle."""

    __slots__ = ("idle", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0
        self.idle: asyncio.Event | None = None

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self.idle is not None:
            self.idle.set()


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
        self._generation = _Generation()
        self._reloading = asyncio.Lock()

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
        # Counted per generation, so a reload closes the old models only once they are idle.
        generation = self._generation
        generation.in_flight += 1
        try:
            await self._route(path, scope, receive, send)
        finally:
            generation.leave()

    async def _route(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
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

    async def reload(
        self,
        assembly: Assembly,
        *,
        settings: ServerSettings | None = None,
        drain_timeout_s: float | None = None,
    ) -> ReloadOutcome:
        """Serve `assembly` instead of the current one, without failing a request.

        The new models load first, beside the old ones. If a model version that is ready now
        would not be ready after the switch (its new file fails to load, say), the reload is
        refused (`ReloadRefusedError`), the new assembly is closed and nothing changes. Else
        new requests go to the new assembly at once; requests already in flight finish on the
        old one, which is closed when they are done (or after `drain_timeout_s`, default the
        shutdown grace period). `settings` replaces the server settings the routes use (body
        limit, deadline headers); the listener itself does not move.
        """
        async with self._reloading:
            await assembly.start()
            old = self.assembly
            broken = [
                f"{m.name}:{m.version} ({_reason(assembly, m.name, m.version)})"
                for m in old.repository
                if m.ready and not _ready_in(assembly, m.name, m.version)
            ]
            if broken:
                await _close(assembly)
                raise ReloadRefusedError(
                    "these models serve now and would not after the reload: " + ", ".join(broken)
                )
            before = {f"{m.name}:{m.version}" for m in old.repository}
            after = {f"{m.name}:{m.version}" for m in assembly.repository}
            self.metrics.unwatch(old)
            self.assembly, self.repository = assembly, assembly.repository
            if settings is not None:
                self.settings = settings
            self.metrics.watch(assembly)
            self._oip, self._openai, self._admin = OipRoutes(self), OpenAiRoutes(self), None
            retired, self._generation = self._generation, _Generation()
            abandoned = await self._drained(retired, drain_timeout_s)
            await _close(old)
        outcome = ReloadOutcome(
            added=tuple(sorted(after - before)),
            removed=tuple(sorted(before - after)),
            kept=tuple(sorted(after & before)),
            abandoned=abandoned,
        )
        logger.info(
            "configuration reloaded",
            extra={"added": outcome.added, "removed": outcome.removed, "abandoned": abandoned},
        )
        return outcome

    async def _drained(self, generation: _Generation, timeout_s: float | None) -> int:
        """Wait until `generation` has no request in flight; those left when time ran out."""
        if generation.in_flight == 0:
            return 0
        generation.idle = asyncio.Event()
        limit = self.settings.shutdown_grace_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit):
                await generation.idle.wait()
        except TimeoutError:
            logger.warning(
                "closing the old configuration's models with requests in flight",
                extra={"in_flight": generation.in_flight},
            )
        return generation.in_flight

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


def _ready_in(assembly: Assembly, name: str, version: str) -> bool:
    try:
        return assembly.repository.get(name, version).ready
    except NotFoundError:
        return True  # removed on purpose by the new configuration: not broken


def _reason(assembly: Assembly, name: str, version: str) -> str:
    model = assembly.repository.get(name, version)
    return model.reason or model.state.value.lower()


async def _close(assembly: Assembly) -> None:
    await assembly.repository.close_all()
    await assembly.aclose()
