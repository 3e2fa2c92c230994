"""The rollout service in a gateway: a failing canary is rolled back, a healthy one promoted,
a plan that names no routed model is refused, and a restarted gateway resumes a rollout at its
step. Real routers and mock versions, the database on SQLite and PostgreSQL, FakeClock."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from seawall.assemble import assemble
from seawall.clock import FakeClock
from seawall.config import SeawallConfig, parse_config
from seawall.config.release import parse_plan
from seawall.errors import InvalidInputError, NotFoundError
from seawall.gateway import Gateway
from seawall.release.service import RolloutService
from seawall.store import AuditLog, Database

BODY = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}
PLAN = {
    "model": "m",
    "stable_version": "1",
    "canary_version": "2",
    "steps": [
        {"set_weight": 20},
        {
            "analysis": {
                "interval_s": 10,
                "count": 3,
                "failure_limit": 0,
                "guardrails": [{"name": "errors", "metric": "error_rate", "max": 0.05}],
            }
        },
        {"set_weight": 50},
        {"pause": {"duration_s": 30}},
    ],
}


def config(database_url: str, canary_error_rate: float) -> SeawallConfig:
    return parse_config(
        f"""
database_url: {json.dumps(database_url)}
release: {{min_requests: 5}}
models:
  - {{name: m, version: "1", backend: {{kind: mock}}}}
  - {{name: m, version: "2", backend: {{kind: mock, error_rate: {canary_error_rate}, seed: 3}}}}
traffic:
  m: {{stable: "1", sticky_header: x-user}}
"""
    )


@contextlib.asynccontextmanager
async def served(
    cfg: SeawallConfig, clock: FakeClock
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient, RolloutService]]:
    gateway = Gateway(assemble(cfg, clock=clock), cfg.server)
    await gateway.startup()
    try:
        shared = gateway.assembly.shared
        assert shared is not None
        assert shared.control is not None
        service = await shared.control.rollouts()
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield gateway, client, service
    finally:
        await gateway.shutdown()


async def traffic(client: httpx.AsyncClient, calls: int) -> list[int]:
    statuses = []
    for i in range(calls):
        response = await client.post("/v2/models/m/infer", json=BODY, headers={"x-user": f"u{i}"})
        statuses.append(response.status_code)
    return statuses


async def settle(done: Callable[[], bool]) -> None:
    """Let the controllers' database writes (worker threads) land."""
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.01)


