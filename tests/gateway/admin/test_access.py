"""Who may call what: every admin route by every role (and no key, an unknown key), on real
database keys; model scopes; the `requires` factory; the disabled admin API."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, get_args

import pytest
from fastapi.routing import APIRoute

from seawall.clock import FakeClock
from seawall.config.release import parse_plan
from seawall.errors import ForbiddenError
from seawall.gateway import Gateway
from seawall.gateway.admin import (
    ROLES,
    Requires,
    Role,
    admin_app,
    check_model_scope,
    requires,
    route_roles,
)
from seawall.policies import ApiKey
from seawall.security import apikeys

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.gateway.admin.conftest import Serve

    from seawall.release.service import RolloutService

READERS = {"admin", "viewer", "deployer", "approver", "data-steward"}
#: A blob in the artifact store, and the model the registry routes act on.
BLOB = b"model bytes"
BLOB_SHA256 = hashlib.sha256(BLOB).hexdigest()
#: The expected table, written out here independently of the app: (method, path) → roles that
#: may call it. A route the app serves but this table lacks fails the test.
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("GET", "/admin/circuits"): {"admin", "deployer", "viewer"},
    ("GET", "/admin/circuits/{model}/{version}"): {"admin", "deployer", "viewer"},
    ("PUT", "/admin/circuits/{model}/{version}"): {"admin", "deployer"},
    ("GET", "/admin/keys"): {"admin"},
    ("POST", "/admin/keys"): {"admin"},
    ("DELETE", "/admin/keys/{name}"): {"admin"},
    ("POST", "/admin/keys/{name}/rotate"): {"admin"},
    ("GET", "/admin/audit/records"): {"admin"},
    ("GET", "/admin/audit/head"): {"admin"},
    ("GET", "/admin/audit/verify"): {"admin"},
    ("GET", "/admin/models"): READERS,
    ("POST", "/admin/models"): {"admin", "deployer"},
    ("GET", "/admin/models/{model}"): READERS,
    ("PATCH", "/admin/models/{model}"): {"admin"},
    ("GET", "/admin/models/{model}/versions"): READERS,
    ("POST", "/admin/models/{model}/versions"): {"admin", "deployer"},
    ("PUT", "/admin/artifacts/{sha256}"): {"admin", "deployer"},
    ("GET", "/admin/models/{model}/versions/{version}"): READERS,
    ("POST", "/admin/models/{model}/versions/{version}/stage"): {"admin", "deployer"},
    ("GET", "/admin/models/{model}/versions/{version}/approvals"): READERS,
    ("POST", "/admin/models/{model}/versions/{version}/approvals"): {"admin", "approver"},
    ("POST", "/admin/models/{model}/versions/{version}/rejections"): {"admin", "approver"},
    ("PUT", "/admin/models/{model}/aliases/{alias}"): {"admin", "deployer"},
    ("DELETE", "/admin/models/{model}/aliases/{alias}"): {"admin", "deployer"},
    ("GET", "/admin/models/{model}/history"): READERS,
    ("GET", "/admin/models/{model}/versions/{version}/lineage"): READERS,
    ("GET", "/admin/models/{model}/deployments"): READERS,
    ("POST", "/admin/rollouts"): {"admin", "deployer"},
    ("GET", "/admin/rollouts"): READERS,
    ("GET", "/admin/rollouts/{model}"): READERS,
    ("GET", "/admin/rollouts/{model}/history"): READERS,
    ("POST", "/admin/rollouts/{model}/pause"): {"admin", "deployer"},
    ("POST", "/admin/rollouts/{model}/resume"): {"admin", "deployer"},
    ("POST", "/admin/rollouts/{model}/abort"): {"admin", "deployer"},
    ("POST", "/admin/rollouts/{model}/promote"): {"admin", "deployer"},
    ("POST", "/admin/rollouts/{model}/metrics"): {"admin", "deployer"},
}
#: The rollout commands: each principal acts on a rollout of its own (`rollout_state`).
COMMANDS = ("pause", "resume", "abort", "promote")
ALL_ROLES = ("admin", "deployer", "approver", "data-steward", "consumer", "viewer")
PRINCIPALS = (*ALL_ROLES, "no key", "unknown key")

CONFIG = """
database_url: "{url}"
auth: {{database_keys: true, key_cache_ttl_s: 0}}
models: [{{name: echo, backend: {{kind: mock}}, policies: {{circuit_breaker: {{}}}}}}]
"""


def call_for(route: tuple[str, str], who: str) -> tuple[str, Any]:
    """A request to `route` that succeeds when `who` may make it (a victim key of its own, a
    version of its own to stage and aliases of its own; bytes: a raw body)."""
    slug = who.replace(" ", "-")
    victim = f"victim-{slug}"
    own = 2 + PRINCIPALS.index(who)  # the version `registry_state` registered for `who`
    versions = {"framework": "sklearn", "artifact": {"kind": "file", "files": {"m": BLOB_SHA256}}}
    return {
        ("GET", "/admin/circuits"): ("/admin/circuits", None),
        ("GET", "/admin/circuits/{model}/{version}"): ("/admin/circuits/echo/1", None),
        ("PUT", "/admin/circuits/{model}/{version}"): (
            "/admin/circuits/echo/1",
            {"mode": "forced_closed"},
        ),
        ("GET", "/admin/keys"): ("/admin/keys", None),
        ("POST", "/admin/keys"): ("/admin/keys", {"name": f"new-{victim}", "roles": ["viewer"]}),
        ("DELETE", "/admin/keys/{name}"): (f"/admin/keys/{victim}", None),
        ("POST", "/admin/keys/{name}/rotate"): (f"/admin/keys/{victim}-r/rotate", {}),
        ("GET", "/admin/audit/records"): ("/admin/audit/records?limit=5", None),
        ("GET", "/admin/audit/head"): ("/admin/audit/head", None),
        ("GET", "/admin/audit/verify"): ("/admin/audit/verify", None),
        ("GET", "/admin/models"): ("/admin/models", None),
        ("POST", "/admin/models"): ("/admin/models", {"name": f"new-{victim}"}),
        ("GET", "/admin/models/{model}"): ("/admin/models/m", None),
        ("PATCH", "/admin/models/{model}"): ("/admin/models/m", {"description": who}),
        ("GET", "/admin/models/{model}/versions"): ("/admin/models/m/versions", None),
        ("POST", "/admin/models/{model}/versions"): ("/admin/models/m/versions", versions),
        ("PUT", "/admin/artifacts/{sha256}"): (f"/admin/artifacts/{BLOB_SHA256}", BLOB),
        ("GET", "/admin/models/{model}/versions/{version}"): ("/admin/models/m/versions/1", None),
        ("POST", "/admin/models/{model}/versions/{version}/stage"): (
            f"/admin/models/m/versions/{own}/stage",
            {"stage": "staging"},
        ),
        ("GET", "/admin/models/{model}/versions/{version}/approvals"): (
            "/admin/models/m/versions/1/approvals",
            None,
        ),
        ("POST", "/admin/models/{model}/versions/{version}/approvals"): (
            "/admin/models/m/versions/1/approvals",
            {"comment": who},
        ),
        ("POST", "/admin/models/{model}/versions/{version}/rejections"): (
            "/admin/models/m/versions/1/rejections",
            {"comment": who},
        ),
        ("PUT", "/admin/models/{model}/aliases/{alias}"): (
            f"/admin/models/m/aliases/put-{slug}",
            {"version": 1},
        ),
        ("DELETE", "/admin/models/{model}/aliases/{alias}"): (
            f"/admin/models/m/aliases/del-{slug}",
            None,
        ),
        ("GET", "/admin/models/{model}/history"): ("/admin/models/m/history?limit=5", None),
        ("GET", "/admin/models/{model}/versions/{version}/lineage"): (
            "/admin/models/m/versions/1/lineage",
            None,
        ),
        ("GET", "/admin/models/{model}/deployments"): ("/admin/models/m/deployments", None),
        ("POST", "/admin/rollouts"): ("/admin/rollouts", rollout_plan(f"start-{slug}")),
        ("GET", "/admin/rollouts"): ("/admin/rollouts", None),
        ("GET", "/admin/rollouts/{model}"): ("/admin/rollouts/r", None),
        ("GET", "/admin/rollouts/{model}/history"): ("/admin/rollouts/r/history", None),
        **{
            ("POST", f"/admin/rollouts/{{model}}/{c}"): (
                f"/admin/rollouts/{c}-{slug}/{c}",
                {"reason": who},
            )
            for c in COMMANDS
        },
        ("POST", "/admin/rollouts/{model}/metrics"): (
            "/admin/rollouts/r/metrics",
            {"name": "conversion", "version": "2", "value": 0.5},
        ),
    }[route]


def rollout_plan(model: str) -> dict[str, Any]:
    """A plan moving `model`'s traffic to version 2 in one step."""
    return {
        "model": model,
        "stable_version": "1",
        "canary_version": "2",
        "steps": [{"set_weight": 50}],
    }


