"""The admin API's error bodies: `{"error": "<field>: <reason>"}` for every refusal, documented."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from seawall.errors import NotFoundError
from seawall.gateway.admin import ErrorBody, responses
from seawall.gateway.admin.errors import error_handlers

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.gateway.admin.conftest import Serve

ADMIN_KEY = "admin-secret-0123456789"
ADMIN = {"x-api-key": ADMIN_KEY, "content-type": "application/json"}
CONFIG = f"""
auth: {{keys: [{{name: ops, key: {ADMIN_KEY}, roles: [admin]}}]}}
models: [{{name: echo, backend: {{kind: mock}}, policies: {{circuit_breaker: {{}}}}}}]
"""


@pytest.fixture
async def client(serve: Serve) -> httpx.AsyncClient:
    return (await serve(CONFIG))[1]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", "body: Field required"),
        (b"{", "body: not JSON (Expecting property name enclosed in double quotes at offset 1)"),
        (b"[]", "body: Input should be a valid dictionary or object to extract fields from"),
        (b'{"mode": 1}', "mode: Input should be 'automatic', 'forced_open' or 'forced_closed'"),
        (b'{"mode": "automatic", "why": 1}', "why: Extra inputs are not permitted"),
        (b'{"mode": "\\ud800"}', "mode: Input should be a valid string, unable to parse raw data"),
        (b'{"mode": "\xff"}', "body: not JSON (not UTF-8: invalid start byte)"),
    ],
)
async def test_bad_bodies_name_the_field(
    client: httpx.AsyncClient, content: bytes, error: str
) -> None:
    response = await client.put("/admin/circuits/echo/1", content=content, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"].startswith(error)


async def test_a_message_utf8_cannot_encode_is_escaped_not_a_500() -> None:
    app = FastAPI()
    error_handlers(app)

    @app.get("/admin/x")
    async def fail() -> None:
        raise NotFoundError("no model '\ud800'")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as http:
        response = await http.get("/admin/x")
    assert (response.status_code, response.json()) == (404, {"error": "no model '\\ud800'"})


async def test_unknown_paths_and_methods_get_the_same_body(client: httpx.AsyncClient) -> None:
    missing = await client.get("/admin/nothing-here", headers=ADMIN)
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    wrong = await client.delete("/admin/circuits", headers=ADMIN)
    assert (wrong.status_code, wrong.json()) == (405, {"error": "Method Not Allowed"})
    assert wrong.headers["allow"] == "GET"
    # A path served by two routes: both their methods (Starlette alone names the first's).
    for path in ("/admin/circuits/echo/1", "/admin/keys"):
        response = await client.options(path, headers=ADMIN)
        assert response.status_code == 405
        assert response.headers["allow"] == {"/admin/keys": "GET, POST"}.get(path, "GET, PUT")


def test_responses_document_auth_errors_always_and_headers_where_sent() -> None:
    documented = responses(404, 503)
    assert list(documented) == [401, 403, 404, 503]
    assert all(d["model"] is ErrorBody for d in documented.values())
    assert set(documented[401]["headers"]) == {"WWW-Authenticate"}
    assert set(documented[503]["headers"]) == {"Retry-After"}
    assert "headers" not in documented[403]


async def test_every_documented_error_is_an_error_body(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = {s: r for s, r in operation["responses"].items() if s >= "400"}
            assert {"401", "403"} <= set(errors), (method, path)
            for response in errors.values():
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
