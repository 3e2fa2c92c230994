"""Keys made by `seawall keys create` admit calls (and admin calls) to a running gateway;
revoked, they stop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import Launch, RunSeawall

BODY = {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}


def create(seawall_cli: RunSeawall, url: str, name: str, role: str) -> str:
    result = seawall_cli("keys", "create", name, "--role", role, "--url", url)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_database_keys_are_accepted_until_revoked(
    launch: Launch, seawall_cli: RunSeawall, tmp_path: Path, database_url: str
) -> None:
    assert seawall_cli("db", "upgrade", "--url", database_url).returncode == 0
    consumer = create(seawall_cli, database_url, "app", "consumer")
    viewer = create(seawall_cli, database_url, "dashboards", "viewer")
    admin = create(seawall_cli, database_url, "ops", "admin")
    config = tmp_path / "seawall.yaml"
    config.write_text(
        "server: {log_level: info}\n"
        f'database_url: "{database_url}"\n'
        "auth: {database_keys: true, key_cache_ttl_s: 0.2}\n"
        "models: [{name: echo, backend: {kind: mock}}]\n"
    )
    gateway = launch(config)

    def call(secret: str | None) -> httpx.Response:
        headers = {} if secret is None else {"authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
            return http.post("/v2/models/echo/infer", json=BODY, headers=headers)

    assert call(consumer).status_code == 200
    assert call(None).status_code == 401
    assert call("sw_" + "x" * 43).status_code == 401
    assert call(viewer).status_code == 403  # a known key without the consumer role

    def admin_call(secret: str) -> int:
        with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
            headers = {"authorization": f"Bearer {secret}"}
            return http.get("/admin/circuits", headers=headers).status_code

    assert admin_call(admin) == 200  # the admin API takes database keys too
    assert admin_call(consumer) == 403

    assert seawall_cli("keys", "revoke", "app", "--url", database_url).returncode == 0
    deadline = time.monotonic() + 10.0
    while call(consumer).status_code == 200:  # the gateway's cache keeps answers 0.2 s
        assert time.monotonic() < deadline, "a revoked key still works after 10 s"
        time.sleep(0.1)
    assert call(consumer).status_code == 401
    assert consumer not in gateway.log()  # secrets never reach the log
