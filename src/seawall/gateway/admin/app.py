"""`admin_app`: the admin API's FastAPI app, its routes and who may call each."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from seawall import __version__
from seawall.assemble import Assembly
from seawall.gateway.admin.access import ACCESS_STATE, CONTROL_STATE, AdminAccess, route_roles
from seawall.gateway.admin.artifacts import artifact_routes
from seawall.gateway.admin.audit import audit_routes
from seawall.gateway.admin.circuits import circuit_routes
from seawall.gateway.admin.errors import error_handlers
from seawall.gateway.admin.keys import key_routes
from seawall.gateway.admin.registry import registry_routes
from seawall.gateway.admin.rollouts import rollout_routes

__all__ = ["admin_app"]


def admin_app(assembly: Assembly) -> FastAPI:
    """The admin API over `assembly`: its breakers, and its database's keys, audit log, model
    registry and rollouts."""
    app = FastAPI(
        title="seawall admin API",
        version=__version__,
        docs_url=None,  # the Swagger page loads scripts from a CDN: nothing that works offline
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    circuit_routes(app, assembly)
    key_routes(app)
    audit_routes(app)
    registry_routes(app)
    artifact_routes(app)
    rollout_routes(app)
    _check_every_route_has_roles(app)
    shared = assembly.shared
    lookup = shared.key_lookup if shared is not None else None
    clock = assembly.repository.clock
    setattr(app.state, ACCESS_STATE, AdminAccess.build(app, assembly.api_keys, lookup, clock))
    setattr(app.state, CONTROL_STATE, shared.control if shared is not None else None)
    error_handlers(app)
    return app


def _check_every_route_has_roles(app: FastAPI) -> None:
    """Refuse to build an admin API with a route that no `requires` guards.

    Routes are added to the app itself (`app.get`, `app.put`...), not with `include_router`,
    whose routes recent FastAPI versions keep out of `app.routes`, where this looks.
    """
    unseen = [
        r
        for r in app.routes
        if not isinstance(r, APIRoute) and getattr(r, "path", None) != app.openapi_url
    ]
    if unseen:
        raise RuntimeError(f"admin routes this cannot check: {unseen} (add them with app.get...)")
    open_routes = sorted(f"{m} {p}" for (m, p), roles in route_roles(app).items() if not roles)
    if open_routes:
        raise RuntimeError(f"admin routes without requires(...): {', '.join(open_routes)}")
    outside = [
        r.path for r in app.routes if isinstance(r, APIRoute) and not r.path.startswith("/admin/")
    ]
    if outside:
        raise RuntimeError(f"admin routes outside /admin/: {', '.join(outside)}")
