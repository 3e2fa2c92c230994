"""Who may call an admin route: `requires(*roles)`, model scopes, and the database a route needs.

Each route names the roles that may call it with a `requires` dependency, whose value is the
caller's key (its name is the audit actor); a route that acts on one model also checks the key's
model scope, and one that needs the database takes `Control` after the key:

    Deployer = Annotated[ApiKey, Depends(requires("deployer"))]

    def circuit_routes(app: FastAPI, assembly: Assembly) -> None:
        @app.put("/admin/circuits/{model}/{version}", responses=responses(404, 422, 503))
        async def set_circuit(model: str, version: str, key: Deployer) -> CircuitView:
            check_model_scope(key, model, version)
            ...

Routes go on the app itself (`app.get`, `app.put`...), not through `include_router`. Routes
about no one model (keys, the audit log) use `requires(..., every_model=True)`; a listing of
many models shows those `key.may_call`. The roles stay on the route, and `route_roles(app)`
reads them back: the app refuses to build with an admin route that has none, so no route is
open by accident. A missing, unknown or
expired key is 401 (with `WWW-Authenticate: Bearer`); a key without one of the roles (admin holds
every role), or outside the model's scope, is 403 naming what it lacks. If no key could ever
pass (no configured key holds a role any route accepts, and `auth.database_keys` is off), every
call is 403: the admin API is disabled.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, FastAPI, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from seawall.assemble.control import ControlPlane
from seawall.clock import Clock
from seawall.errors import ForbiddenError
from seawall.gateway.calls import credentials_of
from seawall.policies import ApiKey, AuthPolicy
from seawall.policies.auth import KeyLookup

__all__ = [
    "ROLES",
    "AdminAccess",
    "Control",
    "Requires",
    "Role",
    "check_model_scope",
    "control_plane",
    "requires",
    "route_roles",
]

#: The roles a key may hold (`seawall.security.apikeys.ROLES`; a test keeps the two equal).
Role = Literal["admin", "deployer", "approver", "data-steward", "consumer", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)

_BEARER = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")
_API_KEY = APIKeyHeader(name="x-api-key", auto_error=False, description="Or the key itself.")

#: Where `admin_app` keeps the `AdminAccess` and the `ControlPlane` (`app.state`).
ACCESS_STATE = "admin_access"
CONTROL_STATE = "control"


class Requires:
    """A FastAPI dependency: the caller's key, if it holds one of `roles` (else 401 or 403).

    With `every_model`, a key limited to some models is refused too: for routes that are not
    about one model (keys, the audit log), where a scope could not be checked.
    """

    def __init__(self, *roles: Role, every_model: bool = False) -> None:
        unknown = sorted(set(roles) - set(ROLES))
        if not roles or unknown:
            raise ValueError(f"roles: one or more of {', '.join(ROLES)}; got {list(roles)}")
        self.roles = frozenset(roles)
        self.every_model = every_model

    async def __call__(
        self,
        request: Request,
        # Only for the OpenAPI schema (its security schemes); `authorize` reads the headers.
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
        _api_key: Annotated[str | None, Security(_API_KEY)] = None,
    ) -> ApiKey:
        access: AdminAccess = getattr(request.app.state, ACCESS_STATE)
        return await access.authorize(request, self)

    def __repr__(self) -> str:
        every = ", every_model=True" if self.every_model else ""
        return f"requires({', '.join(map(repr, sorted(self.roles)))}{every})"


def requires(*roles: Role, every_model: bool = False) -> Requires:
    """The dependency a route declares to admit keys holding one of `roles` (and admins)."""
    return Requires(*roles, every_model=every_model)


def check_model_scope(key: ApiKey, model: str, version: str | None = None) -> None:
    """403 unless `key` may act on `model` (on `model:version` when a version is given)."""
    target = model if version is None else f"{model}:{version}"
    if not key.may_call(target):
        scopes = ", ".join(sorted(key.models or ()))
        raise ForbiddenError(
            f"API key {key.name!r} may not act on model {target!r} (it may on: {scopes})"
        )


class AdminAccess:
    """Authenticates admin calls with `policy` (configured keys, the database's); None: refuse."""

    def __init__(self, policy: AuthPolicy[Any, Any] | None) -> None:
        self._policy = policy

    @classmethod
    def build(
        cls, app: FastAPI, keys: tuple[ApiKey, ...], lookup: KeyLookup | None, clock: Clock
    ) -> AdminAccess:
        """Disabled unless database keys are on or a configured key could pass one of `app`'s
        routes: the admin API is never open by accident, nor half-configured in silence."""
        wanted = frozenset[str]().union(*route_roles(app).values())
        if lookup is None and not any(k.has_role(role) for k in keys for role in wanted):
            return cls(None)
        return cls(AuthPolicy(keys=keys, lookup=lookup, clock=clock))

    async def authorize(self, request: Request, requirement: Requires) -> ApiKey:
        """The caller's key if it meets `requirement`; else 401 or 403."""
        if self._policy is None:
            raise ForbiddenError(
                "the admin API is disabled: configure an API key with an admin role (admin, "
                "deployer, viewer...) in auth.keys, or set auth.database_keys"
            )
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = await self._policy.authenticate(credentials_of(headers))
        if not any(key.has_role(role) for role in requirement.roles):
            needed = " or ".join(repr(role) for role in sorted(requirement.roles))
            has = ", ".join(sorted(key.roles))
            raise ForbiddenError(f"API key {key.name!r} lacks the role {needed} (it has: {has})")
        if requirement.every_model and key.models is not None:
            scopes = ", ".join(sorted(key.models))
            raise ForbiddenError(
                f"API key {key.name!r} is limited to some models ({scopes}): this needs a key "
                "for every model"
            )
        return key


async def control_plane(request: Request) -> ControlPlane:
    """The gateway's database, for routes that need one; 503 if none is configured."""
    control: ControlPlane | None = getattr(request.app.state, CONTROL_STATE)
    if control is None:
        raise HTTPException(
            503, "no database is configured: set database_url (or auth.database_keys)"
        )
    return control


#: A route's parameter for the database (declare it after the key, so auth is checked first).
Control = Annotated[ControlPlane, Depends(control_plane)]


def route_roles(app: FastAPI) -> dict[tuple[str, str], frozenset[str]]:
    """Each `/admin` route's (method, path) and the roles its `requires` admits (empty: none)."""
    table: dict[tuple[str, str], frozenset[str]] = {}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/admin"):
            found = list(_requirements(route.dependant))
            roles = frozenset[str]().union(*(r.roles for r in found))
            for method in route.methods or ():
                table[(method, route.path)] = roles
    return table


def _requirements(dependant: Dependant) -> Iterable[Requires]:
    if isinstance(dependant.call, Requires):
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _requirements(sub)