class Traffic:
    """A traffic target that goes along with everything."""

    async def set_canary_weight(self, percent: float) -> None:
        pass

    async def promote(self) -> None:
        pass

    async def rollback(self) -> None:
        pass


class NoApprovals:
    async def approved(self, model: str, version: str) -> bool:
        return False


async def rollout_state(gateway: Gateway, clock: FakeClock) -> RolloutService:
    """A rollout service on the gateway's database that runs no controller here (not the
    leader), a rollout `r`, and per principal a rollout to command (paused for resume)."""
    from seawall.release import StaticSource
    from seawall.release.service import RolloutService

    assert gateway.assembly.shared is not None
    control = gateway.assembly.shared.control
    assert control is not None

    async def not_leader() -> bool:
        return False

    service = RolloutService(
        await control.database(),
        await control.audit(),
        clock=clock,
        traffic=lambda plan: Traffic(),
        metrics=lambda plan: StaticSource(),
        approvals=NoApprovals(),
        leader=not_leader,
    )

    async def provide() -> RolloutService:
        return service

    control.provide_rollouts(provide)
    await service.start(parse_plan(rollout_plan("r")), actor="setup")
    for command in COMMANDS:
        for who in PRINCIPALS:
            model = f"{command}-{who.replace(' ', '-')}"
            await service.start(parse_plan(rollout_plan(model)), actor="setup")
            if command == "resume":
                await service.pause(model, actor="setup", reason="to be resumed")
    return service


