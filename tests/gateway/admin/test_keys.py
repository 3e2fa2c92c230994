"""API keys over the admin API: issued with the secret shown once, listed, revoked, rotated,
each change audited with the caller's key as actor; the errors name the field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from seawall.gateway import Gateway
from seawall.gateway.admin import keys
from seawall.security import apikeys
from seawall.security.apikeys import hash_secret

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.gateway.admin.conftest import Serve

ADMIN_KEY = "admin-secret-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CONFIG = f"""
database_url: "{{url}}"
auth:
  keys: [{{{{name: ops, key: {ADMIN_KEY}, roles: [admin]}}}}]
  database_keys: true
  key_cache_ttl_s: 0
models: [{{{{name: echo, backend: {{{{kind: mock}}}}}}}}]
"""
BODY = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}


@pytest.fixture
async def started(serve: Serve, database_url: str) -> tuple[Gateway, httpx.AsyncClient]:
    return await serve(CONFIG.format(url=database_url))


@pytest.fixture
def client(started: tuple[Gateway, httpx.AsyncClient]) -> httpx.AsyncClient:
    return started[1]


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/admin/keys", json=body, headers=ADMIN)


async def test_a_created_key_is_shown_once_and_works_at_once(client: httpx.AsyncClient) -> None:
    created = await create(client, name="app", roles=["consumer"], models=["echo"])
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    issued = created.json()
    secret = issued.pop("secret")
    assert secret.startswith("sw_")
    assert issued["prefix"] == secret[:8]
    assert (issued["name"], issued["roles"], issued["models"]) == ("app", ["consumer"], ["echo"])
    assert (issued["created_by"], issued["revoked_at"], issued["expires_at"]) == ("ops", None, None)

    call = await client.post("/v2/models/echo/infer", json=BODY, headers={"x-api-key": secret})
    assert call.status_code == 200

    listed = (await client.get("/admin/keys", headers=ADMIN)).json()
    assert listed == [issued]  # never a secret, nor its hash
    assert secret not in str(listed)
    assert hash_secret(secret) not in str(listed)


async def test_revoked_keys_stop_and_are_listed_only_on_request(client: httpx.AsyncClient) -> None:
    secret = (await create(client, name="app", roles=["consumer"])).json()["secret"]
    revoked = await client.delete("/admin/keys/app", headers=ADMIN)
    assert revoked.status_code == 200
    ((record),) = revoked.json()
    assert record["name"] == "app"
    assert record["revoked_at"] is not None
    call = await client.post("/v2/models/echo/infer", json=BODY, headers={"x-api-key": secret})
    assert call.status_code == 401
    assert (await client.get("/admin/keys", headers=ADMIN)).json() == []
    everything = await client.get("/admin/keys?include_revoked=true", headers=ADMIN)
    assert [k["name"] for k in everything.json()] == ["app"]


async def test_rotation_gives_a_new_secret_and_the_old_one_works_for_the_overlap(
    client: httpx.AsyncClient,
) -> None:
    old = (await create(client, name="app", roles=["consumer"])).json()["secret"]
    rotated = await client.post("/admin/keys/app/rotate", json={"overlap_s": 60}, headers=ADMIN)
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    new = rotated.json()["secret"]
    assert new != old
    for secret in (old, new):  # the FakeClock stands still: still within the overlap
        headers = {"x-api-key": secret}
        assert (await client.post("/v2/models/echo/infer", json=BODY, headers=headers)).is_success
    # Without a body: no overlap, the previous secret stops at once.
    again = await client.post("/admin/keys/app/rotate", headers=ADMIN)
    assert again.status_code == 200
    headers = {"x-api-key": new}
    assert (
        await client.post("/v2/models/echo/infer", json=BODY, headers=headers)
    ).status_code == 401


async def test_every_change_is_audited_with_the_callers_key_as_actor(
    started: tuple[Gateway, httpx.AsyncClient],
) -> None:
    gateway, client = started
    secret = (await create(client, name="ops-2", roles=["admin"])).json()["secret"]
    as_ops2 = {"x-api-key": secret}
    await client.post("/admin/keys", json={"name": "app", "roles": ["viewer"]}, headers=as_ops2)
    await client.post("/admin/keys/app/rotate", headers=as_ops2)
    await client.delete("/admin/keys/app", headers=ADMIN)
    assert gateway.assembly.shared is not None
    assert gateway.assembly.shared.control is not None
    records = await (await gateway.assembly.shared.control.audit()).records()
    assert [(r.actor, r.action, r.target) for r in records] == [
        ("ops", "key.create", "ops-2"),
        ("ops-2", "key.create", "app"),
        ("ops-2", "key.rotate", "app"),
        ("ops", "key.revoke", "app"),
    ]


BAD_BODIES: list[tuple[dict[str, Any], int, str]] = [
    ({"name": "taken", "roles": ["viewer"]}, 409,
     "name: a key named 'taken' exists (revoke or rotate it)"),
    ({"name": "x", "roles": ["root"]}, 422, "roles.0: Input should be 'admin', "),
    ({"name": "x", "roles": []}, 422, "roles: List should have at least 1 item"),
    ({"name": "x"}, 422, "roles: Field required"),
    ({"name": " x", "roles": ["viewer"]}, 422, "name: String should match pattern"),
    ({"name": "x\x00", "roles": ["viewer"]}, 422, "name: printable with no outer spaces"),
    ({"name": "a/b", "roles": ["viewer"]}, 422, "name: String should match pattern"),
    ({"name": "x", "roles": ["viewer"], "models": []}, 422, "models: List should have at"),
    ({"name": "x", "roles": ["viewer"], "models": ["\x00"]}, 422, "models: non-empty name"),
    ({"name": "x", "roles": ["viewer"], "models": [""]}, 422, "models.0: String should have"),
    ({"name": "x", "roles": ["viewer"], "expires_at": "2020-01-01T00:00:00Z"}, 422,
     "expires_at: must be in the future, got 2020-01-01T00:00:00+00:00"),
    ({"name": "x", "roles": ["viewer"], "expires_at": "2030-01-01T00:00:00"}, 422,
     "expires_at: Input should have timezone info"),
    ({"name": "x", "roles": ["viewer"], "expires_at": "9999-12-31T23:00:00-05:00"}, 422,
     "expires_at: Value error, must be within years 1 to 9999 in UTC"),
    ({"name": "x", "roles": ["viewer"], "owner": "me"}, 422, "owner: Extra inputs"),
    ({"name": "x", "roles": ["viewer"], "expires_at": 4102444800}, 422,
     "expires_at: Value error, a date-time with a time zone, as 2027-01-01T00:00:00Z"),
]  # fmt: skip


async def test_bad_input_names_the_field_and_writes_nothing(client: httpx.AsyncClient) -> None:
    await create(client, name="taken", roles=["viewer"])
    for body, status, error in BAD_BODIES:
        response = await client.post("/admin/keys", json=body, headers=ADMIN)
        assert (response.status_code, response.json()["error"][: len(error)]) == (status, error)
    listed = (await client.get("/admin/keys", headers=ADMIN)).json()
    assert [k["name"] for k in listed] == ["taken"]


async def test_unknown_names_are_404(client: httpx.AsyncClient) -> None:
    for name in ("nobody", "a%00b"):
        shown = "'a\\x00b'" if name == "a%00b" else f"'{name}'"
        for method, url in (
            ("DELETE", f"/admin/keys/{name}"),
            ("POST", f"/admin/keys/{name}/rotate"),
        ):
            response = await client.request(method, url, headers=ADMIN)
            assert response.status_code == 404
            assert response.json() == {"error": f"name: no key named {shown} is active"}


def test_the_overlap_limit_is_the_key_stores() -> None:
    assert keys.MAX_OVERLAP_S == apikeys.MAX_OVERLAP_S


async def test_a_bad_overlap_names_the_field(client: httpx.AsyncClient) -> None:
    await create(client, name="app", roles=["viewer"])
    for overlap, error in (
        (-1, "overlap_s: Input should be greater than or equal to 0"),
        (1e12, "overlap_s: Input should be less than or equal to 31536000"),
        ("soon", "overlap_s: Input should be a valid number"),
        (False, "overlap_s: Input should be a valid number"),
    ):
        body = {"overlap_s": overlap}
        response = await client.post("/admin/keys/app/rotate", json=body, headers=ADMIN)
        assert (response.status_code, response.json()["error"][: len(error)]) == (422, error)


async def test_without_a_database_the_key_routes_are_503(serve: Serve) -> None:
    text = f"auth: {{keys: [{{name: ops, key: {ADMIN_KEY}, roles: [admin]}}]}}\nmodels: []\n"
    _, client = await serve(text)
    for method, url in (("GET", "/admin/keys"), ("DELETE", "/admin/keys/app")):
        response = await client.request(method, url, headers=ADMIN)
        assert response.status_code == 503
        assert response.json() == {
            "error": "no database is configured: set database_url (or auth.database_keys)"
        }
    created = await create(client, name="app", roles=["viewer"])
    assert created.status_code == 503
    # Auth comes first: without a key, 401 rather than 503.
    assert (await client.get("/admin/keys")).status_code == 401
