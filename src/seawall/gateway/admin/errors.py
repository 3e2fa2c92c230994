"""The admin API's errors: one body, `{"error": "<field>: <reason>"}`, documented on every route.

The status comes from seawall's one error table (`seawall.gateway.status`); FastAPI's own
errors (a bad field, an unknown path, a wrong method) get the same body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from seawall.errors import SeawallError
from seawall.gateway.status import error_status, retry_after_header

__all__ = ["ErrorBody", "error_handlers", "responses"]


class ErrorBody(BaseModel):
    """What every refusal and failure of the admin API carries."""

    model_config = ConfigDict(extra="forbid")

    error: str
    """`<field>: <reason>` for bad input, else what went wrong."""


_WHY = {
    400: "A field is refused (by the registry, or a rollout plan's): `<field>: <reason>`.",
    401: "No API key, or an unknown or expired one.",
    403: "The key lacks the role or the model scope, or the admin API is disabled; or (four "
    "eyes) the key registered the version it would approve.",
    404: "Nothing of that name.",
    409: "Clashes with the current state (a name in use; a stage, approval or alias rule; a "
    "rollout's status).",
    413: "The body is larger than the route takes.",
    422: "A field is invalid: `<field>: <reason>`.",
    503: "The database is not configured, or cannot be reached (then with `Retry-After`); or "
    "the gateway runs no rollout controller.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}},
}

#: Every admin route can answer these: no key, or not the right one.
AUTH_ERRORS = (401, 403)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (and 401, 403), each an `ErrorBody`."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*AUTH_ERRORS, *statuses}):
        documented[status] = {"model": ErrorBody, "description": _WHY[status]}
        if status in _HEADERS:
            documented[status]["headers"] = _HEADERS[status]
    return documented


def error_handlers(app: FastAPI) -> None:
    """Answer seawall's errors and FastAPI's with an `ErrorBody`."""

    @app.exception_handler(SeawallError)
    async def seawall_error(_: Request, exc: SeawallError) -> JSONResponse:
        status = error_status(exc)
        headers = {}
        if (retry_after := retry_after_header(exc)) is not None:
            headers["retry-after"] = retry_after
        if status == 401:
            headers["www-authenticate"] = "Bearer"
        return _error(exc.message, status, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":  # loc: ("body", offset)
            reason = first.get("ctx", {}).get("error", "")
            return _error(f"body: not JSON ({reason} at offset {first['loc'][-1]})", 422)
        where, *path = first["loc"] or ("body",)
        # The field's name alone (`name`, `roles.0`), not where it was (body, query, path).
        field = ".".join(str(p) for p in path) or str(where)
        return _error(f"{field}: {first['msg']}", 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body"
            return _error(f"body: not JSON (not UTF-8: {exc.__cause__.reason})", 422)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path served by
            # several routes (GET and PUT of a circuit) allows all of theirs.
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["allow"] = ", ".join(_allowed_methods(request))
        return _error(str(exc.detail), exc.status_code, headers)


def _allowed_methods(request: Request) -> list[str]:
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] is not Match.NONE
        for method in route.methods or ()
    }
    return sorted(methods)


def _error(message: str, status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    # A field name comes from the request and may hold a lone surrogate, which UTF-8 cannot
    # encode: escape it rather than fail while reporting the error.
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": text}, status, headers=headers)