async def registry_state(gateway: Gateway) -> None:
    """What the registry routes act on: model `m`, registered by another key (`setup`), its
    version 1 for everyone, a version and an alias to delete per principal, and the blob."""
    from seawall.registry import ArtifactInfo

    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    registry = await gateway.assembly.shared.control.registry()
    assert registry.blobs is not None
    registry.blobs.put(BLOB)
    artifact = ArtifactInfo("file", {"m": BLOB_SHA256}, len(BLOB), registry.blobs.root)
    await registry.create_model("m", actor="setup")
    for _ in range(1 + len(PRINCIPALS)):
        await registry.register_version("m", artifact, actor="setup", framework="sklearn")
    for who in PRINCIPALS:
        await registry.set_alias("m", f"del-{who.replace(' ', '-')}", 1, actor="setup")


async def database_keys(gateway: Gateway) -> dict[str, str | None]:
    """A database key per role (and the victims), each principal's secret (None: no key)."""
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    store = await gateway.assembly.shared.control.keys()
    secrets: dict[str, str | None] = {"no key": None, "unknown key": "sw_" + "x" * 43}
    for role in ALL_ROLES:
        _, secrets[role] = await store.create(f"{role}-key", [role], actor="test")
    for who in PRINCIPALS:
        victim = f"victim-{who.replace(' ', '-')}"
        await store.create(victim, ["consumer"], actor="test")
        await store.create(f"{victim}-r", ["consumer"], actor="test")
    return secrets


