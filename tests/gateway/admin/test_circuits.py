"""Circuit breakers over the admin API: read by viewers, forced by deployers, audited."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from seawall.assemble.control import ControlPlane
from seawall.gateway import Gateway
from seawall.store import AuditLog, StoreUnavailableError

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.gateway.admin.conftest import Serve

ADMIN_KEY = "admin-secret-0123456789"
APP_KEY = "app-secret-0123456789ab"
VIEW_KEY = "view-secret-0123456789a"
DEPLOY_KEY = "deploy-secret-012345678"
SCOPED_KEY = "scoped-secret-012345678"
KEYS = f"""
auth:
  keys:
    - {{name: ops, key: {ADMIN_KEY}, roles: [admin]}}
    - {{name: app, key: {APP_KEY}, roles: [consumer]}}
    - {{name: dashboards, key: {VIEW_KEY}, roles: [viewer]}}
    - {{name: release, key: {DEPLOY_KEY}, roles: [deployer]}}
    - {{name: echo-team, key: {SCOPED_KEY}, roles: [deployer], models: [echo]}}
"""
MODELS = """
policy_defaults:
  circuit_breaker: {consecutive_failures: 3, open_s: 30}
models:
  - {name: echo, backend: {kind: mock}}
  - {name: other, version: "2", backend: {kind: mock}, policies: {circuit_breaker: null}}
  - {name: third, backend: {kind: mock}}
