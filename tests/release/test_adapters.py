"""The adapters on the gateway's real objects: a TrafficSplit (and the registry) driven by
SplitTraffic, approvals from the registry, error rate and p95 from a RouterPolicy's windows."""

from __future__ import annotations

import logging

import pytest

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import ConflictError, NotFoundError
from seawall.policies.routing import RouterPolicy
from seawall.policies.variants import SplitState, TrafficSplit
from seawall.registry import ArtifactInfo, Registry
from seawall.release.adapters import RegistryApprovals, RouterMetrics, SplitTraffic
from seawall.release.analysis import Verdict, run_analysis
from seawall.release.errors import MetricUnavailableError
from seawall.release.plan import (
    Analysis,
    Guardrail,
    MetricKind,
    MetricRef,
    RolloutPlan,
    SetWeight,
)
from seawall.store import AuditLog, Database
from seawall.types import InferenceRequest, InferenceResponse

ARTIFACT = ArtifactInfo(kind="file", files={"model.joblib": "a" * 64}, total_bytes=10, uri="mem")
ERROR_RATE = MetricRef(MetricKind.ERROR_RATE)
P95 = MetricRef(MetricKind.LATENCY_P95_S)


def split() -> TrafficSplit:
    return TrafficSplit("1", versions=("1", "2", "3"))


@pytest.fixture
async def registry(migrated: Database, audit: AuditLog, clock: FakeClock) -> Registry:
    registry = Registry(migrated, clock=clock, audit=audit)
    for _ in range(2):
        await registry.register_version("iris", ARTIFACT, actor="cli:alice", framework="sklearn")
    return registry


# --- SplitTraffic -----------------------------------------------------------------------------


async def test_split_traffic_sets_the_canary_its_weight_and_clears_it() -> None:
    target = split()
    traffic = SplitTraffic(target, model="iris", canary="2", actor="system")
    await traffic.set_canary_weight(0.0)
    assert target.snapshot() == SplitState("1", "2", 0.0)
    await traffic.set_canary_weight(25.0)
    assert target.snapshot() == SplitState("1", "2", 25.0)
    await traffic.rollback()
    assert target.snapshot() == SplitState("1")
    await traffic.set_canary_weight(40.0)
    await traffic.promote()
    assert target.snapshot() == SplitState("2")


async def test_a_version_the_split_does_not_serve_is_a_conflict() -> None:
    traffic = SplitTraffic(split(), model="iris", canary="9", actor="system")
    with pytest.raises(ConflictError, match=r"traffic of iris: canary: '9' is not one of"):
        await traffic.set_canary_weight(10.0)
    with pytest.raises(ConflictError, match=r"traffic of iris: version: '9' is not one of"):
        await traffic.promote()


def test_registry_options_are_checked() -> None:
    with pytest.raises(ValueError, match="alias: moving an alias needs the registry"):
        SplitTraffic(split(), model="iris", canary="2", alias="live", actor="system")
    with pytest.raises(ValueError, match="canary: registry versions are numbers, got 'v2'"):
        SplitTraffic(split(), model="iris", canary="v2", registry=object(), actor="s")  # type: ignore[arg-type]


async def test_weights_and_promotion_are_recorded_in_the_registry(registry: Registry) -> None:
    await registry.set_alias("iris", "live", 1, actor="cli:alice")
    await registry.record_deployment("iris", 1, "gateway", 1.0, actor="cli:alice")
    target = split()
    traffic = SplitTraffic(
        target, model="iris", canary="2", registry=registry, alias="live", actor="rollouts"
    )
    await traffic.set_canary_weight(10.0)
    await traffic.set_canary_weight(10.0)  # re-applied (a restart): no new deployment
    await traffic.set_canary_weight(40.0)
    shares = [(d.version, d.traffic_share) for d in await registry.deployments("iris")]
    assert shares == [(2, 0.4), (2, 0.1), (1, 1.0)]  # newest first
    await traffic.promote()
    assert (await registry.resolve("iris", "@live")).version == 2
    current = await registry.deployments("iris", open_only=True)
    assert [(d.version, d.traffic_share, d.started_by) for d in current] == [(2, 1.0, "rollouts")]
    assert target.snapshot() == SplitState("2")


async def test_a_rollback_ends_the_canarys_deployment(registry: Registry) -> None:
    target = split()
    traffic = SplitTraffic(target, model="iris", canary="2", registry=registry, actor="rollouts")
    await traffic.set_canary_weight(30.0)
    await traffic.rollback()
    assert target.snapshot() == SplitState("1")
    assert await registry.deployments("iris", open_only=True) == []
    (ended,) = await registry.deployments("iris")
    assert (ended.version, ended.traffic_share, ended.ended_by) == (2, 0.3, "rollouts")