async def test_every_route_checks_every_role_on_database_keys(
    database_url: str, serve: Serve, clock: FakeClock
) -> None:
    gateway, http = await serve(CONFIG.format(url=database_url))
    secrets = await database_keys(gateway)
    await registry_state(gateway)
    rollouts = await rollout_state(gateway, clock)
    wrong: list[str] = []
    for route, allowed in ALLOWED.items():
        for who in PRINCIPALS:
            url, body = call_for(route, who)
            secret = secrets[who]
            headers = {} if secret is None else {"authorization": f"Bearer {secret}"}
            if isinstance(body, bytes):
                response = await http.request(route[0], url, content=body, headers=headers)
            else:
                response = await http.request(route[0], url, json=body, headers=headers)
            got = response.status_code
            if who in allowed:
                ok = 200 <= got < 300
            elif who in ("no key", "unknown key"):
                ok = got == 401 and response.headers.get("www-authenticate") == "Bearer"
            else:
                message = response.json()["error"]
                ok = got == 403 and all(repr(r) in message for r in route_roles_of(route))
            if not ok:
                wrong.append(f"{route[0]} {route[1]} as {who}: {got} {response.text}")
    await rollouts.aclose()
    assert wrong == []


def route_roles_of(route: tuple[str, str]) -> set[str]:
    """The roles a 403 must name: the allowed ones but admin, unless admin is the only one."""
    roles = ALLOWED[route] - {"admin"}
    return roles or {"admin"}


async def test_the_table_covers_every_admin_route_the_app_serves(serve: Serve) -> None:
    gateway, http = await serve("models: []")
    app = admin_app(gateway.assembly)
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and route.path.startswith("/admin")
        for method in route.methods
    }
    assert served == set(ALLOWED)
    # What the app enforces is the table (admin holds every role anyway).
    assert {k: set(v) | {"admin"} for k, v in route_roles(app).items()} == ALLOWED
    schema = (await http.get("/openapi.json")).json()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert documented == set(ALLOWED)


async def test_expired_and_revoked_database_keys_are_401(
    serve: Serve, database_url: str, clock: FakeClock
) -> None:
    gateway, http = await serve(CONFIG.format(url=database_url))
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    store = await gateway.assembly.shared.control.keys()
    soon = datetime.fromtimestamp(clock.time(), UTC) + timedelta(hours=1)
    _, expiring = await store.create("expiring", ["viewer"], expires_at=soon, actor="test")
    _, revoked = await store.create("revoked", ["admin"], actor="test")

    async def status(secret: str) -> int:
        headers = {"x-api-key": secret}
        return (await http.get("/admin/circuits", headers=headers)).status_code

    assert (await status(expiring), await status(revoked)) == (200, 200)
    await store.revoke("revoked", actor="test")
    clock.advance(3600)
    assert (await status(expiring), await status(revoked)) == (401, 401)


async def test_an_expired_configured_key_is_401_naming_it(serve: Serve, clock: FakeClock) -> None:
    until = datetime.fromtimestamp(clock.time() + 60, UTC).isoformat()
    key = f'{{name: ops, key: ops-secret-0123456789, roles: [admin], expires_at: "{until}"}}'
    _, http = await serve(f"auth: {{keys: [{key}]}}\nmodels: []\n")
    clock.advance(60)
    response = await http.get("/admin/circuits", headers={"x-api-key": "ops-secret-0123456789"})
    assert response.status_code == 401
    assert response.json() == {"error": "API key 'ops' has expired"}
    assert response.headers["www-authenticate"] == "Bearer"


