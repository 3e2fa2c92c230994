"""The admin API: circuit breakers forced open or closed, behind the admin role."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from seawall.assemble import assemble
from seawall.clock import FakeClock
from seawall.config import parse_config
from seawall.gateway import Gateway

ADMIN_KEY = "admin-secret-0123456789"
APP_KEY = "app-secret-0123456789ab"
CONFIG = f"""
auth:
  keys:
    - {{name: ops, key: {ADMIN_KEY}, roles: [admin]}}
    - {{name: app, key: {APP_KEY}, roles: [consumer]}}
policy_defaults:
  circuit_breaker: {{consecutive_failures: 3, open_s: 30}}
models:
  - {{name: echo, backend: {{kind: mock}}}}
  - {{name: other, version: "2", backend: {{kind: mock}}, policies: {{circuit_breaker: null}}}}
"""
BODY = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}


async def client_for(config_text: str) -> AsyncIterator[httpx.AsyncClient]:
    gateway = Gateway(assemble(parse_config(config_text, environ={}), clock=FakeClock()))
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http
    finally:
        await gateway.shutdown()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for http in client_for(CONFIG):
        yield http


def as_admin() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_KEY}"}


async def test_lists_every_breaker(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/circuits", headers=as_admin())
    assert response.status_code == 200
    (circuit,) = response.json()
    assert circuit["target"] == "echo:1"
    assert (circuit["state"], circuit["mode"]) == ("closed", "automatic")


async def test_forcing_open_refuses_inference_and_automatic_restores_it(
    client: httpx.AsyncClient,
) -> None:
    app = {"x-api-key": APP_KEY}
    assert (await client.post("/v2/models/echo/infer", json=BODY, headers=app)).status_code == 200

    forced = await client.put(
        "/admin/circuits/echo/1", json={"mode": "forced_open"}, headers=as_admin()
    )
    assert forced.status_code == 200
    assert forced.json()["mode"] == "forced_open"
    refused = await client.post("/v2/models/echo/infer", json=BODY, headers=app)
    assert refused.status_code == 503
    assert "circuit breaker" in refused.json()["error"]
    assert int(refused.headers["retry-after"]) >= 1

    restored = await client.put(
        "/admin/circuits/echo/1", json={"mode": "automatic"}, headers=as_admin()
    )
    assert (restored.json()["state"], restored.json()["mode"]) == ("closed", "automatic")
    assert (await client.post("/v2/models/echo/infer", json=BODY, headers=app)).status_code == 200


async def test_forced_closed_is_reported(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/admin/circuits/echo/1", json={"mode": "forced_closed"}, headers=as_admin()
    )
    assert response.json()["mode"] == "forced_closed"
    got = await client.get("/admin/circuits/echo/1", headers=as_admin())
    assert got.json()["mode"] == "forced_closed"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"x-api-key": "wrong-key-0123456789"}, 401), ({"x-api-key": APP_KEY}, 403)],
)
async def test_only_admins_may_use_it(
    client: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    response = await client.get("/admin/circuits", headers=headers)
    assert response.status_code == status
    assert response.json()["error"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_breaker_is_a_404_listing_the_known_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/admin/circuits/other/2", headers=as_admin())
    assert response.status_code == 404
    assert response.json() == {"error": "no circuit breaker for 'other:2' (breakers: echo:1)"}


async def test_a_bad_mode_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/admin/circuits/echo/1", json={"mode": "half_open"}, headers=as_admin()
    )
    assert response.status_code == 422
    assert response.json()["error"].startswith("mode: ")


async def test_without_an_admin_key_the_admin_api_is_closed() -> None:
    text = "models: [{name: echo, backend: {kind: mock}, policies: {circuit_breaker: {}}}]"
    async for http in client_for(text):
        response = await http.get("/admin/circuits")
        assert response.status_code == 403
        assert "admin API is disabled" in response.json()["error"]


async def test_the_openapi_schema_describes_the_admin_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/admin/circuits/{model}/{version}" in schema["paths"]
    assert set(schema["paths"]["/admin/circuits/{model}/{version}"]) == {"get", "put"}