"""
BODY = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}


@pytest.fixture
async def client(serve: Serve) -> httpx.AsyncClient:
    _, http = await serve(KEYS + MODELS)
    return http


def as_key(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def test_lists_every_breaker(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/circuits", headers=as_key(ADMIN_KEY))
    assert response.status_code == 200
    assert [c["target"] for c in response.json()] == ["echo:1", "third:1"]
    circuit = response.json()[0]
    assert (circuit["state"], circuit["mode"], circuit["calls"]) == ("closed", "automatic", 0)


async def test_forcing_open_refuses_inference_and_automatic_restores_it(
    client: httpx.AsyncClient,
) -> None:
    app = {"x-api-key": APP_KEY}
    assert (await client.post("/v2/models/echo/infer", json=BODY, headers=app)).status_code == 200

    forced = await client.put(
        "/admin/circuits/echo/1", json={"mode": "forced_open"}, headers=as_key(DEPLOY_KEY)
    )
    assert forced.status_code == 200
    assert forced.json()["mode"] == "forced_open"
    refused = await client.post("/v2/models/echo/infer", json=BODY, headers=app)
    assert refused.status_code == 503
    assert "circuit breaker" in refused.json()["error"]
    assert int(refused.headers["retry-after"]) >= 1

    restored = await client.put(
        "/admin/circuits/echo/1", json={"mode": "automatic"}, headers=as_key(ADMIN_KEY)
    )
    assert (restored.json()["state"], restored.json()["mode"]) == ("closed", "automatic")
    assert (await client.post("/v2/models/echo/infer", json=BODY, headers=app)).status_code == 200


async def test_forced_closed_is_reported_to_a_viewer(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/admin/circuits/echo/1", json={"mode": "forced_closed"}, headers=as_key(ADMIN_KEY)
    )
    assert response.json()["mode"] == "forced_closed"
    got = await client.get("/admin/circuits/echo/1", headers=as_key(VIEW_KEY))
    assert got.json()["mode"] == "forced_closed"


async def test_a_viewer_may_look_but_not_force(client: httpx.AsyncClient) -> None:
    assert (await client.get("/admin/circuits", headers=as_key(VIEW_KEY))).status_code == 200
    refused = await client.put(
        "/admin/circuits/echo/1", json={"mode": "forced_open"}, headers=as_key(VIEW_KEY)
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "API key 'dashboards' lacks the role 'deployer' (it has: viewer)"
    }


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"x-api-key": "wrong-key-0123456789"}, 401), ({"x-api-key": APP_KEY}, 403)],
)
async def test_a_consumer_or_no_key_may_not_use_it(
    client: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    response = await client.get("/admin/circuits", headers=headers)
    assert response.status_code == status
    assert response.json()["error"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    else:
        assert response.json()["error"] == (
            "API key 'app' lacks the role 'deployer' or 'viewer' (it has: consumer)"
        )


async def test_a_scoped_key_sees_and_forces_only_its_models(client: httpx.AsyncClient) -> None:
    scoped = as_key(SCOPED_KEY)
    listed = await client.get("/admin/circuits", headers=scoped)
    assert [c["target"] for c in listed.json()] == ["echo:1"]
    refused = await client.put(
        "/admin/circuits/third/1", json={"mode": "forced_open"}, headers=scoped
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "API key 'echo-team' may not act on model 'third:1' (it may on: echo)"
    }
    assert (await client.get("/admin/circuits/third/1", headers=scoped)).status_code == 403
    allowed = await client.put(
        "/admin/circuits/echo/1", json={"mode": "forced_open"}, headers=scoped
    )
    assert allowed.status_code == 200
    # An unknown version of its model: a 404 naming only the breakers the key may see.
    missing = await client.get("/admin/circuits/echo/9", headers=scoped)
    assert missing.json() == {"error": "no circuit breaker for 'echo:9' (breakers: echo:1)"}


async def test_an_unknown_breaker_is_a_404_listing_the_known_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/admin/circuits/other/2", headers=as_key(ADMIN_KEY))
    assert response.status_code == 404
    assert response.json() == {
        "error": "no circuit breaker for 'other:2' (breakers: echo:1, third:1)"
    }


async def test_a_bad_mode_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/admin/circuits/echo/1", json={"mode": "half_open"}, headers=as_key(ADMIN_KEY)
    )
    assert response.status_code == 422
    assert response.json()["error"].startswith("mode: ")


async def test_without_an_admin_capable_key_the_admin_api_is_closed(serve: Serve) -> None:
    consumers_only = f"auth: {{keys: [{{name: app, key: {APP_KEY}}}]}}\n"
    for text in ("", consumers_only):
        _, http = await serve(text + MODELS)
        for headers in ({}, {"x-api-key": APP_KEY}):
            response = await http.get("/admin/circuits", headers=headers)
            assert response.status_code == 403
            assert "admin API is disabled" in response.json()["error"]


async def test_a_viewer_key_alone_opens_the_read_routes(serve: Serve) -> None:
    _, http = await serve(
        f"auth: {{keys: [{{name: v, key: {VIEW_KEY}, roles: [viewer]}}]}}\n" + MODELS
    )
    assert (await http.get("/admin/circuits", headers=as_key(VIEW_KEY))).status_code == 200


async def test_a_mode_change_is_audited_with_the_key_as_actor(
    serve: Serve, database_url: str
) -> None:
    gateway, http = await serve(f'database_url: "{database_url}"\n' + KEYS + MODELS)
    for mode, secret in (("forced_open", DEPLOY_KEY), ("automatic", ADMIN_KEY)):
        response = await http.put(
            "/admin/circuits/echo/1", json={"mode": mode}, headers=as_key(secret)
        )
        assert response.status_code == 200
    # Refused changes are not recorded.
    await http.put("/admin/circuits/echo/1", json={"mode": "forced_open"}, headers=as_key(VIEW_KEY))
    await http.put(
        "/admin/circuits/nope/1", json={"mode": "forced_open"}, headers=as_key(ADMIN_KEY)
    )
    records = await (await control_of(gateway).audit()).records()
    assert [(r.actor, r.action, r.target, r.details) for r in records] == [
        ("release", "circuit.mode", "echo:1", {"mode": "forced_open"}),
        ("ops", "circuit.mode", "echo:1", {"mode": "automatic"}),
    ]


async def test_without_a_database_changes_are_made_but_not_recorded(serve: Serve) -> None:
    gateway, http = await serve(KEYS + MODELS)
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is None
    response = await http.put(
        "/admin/circuits/echo/1", json={"mode": "forced_open"}, headers=as_key(DEPLOY_KEY)
    )
    assert response.json()["mode"] == "forced_open"


async def test_a_change_the_audit_log_cannot_hold_is_not_made(
    serve: Serve, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, http = await serve(f'database_url: "{database_url}"\n' + KEYS + MODELS)

    async def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailableError("database sqlite:///x: unable to open database file")

    monkeypatch.setattr(AuditLog, "append", down)
    response = await http.put(
        "/admin/circuits/echo/1", json={"mode": "forced_open"}, headers=as_key(DEPLOY_KEY)
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"error": "database sqlite:///x: unable to open database file"}
    got = await http.get("/admin/circuits/echo/1", headers=as_key(ADMIN_KEY))
    assert got.json()["mode"] == "automatic"


def control_of(gateway: Gateway) -> ControlPlane:
    shared = gateway.assembly.shared
    assert shared is not None
    assert shared.control is not None
    return shared.control


async def test_the_openapi_schema_describes_the_circuit_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert set(schema["paths"]["/admin/circuits/{model}/{version}"]) == {"get", "put"}
    put = schema["paths"]["/admin/circuits/{model}/{version}"]["put"]
    assert set(put["responses"]) == {"200", "401", "403", "404", "422", "503"}