async def advance(clock: FakeClock, client: httpx.AsyncClient, seconds: float) -> None:
    """Move time in 5 s steps, with traffic in each, so every window has calls."""
    for _ in range(int(seconds // 5)):
        await traffic(client, 60)
        clock.advance(5)
        await asyncio.sleep(0.05)


async def test_a_failing_canary_is_rolled_back_and_audited(
    database_url: str, migrated: Database
) -> None:
    clock = FakeClock()
    async with served(config(database_url, 1.0), clock) as (gateway, client, service):
        record = await service.start(parse_plan(PLAN), actor="cli:dana")
        assert record.status == "running"
        split = gateway.assembly.routers["m"].split
        await settle(lambda: split.canary_weight == 20)
        assert split.canary == "2"
        await advance(clock, client, 20)
        state = await service.get("m")
        await settle(lambda: split.canary is None)
        state = await service.get("m")
        assert state.status == "rolled_back"
        assert split.canary is None
        statuses = await traffic(client, 50)
        assert statuses == [200] * 50  # after the rollback, only the stable version answers
    actions = [r.action for r in await AuditLog(migrated).records(limit=1000)]
    assert "rollout.start" in actions
    assert "rollout.rolled_back" in actions


async def test_a_healthy_canary_is_promoted_and_becomes_the_stable_version(
    database_url: str, migrated: Database
) -> None:
    clock = FakeClock()
    async with served(config(database_url, 0.0), clock) as (gateway, client, service):
        await service.start(parse_plan(PLAN), actor="cli:dana")
        split = gateway.assembly.routers["m"].split
        await advance(clock, client, 80)
        await settle(lambda: split.stable == "2")
        assert (await service.get("m")).status == "promoted"
        assert split.stable == "2"
        assert gateway.assembly.repository.get("m").version == "2"
        assert await traffic(client, 20) == [200] * 20


async def test_a_plan_for_an_unrouted_model_or_version_is_refused(
    database_url: str, migrated: Database
) -> None:
    clock = FakeClock()
    async with served(config(database_url, 0.0), clock) as (_, __, service):
        with pytest.raises(InvalidInputError, match="not under traffic"):
            await service.start(parse_plan({**PLAN, "model": "other"}), actor="cli:dana")
        with pytest.raises(InvalidInputError, match="canary_version"):
            await service.start(parse_plan({**PLAN, "canary_version": "9"}), actor="cli:dana")
        guard = {
            "name": "sales",
            "metric": {"kind": "business", "name": "sales", "function": "no_such_module:sales"},
            "min": 1,
        }
        steps = [
            {"set_weight": 10},
            {"analysis": {"interval_s": 10, "count": 1, "guardrails": [guard]}},
        ]
        with pytest.raises(InvalidInputError, match="cannot import 'no_such_module'"):
            await service.start(parse_plan({**PLAN, "steps": steps}), actor="cli:dana")
        query = {**guard, "metric": {"kind": "business", "name": "sales", "query": "up"}}
        analysis = {"interval_s": 10, "count": 1, "guardrails": [query]}
        plan = parse_plan({**PLAN, "steps": [steps[0], {"analysis": analysis}]})
        with pytest.raises(InvalidInputError, match=r"release\.prometheus_url is not set"):
            await service.start(plan, actor="cli:dana")


async def test_a_restarted_gateway_resumes_the_rollout_at_its_step(
    database_url: str, migrated: Database, tmp_path: Path
) -> None:
    clock = FakeClock()
    cfg = config(database_url, 0.0)
    async with served(cfg, clock) as (gateway, client, service):
        await service.start(parse_plan(PLAN), actor="cli:dana")
        await advance(clock, client, 15)  # inside the analysis step
        before = await service.get("m")
        assert before.step_index == 1
    async with served(cfg, clock) as (gateway, client, service):
        split = gateway.assembly.routers["m"].split
        await settle(lambda: split.canary == "2")
        after = await service.get("m")
        assert (after.status, after.step_index) == ("running", 1)
        assert split.canary_weight == 20  # the weight the rollout had, applied again
        await advance(clock, client, 60)
        await settle(lambda: split.stable == "2")
        assert (await service.get("m")).status == "promoted"


async def test_prediction_shift_is_the_shadows_disagreement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEAWALL_DATABASE_URL", f"sqlite:///{tmp_path / 'seawall.db'}")
    from seawall.assemble.release import ShadowShift
    from seawall.release.errors import MetricUnavailableError
    from seawall.release.plan import MetricKind, MetricRef

    cfg = parse_config(
        """
models:
  - {name: m, version: "1", backend: {kind: mock}}
  - {name: m, version: "2", backend: {kind: mock}}
traffic:
  m: {stable: "1", shadow: {version: "2", sample_rate: 1.0, max_concurrency: 64}}
"""
    )
    gateway = Gateway(assemble(cfg), cfg.server)
    await gateway.startup()
    try:
        router = gateway.assembly.routers["m"]
        shift = ShadowShift(router, clock=gateway.clock, min_samples=5)
        metric = MetricRef(MetricKind.PREDICTION_SHIFT, name="shift")
        with pytest.raises(MetricUnavailableError, match="no shadow answer compared yet"):
            await shift.value(metric, "2", 60)
        with pytest.raises(MetricUnavailableError, match="0 prediction"):
            await shift.value(metric, "1", 60)  # not the shadow: live predictions vs stable
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            for _ in range(10):
                await client.post("/v2/models/m/infer", json=BODY)
            assert router.shadow is not None
            await router.shadow.drain()
            assert await shift.value(metric, "2", 60) == 0.0  # the mocks echo: all agree
            text = (await client.get("/metrics")).text
        assert 'seawall_shadow_calls_total{model="m",result="agreed",version="2"} 10.0' in text
        assert 'seawall_shadow_agreement_ratio{model="m",version="2"} 1.0' in text
    finally:
        await gateway.shutdown()


async def test_routing_works_while_the_database_is_down_and_rollouts_wait_for_it() -> None:
    cfg = parse_config(
        """
database_url: postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1
models:
  - {name: m, version: "1", backend: {kind: mock}}
  - {name: m, version: "2", backend: {kind: mock}}
traffic:
  m: {stable: "1", canary: "2", canary_weight: 50}
"""
    )
    clock = FakeClock()
    gateway = Gateway(assemble(cfg, clock=clock), cfg.server)
    await gateway.startup()  # the database is down: the gateway starts anyway
    try:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            assert await traffic(client, 10) == [200] * 10
        shared = gateway.assembly.shared
        assert shared is not None
        assert shared.control is not None
        with pytest.raises(NotFoundError, match="has not started"):
            await shared.control.rollouts()
    finally:
        await gateway.shutdown()