async def test_every_route_on_a_model_checks_the_keys_model_scope(
    serve: Serve, database_url: str
) -> None:
    gateway, http = await serve(CONFIG.format(url=database_url))
    await registry_state(gateway)
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    store = await gateway.assembly.shared.control.keys()
    _, secret = await store.create("elsewhere", ["admin"], ["other-*"], actor="test")
    headers = {"x-api-key": secret}
    on_a_model = [route for route in ALLOWED if "{model}" in route[1]]
    assert len(on_a_model) == 23
    wrong = []
    for route in on_a_model:
        url, body = call_for(route, "admin")
        response = await http.request(route[0], url, json=body, headers=headers)
        if response.status_code != 403 or "may not act on model" not in response.json()["error"]:
            wrong.append(f"{route[0]} {route[1]}: {response.status_code} {response.text}")
    assert wrong == []
    # Nor does it see the model in the listing, nor create one outside its scope.
    assert (await http.get("/admin/models", headers=headers)).json() == []
    created = await http.post("/admin/models", json={"name": "m2"}, headers=headers)
    assert created.status_code == 403


async def test_a_key_for_some_models_may_not_manage_keys_or_read_the_audit_log(
    serve: Serve, database_url: str
) -> None:
    gateway, http = await serve(CONFIG.format(url=database_url))
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    store = await gateway.assembly.shared.control.keys()
    _, secret = await store.create("echo-admin", ["admin"], ["echo"], actor="test")
    headers = {"x-api-key": secret}
    for method, url in (("GET", "/admin/keys"), ("GET", "/admin/audit/head")):
        response = await http.request(method, url, headers=headers)
        assert response.status_code == 403
        assert response.json() == {
            "error": "API key 'echo-admin' is limited to some models (echo): this needs a key "
            "for every model"
        }
    # Its own model it may act on.
    forced = await http.put("/admin/circuits/echo/1", json={"mode": "forced_open"}, headers=headers)
    assert forced.status_code == 200


# --- the pieces ------------------------------------------------------------------------------


def test_the_roles_are_the_key_stores() -> None:
    assert set(ROLES) == set(get_args(Role)) == apikeys.ROLES == set(ALL_ROLES)


def test_requires_names_known_roles_only() -> None:
    assert requires("viewer", "deployer").roles == {"viewer", "deployer"}
    assert repr(requires("deployer", "viewer")) == "requires('deployer', 'viewer')"
    assert repr(requires("admin", every_model=True)) == "requires('admin', every_model=True)"
    with pytest.raises(ValueError, match="roles: one or more of admin, deployer"):
        requires()
    with pytest.raises(ValueError, match=r"got \['root'\]"):
        Requires("root")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scopes", "model", "version", "allowed"),
    [
        (None, "iris", None, True),
        ({"iris"}, "iris", "2", True),
        ({"iris"}, "iris", None, True),
        ({"iris:2"}, "iris", "2", True),
        ({"iris:2"}, "iris", "3", False),
        ({"iris:2"}, "iris", None, False),  # a key for one version may not act on them all
        ({"llm-*"}, "llm-chat", "1", True),
        ({"iris"}, "wine", "1", False),
    ],
)
def test_check_model_scope(
    scopes: set[str] | None, model: str, version: str | None, allowed: bool
) -> None:
    key = ApiKey.from_plaintext("k", "secret", roles={"deployer"}, models=scopes)
    if allowed:
        check_model_scope(key, model, version)
        return
    with pytest.raises(ForbiddenError) as refused:
        check_model_scope(key, model, version)
    target = model if version is None else f"{model}:{version}"
    may = ", ".join(sorted(scopes or ()))
    assert str(refused.value) == f"API key 'k' may not act on model {target!r} (it may on: {may})"
