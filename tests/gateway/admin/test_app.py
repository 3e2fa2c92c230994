"""admin_app: built over an assembly, it refuses to serve a route no role check guards."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI

from seawall.assemble import assemble
from seawall.config import parse_config
from seawall.gateway.admin import admin_app, requires
from seawall.gateway.admin import app as admin_module
from seawall.policies import ApiKey

CONFIG = "auth: {keys: [{name: ops, key: admin-secret-0123456789, roles: [admin]}]}\nmodels: []\n"


def build() -> FastAPI:
    return admin_app(assemble(parse_config(CONFIG, environ={})))


def test_the_app_serves_its_schema_and_no_swagger_page() -> None:
    app = build()
    assert (app.openapi_url, app.docs_url, app.redoc_url) == ("/openapi.json", None, None)
    schema = app.openapi()
    assert schema["info"]["title"] == "seawall admin API"
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}


def test_a_route_without_requires_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def unguarded(app: FastAPI) -> None:
        @app.get("/admin/open")
        async def open_door() -> str:
            return "anyone"

    monkeypatch.setattr(admin_module, "audit_routes", unguarded)
    with pytest.raises(
        RuntimeError, match=r"admin routes without requires\(...\): GET /admin/open"
    ):
        build()


def test_a_guarded_route_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    def guarded(app: FastAPI) -> None:
        @app.get("/admin/approvals")
        async def approvals(key: Annotated[ApiKey, Depends(requires("approver"))]) -> str:
            return key.name

    monkeypatch.setattr(admin_module, "audit_routes", guarded)
    assert any(getattr(r, "path", "") == "/admin/approvals" for r in build().routes)


def test_routes_from_an_included_router_or_outside_admin_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def included(app: FastAPI) -> None:
        router = APIRouter(prefix="/admin/models")

        @router.get("")
        async def models() -> list[str]:
            return []

        app.include_router(router)

    monkeypatch.setattr(admin_module, "audit_routes", included)
    # Recent FastAPI keeps an included router's routes apart (unseen); older ones copy them
    # into the app (then they have no requires). Refused either way.
    with pytest.raises(RuntimeError, match="admin routes"):
        build()

    def outside(app: FastAPI) -> None:
        @app.get("/models")
        async def models(key: Annotated[ApiKey, Depends(requires("viewer"))]) -> list[str]:
            return []

    monkeypatch.setattr(admin_module, "audit_routes", outside)
    with pytest.raises(RuntimeError, match="admin routes outside /admin/: /models"):
        build()
