"""The admin API (FastAPI): circuit breakers today; registry, keys and rollouts later.

Every route needs an API key with the `admin` role (`auth.keys` in config). Without such a key
configured, the admin API refuses every call: it is never open by accident. Errors have the
same `{"error": "<field>: <reason>"}` shape as the inference routes. The OpenAPI schema is at
`/openapi.json`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from seawall import __version__
from seawall.assemble import Assembly
from seawall.errors import ForbiddenError, NotFoundError, SeawallError
from seawall.gateway.calls import credentials_of
from seawall.gateway.status import error_status, retry_after_header
from seawall.policies import AuthOptions, AuthPolicy, CircuitBreakerPolicy

__all__ = ["admin_app"]


class CircuitView(BaseModel):
    """A circuit breaker now."""

    model_config = ConfigDict(extra="forbid")

    target: str
    """The model version it guards, `model:version`."""
    state: str
    """closed, open or half_open."""
    mode: str
    """automatic, forced_open or forced_closed."""
    calls: int
    """Calls in the window."""
    failure_rate: float
    """Failure share of those calls."""
    slow_call_rate: float
    """Slow-call share of those calls."""
    consecutive_failures: int
    """Failures in a row."""
    retry_after_s: float | None
    """Time left open, when open automatically."""


class CircuitModeChange(BaseModel):
    """How a breaker should behave from now on."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["automatic", "forced_open", "forced_closed"]
    """`forced_open` refuses every call, `forced_closed` lets every call through, `automatic`
    resets the breaker and lets it decide again."""


def admin_app(assembly: Assembly) -> FastAPI:
    """The admin API over `assembly`'s breakers."""
    app = FastAPI(
        title="seawall admin API",
        version=__version__,
        docs_url=None,  # the Swagger page loads scripts from a CDN: nothing that works offline
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    # Every key is known (a consumer key gets 403, not 401), but only if one of them is an admin.
    lookup = assembly.shared.key_lookup if assembly.shared is not None else None
    # Admin keys come from the file, or from the database (`seawall keys create --role admin`).
    has_admin = lookup is not None or any(k.has_role("admin") for k in assembly.api_keys)
    guard: AuthPolicy[Any, Any] | None = (
        AuthPolicy(AuthOptions(required_role="admin"), keys=assembly.api_keys, lookup=lookup)
        if has_admin
        else None
    )

    async def require_admin(request: Request) -> None:
        if guard is None:
            raise ForbiddenError(
                "the admin API is disabled: configure an API key with the admin role in "
                "auth.keys, or set auth.database_keys"
            )
        headers = {k.lower(): v for k, v in request.headers.items()}
        await guard.verify(credentials_of(headers))

    router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

    @router.get("/circuits", response_model=list[CircuitView])
    async def list_circuits() -> list[CircuitView]:
        """Every circuit breaker and its state."""
        return [_view(t, b) for t, b in sorted(assembly.breakers.items())]

    @router.get("/circuits/{model}/{version}", response_model=CircuitView)
    async def get_circuit(model: str, version: str) -> CircuitView:
        """One circuit breaker."""
        target = f"{model}:{version}"
        return _view(target, _breaker(assembly, target))

    @router.put("/circuits/{model}/{version}", response_model=CircuitView)
    async def set_circuit(model: str, version: str, change: CircuitModeChange) -> CircuitView:
        """Force a breaker open or closed, or give it back to automatic control (audited later)."""
        target = f"{model}:{version}"
        breaker = _breaker(assembly, target)
        if change.mode == "forced_open":
            breaker.force_open()
        elif change.mode == "forced_closed":
            breaker.force_closed()
        else:
            breaker.reset()
        return _view(target, breaker)

    app.include_router(router)
    _error_handlers(app)
    return app


def _breaker(assembly: Assembly, target: str) -> CircuitBreakerPolicy[Any, Any]:
    breaker = assembly.breakers.get(target)
    if breaker is None:
        known = ", ".join(sorted(assembly.breakers)) or "none"
        raise NotFoundError(f"no circuit breaker for {target!r} (breakers: {known})")
    return breaker


def _view(target: str, breaker: CircuitBreakerPolicy[Any, Any]) -> CircuitView:
    s = breaker.snapshot()
    return CircuitView(
        target=target,
        state=s.state.value,
        mode=s.mode.value,
        calls=s.calls,
        failure_rate=s.failure_rate,
        slow_call_rate=s.slow_call_rate,
        consecutive_failures=s.consecutive_failures,
        retry_after_s=s.retry_after_s,
    )


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SeawallError)
    async def seawall_error(_: Request, exc: SeawallError) -> JSONResponse:
        headers = {}
        if (retry_after := retry_after_header(exc)) is not None:
            headers["retry-after"] = retry_after
        if error_status(exc) == 401:
            headers["www-authenticate"] = "Bearer"
        return JSONResponse({"error": exc.message}, error_status(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse({"error": f"{field}: {first['msg']}"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)