async def test_a_registry_failure_never_stops_a_rollback(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    target = split()
    traffic = SplitTraffic(target, model="wine", canary="2", registry=registry, actor="rollouts")
    with caplog.at_level(logging.ERROR, logger="seawall.release"):
        await traffic.set_canary_weight(30.0)
        await traffic.rollback()
    assert target.snapshot() == SplitState("1")
    assert "could not record 2 at 0 of gateway" in caplog.text


async def test_a_refused_alias_stops_the_promotion_before_traffic_moves(
    registry: Registry,
) -> None:
    target = split()
    traffic = SplitTraffic(
        target, model="iris", canary="2", registry=registry, alias="champion", actor="rollouts"
    )
    await traffic.set_canary_weight(50.0)
    with pytest.raises(ConflictError, match="champion"):
        await traffic.promote()
    assert target.snapshot() == SplitState("1", "2", 50.0)


# --- RegistryApprovals ------------------------------------------------------------------------


async def test_approvals_come_from_the_registry(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    approvals = RegistryApprovals(registry)
    assert not await approvals.approved("iris", "2")
    await registry.approve("iris", 2, actor="bob", comment="ok")
    assert await approvals.approved("iris", "2")
    with caplog.at_level(logging.WARNING, logger="seawall.release"):
        assert not await approvals.approved("iris", "v2")
    assert "the registry approves numbered versions, and 'v2' is not a number" in caplog.text
    with pytest.raises(NotFoundError):
        await approvals.approved("wine", "1")


# --- RouterMetrics ----------------------------------------------------------------------------


async def answer(request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
    return InferenceResponse(request.model, [])


def router(clock: FakeClock) -> RouterPolicy:
    variants = {"1": answer, "2": answer, "3": answer}
    return RouterPolicy(variants, split(), clock=clock, target="iris")


def calls(
    policy: RouterPolicy, clock: FakeClock, version: str, n: int, latency_s: float, errors: int = 0
) -> None:
    stats = policy.stats(version)
    for i in range(n):
        failed = RuntimeError("boom") if i < errors else None
        stats.record(clock.monotonic(), latency_s, error=failed)


async def test_error_rate_and_p95_come_from_the_versions_window(clock: FakeClock) -> None:
    policy = router(clock)
    metrics = RouterMetrics(policy, clock=clock, min_requests=10)
    calls(policy, clock, "2", 40, 0.2, errors=4)
    assert await metrics.value(ERROR_RATE, "2", 30.0) == 0.1
    assert await metrics.value(P95, "2", 30.0) == 0.2
    clock.advance(31.0)  # out of a 30 s window
    with pytest.raises(MetricUnavailableError, match=r"served 0 call\(s\) in the last 30 s"):
        await metrics.value(ERROR_RATE, "2", 30.0)


async def test_too_little_traffic_or_no_success_is_unavailable(clock: FakeClock) -> None:
    policy = router(clock)
    metrics = RouterMetrics(policy, clock=clock, min_requests=10)
    calls(policy, clock, "2", 9, 0.2)
    with pytest.raises(MetricUnavailableError, match=r"served 9 call.* fewer than 10"):
        await metrics.value(ERROR_RATE, "2", 30.0)
    calls(policy, clock, "1", 10, 0.2, errors=10)
    assert await metrics.value(ERROR_RATE, "1", 30.0) == 1.0
    with pytest.raises(MetricUnavailableError, match="no successful call"):
        await metrics.value(P95, "1", 30.0)
    with pytest.raises(MetricUnavailableError, match="'7' is not routed by the gateway"):
        await metrics.value(ERROR_RATE, "7", 30.0)
    with pytest.raises(MetricUnavailableError, match="does not measure drift_score"):
        await metrics.value(MetricRef(MetricKind.DRIFT_SCORE), "2", 30.0)
    with pytest.raises(ValueError, match="min_requests: at least 1"):
        RouterMetrics(policy, clock=clock, min_requests=0)


async def test_a_latency_guardrail_relative_to_stable_reads_the_stable_version(
    clock: FakeClock,
) -> None:
    policy = router(clock)
    calls(policy, clock, "1", 50, 0.1)
    calls(policy, clock, "2", 50, 0.15)
    latency = Guardrail("latency", P95, max=1.2, relative_to_stable=True)
    plan = RolloutPlan(
        "iris",
        "1",
        "2",
        (SetWeight(10), Analysis(interval_s=30, count=1, guardrails=(latency,))),
    )
    metrics = RouterMetrics(policy, clock=clock, min_requests=20)
    run = await run_analysis(plan, 1, metrics=metrics, clock=clock)
    (result,) = run.results
    assert (result.value, result.stable_value) == (0.15, 0.1)
    assert result.threshold == pytest.approx(0.12)
    assert run.verdict is Verdict.FAIL
