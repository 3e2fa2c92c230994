"""Traffic routing in a gateway: unversioned calls split between stable and canary, the override
header, shadow copies through the inner chain (no rate limit), a blue-green switch moving what
the unversioned name stands for, and per-version metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from seawall.assemble import assemble
from seawall.config import SeawallConfig, parse_config
from seawall.errors import ConfigError
from seawall.gateway import Gateway
from seawall.gateway.metrics import GatewayMetrics
from seawall.policies import PolicyTelemetry

BODY = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}


@pytest.fixture(autouse=True)
def _own_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Routed models get a rollout service, whose state goes to the default database: keep
    each test's in its own file, not in the working directory."""
    monkeypatch.setenv("SEAWALL_DATABASE_URL", f"sqlite:///{tmp_path / 'seawall.db'}")


def config(traffic: str, *, canary_error_rate: float = 1.0) -> SeawallConfig:
    return parse_config(
        f"""
auth:
  keys: [{{name: app, key: "k-0123456789abcdef"}}]
ratelimit:
  per_key: {{rate_per_s: 1000, burst: 1000}}
models:
  - {{name: m, version: "1", backend: {{kind: mock}}}}
  - {{name: m, version: "2", backend: {{kind: mock, error_rate: {canary_error_rate}, seed: 1}}}}
  - {{name: m, version: "3", backend: {{kind: mock}}}}
traffic:
  m: {traffic}
"""
    )


@contextlib.asynccontextmanager
async def served(cfg: SeawallConfig) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    metrics = GatewayMetrics()
    gateway = Gateway(
        assemble(cfg, on_event=PolicyTelemetry(metrics.registry)), cfg.server, metrics=metrics
    )
    await gateway.startup()
    try:
        transport = httpx.ASGITransport(app=gateway)
        headers = {"authorization": "Bearer k-0123456789abcdef"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw", headers=headers
        ) as client:
            yield gateway, client
    finally:
        await gateway.shutdown()


async def test_unversioned_calls_split_between_stable_and_canary() -> None:
    async with served(config('{stable: "1", canary: "2", canary_weight: 30}')) as (gw, client):
        statuses = [
            (await client.post("/v2/models/m/infer", json=BODY)).status_code for _ in range(600)
        ]
        errors = statuses.count(503)
        assert 120 <= errors <= 240  # 30% of 600 is 180; the canary always fails
        assert set(statuses) == {200, 503}
        router = gw.assembly.routers["m"]
        now = gw.clock.monotonic()
        canary, stable = router.stats("2").snapshot(now), router.stats("1").snapshot(now)
        assert canary.requests == errors
        assert canary.error_rate == 1.0
        assert (stable.requests, stable.errors) == (600 - errors, 0)
        # What each answer predicted is kept for prediction shift (the mock echoes 1.0, 2.0).
        assert router.stats("1").predictions(now, 60)[:2] == [1.0, 2.0]
        assert router.stats("2").predictions(now, 60) == []  # it never answered
        metrics = (await client.get("/metrics")).text
        assert f'seawall_requests_total{{model="m",status="503",version="2"}} {errors}.0' in metrics
        # A pinned version is not routed.
        assert (await client.post("/v2/models/m/versions/1/infer", json=BODY)).status_code == 200


async def test_the_override_header_and_the_weight_the_controller_moves() -> None:
    async with served(config('{stable: "1", canary: "2", canary_weight: 0}')) as (gw, client):
        picked = await client.post(
            "/v2/models/m/infer", json=BODY, headers={"x-seawall-variant": "canary"}
        )
        assert picked.status_code == 503
        assert picked.headers["x-seawall-variant"] == "canary"
        bad = await client.post("/v2/models/m/infer", json=BODY, headers={"x-seawall-variant": "9"})
        assert bad.status_code == 400
        assert "x-seawall-variant" in bad.json()["error"]
        split = gw.assembly.routers["m"].split
        split.set_canary_weight(100)
        assert (await client.post("/v2/models/m/infer", json=BODY)).status_code == 503
        split.set_canary(None)
        ok = await client.post("/v2/models/m/infer", json=BODY)
        assert ok.status_code == 200
        assert ok.headers["x-seawall-served-by"] == "m:1"


async def test_a_blue_green_switch_moves_the_unversioned_name() -> None:
    cfg = config('{stable: "1", canary: "2"}', canary_error_rate=0.0)
    async with served(cfg) as (gw, client):
        assert gw.assembly.repository.get("m").version == "1"
        gw.assembly.routers["m"].split.switch("2")
        assert gw.assembly.repository.get("m").version == "2"
        assert gw.assembly.repository.default_version("m") == "2"
        response = await client.post("/v2/models/m/infer", json=BODY)
        assert response.headers["x-seawall-served-by"] == "m:2"
        metadata = await client.get("/v2/models/m")
        assert metadata.json()["name"] == "m"


async def test_shadow_copies_go_through_the_inner_chain_without_the_rate_limit() -> None:
    cfg = parse_config(
        """
auth:
  keys: [{name: app, key: "k-0123456789abcdef"}]
ratelimit:
  per_key: {rate_per_s: 0.001, burst: 20}
models:
  - {name: m, version: "1", backend: {kind: mock}}
  - {name: m, version: "3", backend: {kind: mock}}
traffic:
  m: {stable: "1", shadow: {version: "3", sample_rate: 1.0, max_concurrency: 64}}
"""
    )
    async with served(cfg) as (gw, client):
        statuses = [
            (await client.post("/v2/models/m/infer", json=BODY)).status_code for _ in range(20)
        ]
        assert statuses == [200] * 20  # 20 calls, 20 copies: the copies took no tokens
        shadow = gw.assembly.routers["m"].shadow
        assert shadow is not None
        await shadow.drain()
        snapshot = shadow.stats.snapshot()
        assert snapshot.mirrored == 20
        assert snapshot.agreed == 20
        assert (await client.post("/v2/models/m/infer", json=BODY)).status_code == 429


def test_traffic_names_configured_versions() -> None:
    with pytest.raises(ConfigError, match=r"traffic\.m\.canary: 'm' version '7' is not a config"):
        config('{stable: "1", canary: "7"}')
    with pytest.raises(ConfigError, match="canary: must differ from stable"):
        config('{stable: "1", canary: "1"}')
    with pytest.raises(ConfigError, match="canary_weight: needs a canary"):
        config('{stable: "1", canary_weight: 5}')


async def test_closing_the_gateway_cancels_shadow_copies_in_flight() -> None:
    cfg = parse_config(
        """
models:
  - {name: m, version: "1", backend: {kind: mock}}
  - {name: m, version: "3", backend: {kind: mock, latency_ms: 60000}}
traffic:
  m: {stable: "1", shadow: {version: "3", sample_rate: 1.0, timeout_s: 600}}
"""
    )
    metrics = GatewayMetrics()
    gateway = Gateway(assemble(cfg), cfg.server, metrics=metrics)
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await asyncio.wait_for(client.post("/v2/models/m/infer", json=BODY), 10)
        assert response.status_code == 200  # while its copy hangs for a minute
    shadow = gateway.assembly.routers["m"].shadow
    assert shadow is not None
    assert shadow.in_flight == 1
    await asyncio.wait_for(gateway.shutdown(), 10)
    assert shadow.in_flight == 0
