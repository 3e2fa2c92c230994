"""RolloutService on SQLite and PostgreSQL with a FakeClock: decisions persisted and audited,
one live rollout per model, manual commands, a restart that resumes at the same step, failures
restarted after a backoff, several processes on one database, promotion in the registry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from seawall.clock import FakeClock
from seawall.errors import ConflictError, InvalidInputError, NotFoundError
from seawall.policies.variants import SplitState, TrafficSplit
from seawall.registry import ArtifactInfo, Registry
from seawall.release.adapters import SplitTraffic
from seawall.release.controller import RolloutController
from seawall.release.errors import RolloutStateError
from seawall.release.metrics import StaticSource
from seawall.release.plan import (
    Analysis,
    Guardrail,
    MetricKind,
    MetricRef,
    Pause,
    RolloutPlan,
    SetWeight,
)
from seawall.release.service import RolloutService, RolloutServiceOptions
from seawall.release.state import Decision, DecisionKind, RolloutState, Status
from seawall.store import AuditLog, Database

MODEL, STABLE, CANARY = "iris", "1", "2"
ERRORS = Guardrail("errors", MetricRef(MetricKind.ERROR_RATE), max=0.01)
LATENCY = Guardrail(
    "latency", MetricRef(MetricKind.LATENCY_P95_S), max=1.2, relative_to_stable=True
)
BUSINESS = Guardrail(
    "conversion", MetricRef(MetricKind.BUSINESS, "conversion", pushed=True), min=0.02
)
ROLLOUT = RolloutPlan(
    MODEL,
    STABLE,
    CANARY,
    (
        SetWeight(10),
        Pause(60),
        SetWeight(40),
        Analysis(interval_s=30, count=3, failure_limit=1, guardrails=(ERRORS, LATENCY)),
        SetWeight(100),
    ),
)
#: A rollout that waits an hour after its first step: time for commands.
SLOW = RolloutPlan(MODEL, STABLE, CANARY, (SetWeight(10), Pause(3600), SetWeight(50), Pause(3600)))
POLL_S = 100.0
BACKOFF_S = 5.0
GOOD, BAD = 0.001, 0.5


def healthy() -> StaticSource:
    values = {("error_rate", CANARY): GOOD, ("latency_p95_s", CANARY): 0.1}
    return StaticSource({**values, ("latency_p95_s", STABLE): 0.1})


class Approvals:
    async def approved(self, model: str, version: str) -> bool:
        return False


class Flaky(SplitTraffic):
    """The split's adapter; raises the queued failures at weight changes first."""

    def __init__(self, failures: list[Exception], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures

    async def set_canary_weight(self, percent: float) -> None:
        if self.failures:
            raise self.failures.pop()
        await super().set_canary_weight(percent)


class Process:
    """One gateway process: its own traffic split, and a rollout service on the shared database."""

    def __init__(
        self,
        db: Database,
        clock: FakeClock,
        metrics: StaticSource,
        *,
        leader: bool = True,
        registry: Registry | None = None,
        alias: str | None = None,
    ) -> None:
        self.split = TrafficSplit(STABLE, versions=(STABLE, CANARY))
        self.registry = registry
        self.alias = alias
        self.leads = leader
        self.failures: list[Exception] = []
        self.service = RolloutService(
            db,
            AuditLog(db, clock=clock),
            clock=clock,
            traffic=self.traffic,
            metrics=lambda plan: metrics,
            approvals=Approvals(),
            leader=self.leader,
            options=RolloutServiceOptions(poll_s=POLL_S, restart_backoff_s=BACKOFF_S),
        )

    async def leader(self) -> bool:
        return self.leads

    def traffic(self, plan: RolloutPlan) -> SplitTraffic:
        return Flaky(
            self.failures,
            self.split,
            model=plan.model,
            canary=plan.canary_version,
            registry=self.registry,
            alias=self.alias,
            actor="system",
        )


async def settle(clock: FakeClock, sleepers: int) -> None:
    """Wait until `sleepers` tasks sleep on the clock (really, up to 10 s: the database's work
    runs on threads). A controller between ticks sleeps until its next due time, so after an
    advance that woke it this is the end of its tick; not so for a tick that ends the rollout
    (see `finish`)."""
    deadline = time.monotonic() + 10.0
    while clock.sleepers != sleepers:
        assert time.monotonic() < deadline, f"{clock.sleepers} sleep, expected {sleepers}"
        await asyncio.sleep(0.001)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (really, up to 10 s) until `condition()` holds."""
    deadline = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 10 s"
        await asyncio.sleep(0.001)


def runners() -> list[asyncio.Task[Any]]:
    """The controller tasks still running (named `rollout-<id>`; the watch is `rollout-watch`)."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("rollout-") and t.get_name() != "rollout-watch"
    ]


async def finish(clock: FakeClock, sleepers: int = 0) -> None:
    """Wait until no controller task runs any more and `sleepers` tasks sleep on the clock."""
    deadline = time.monotonic() + 10.0
    while runners() or clock.sleepers != sleepers:
        assert time.monotonic() < deadline, f"{runners()}, {clock.sleepers} sleep"
        await asyncio.sleep(0.001)


async def advance(clock: FakeClock, seconds: float, sleepers: int = 1) -> None:
    clock.advance(seconds)
    await settle(clock, sleepers)


def kinds(history: list[Any]) -> list[DecisionKind]:
    return [d.kind for d in history]


# --- decisions, persisted and audited ---------------------------------------------------------


async def test_a_healthy_rollout_is_persisted_audited_and_promoted(
    migrated: Database, clock: FakeClock, audit: AuditLog
) -> None:
    process = Process(migrated, clock, healthy())
    start = clock.time()
    record = await process.service.start(ROLLOUT, actor="alice")
    assert (record.status, record.created_by, record.revision) == (Status.RUNNING, "alice", 0)
    await settle(clock, 1)
    assert process.split.snapshot() == SplitState(STABLE, CANARY, 10.0)
    for seconds in (60, 30, 30):
        await advance(clock, seconds)
    clock.advance(30)
    await finish(clock)

    stored = await process.service.get(MODEL)
    assert (stored.status, stored.weight, stored.step_index) == (Status.PROMOTED, 100.0, 5)
    assert process.split.snapshot() == SplitState(CANARY)
    history = await process.service.history(MODEL)
    assert kinds(history) == [
        DecisionKind.WEIGHT,
        DecisionKind.STEP,
        DecisionKind.WEIGHT,
        DecisionKind.STEP,
        DecisionKind.ANALYSIS,
        DecisionKind.ANALYSIS,
        DecisionKind.ANALYSIS,
        DecisionKind.WEIGHT,
        DecisionKind.PROMOTED,
    ]
    assert {d.actor for d in history} == {"system"}
    assert history[-1].at == datetime.fromtimestamp(start + 60 + 3 * 30, UTC)
    assert stored.revision == len(history)

    check = await audit.verify()
    assert check.ok
    assert check.checked == 1 + len(history)
    records = await audit.records()
    assert [r.action for r in records] == ["rollout.start"] + [
        f"rollout.{d.kind.value}" for d in history
    ]
    assert {r.target for r in records} == {f"model:{MODEL}/{CANARY}"}
    analysis = [r for r in records if r.action == "rollout.analysis"]
    first = analysis[0].details
    assert (first["model"], first["canary_version"], first["step"]) == (MODEL, CANARY, 3)
    assert first["weight"] == 40.0
    by_name = {r["name"]: r for r in first["results"]}
    assert by_name["errors"]["value"] == GOOD
    assert by_name["errors"]["threshold"] == 0.01
    assert by_name["errors"]["verdict"] == "pass"
    assert by_name["latency"]["value"] == 0.1
    assert by_name["latency"]["stable_value"] == 0.1
    assert by_name["latency"]["threshold"] == pytest.approx(0.12)
    assert "run 1: pass" in first["reason"]
    assert history[4].results == tuple(first["results"])


async def test_a_failing_canary_is_rolled_back_with_its_values_audited(
    migrated: Database, clock: FakeClock, audit: AuditLog
) -> None:
    metrics = healthy()
    metrics.set("error_rate", CANARY, 0.2)
    process = Process(migrated, clock, metrics)
    plan = RolloutPlan(
        MODEL,
        STABLE,
        CANARY,
        (SetWeight(25), Analysis(interval_s=30, count=3, guardrails=(ERRORS,))),
    )
    await process.service.start(plan, actor="alice")
    await settle(clock, 1)
    assert process.split.snapshot() == SplitState(STABLE, CANARY, 25.0)
    clock.advance(30)
    await finish(clock)  # rolled back in the tick that measured the failure
    assert process.split.snapshot() == SplitState(STABLE, None, 0.0)
    stored = await process.service.get(MODEL)
    assert (stored.status, stored.weight) == (Status.ROLLED_BACK, 0.0)
    assert "error_rate 0.2 > 0.01" in stored.reason
    last = (await audit.records())[-1]
    assert last.action == "rollout.rolled_back"
    assert last.details["results"][0]["value"] == 0.2
    assert last.details["results"][0]["threshold"] == 0.01
    assert last.details["results"][0]["verdict"] == "fail"
    assert (await audit.verify()).ok


async def test_a_second_live_rollout_of_a_model_is_refused(
    migrated: Database, clock: FakeClock
) -> None:
    process = Process(migrated, clock, healthy())
    first = await process.service.start(SLOW, actor="alice")
    with pytest.raises(ConflictError, match=r"model: 'iris' has a rollout in progress"):
        await process.service.start(ROLLOUT, actor="bob")
    assert [r.id for r in await process.service.list(active_only=True)] == [first.id]
    await process.service.aclose()


async def test_start_refuses_a_model_the_traffic_factory_refuses(
    migrated: Database, clock: FakeClock
) -> None:
    def unrouted(plan: RolloutPlan) -> SplitTraffic:
        raise NotFoundError(f"model: {plan.model!r} is not routed")

    def numeric_only(plan: RolloutPlan) -> SplitTraffic:
        raise ValueError("canary: registry versions are numbers, got 'v2'")

    for factory, error in ((unrouted, NotFoundError), (numeric_only, InvalidInputError)):
        service = RolloutService(
            migrated,
            AuditLog(migrated, clock=clock),
            clock=clock,
            traffic=factory,
            metrics=lambda plan: healthy(),
            approvals=Approvals(),
        )
        with pytest.raises(error):
            await service.start(ROLLOUT, actor="alice")
    assert await service.list() == []


# --- commands ---------------------------------------------------------------------------------


async def test_pause_resume_and_promote_are_persisted_as_the_actors(
    migrated: Database, clock: FakeClock, audit: AuditLog
) -> None:
    process = Process(migrated, clock, healthy())
    service = process.service
    start = clock.time()
    await service.start(SLOW, actor="alice")
    await settle(clock, 1)
    paused = await service.pause(MODEL, actor="bob", reason="looking at a dashboard")
    assert (paused.status, paused.reason) == (Status.PAUSED, "looking at a dashboard")
    await settle(clock, 0)  # paused: nothing to wait for
    with pytest.raises(RolloutStateError, match=r"pause: .* is paused"):
        await service.pause(MODEL, actor="bob", reason="again")
    clock.advance(100.0)
    resumed = await service.resume(MODEL, actor="carol", reason="fine")
    assert resumed.status is Status.RUNNING
    assert resumed.rollout_state().step_started_at == start + 100.0  # shifted by the pause
    await settle(clock, 1)
    promoted = await service.promote(MODEL, actor="dave", reason="ship it")
    assert (promoted.status, promoted.weight) == (Status.PROMOTED, 100.0)
    assert process.split.snapshot().stable == CANARY
    await finish(clock)
    history = await service.history(MODEL)
    assert [(d.kind, d.actor) for d in history[-3:]] == [
        (DecisionKind.PAUSED, "bob"),
        (DecisionKind.RESUMED, "carol"),
        (DecisionKind.PROMOTED, "dave"),
    ]
    records = await audit.records()
    assert [(r.action, r.actor) for r in records[-3:]] == [
        ("rollout.paused", "bob"),
        ("rollout.resumed", "carol"),
        ("rollout.promoted", "dave"),
    ]
    with pytest.raises(RolloutStateError, match="is promoted"):
        await service.abort(MODEL, actor="erin", reason="too late")


async def test_a_command_right_after_start_waits_for_the_controller_not_a_second_one(
    migrated: Database, clock: FakeClock
) -> None:
    process = Process(migrated, clock, healthy())
    service = process.service
    await service.start(SLOW, actor="alice")
    # No settling: the controller task has not loaded the rollout yet.
    paused = await service.pause(MODEL, actor="bob", reason="right away")
    assert paused.status == Status.PAUSED
    await settle(clock, 0)
    assert (await service.get(MODEL)).status == Status.PAUSED
    resumed = await service.resume(MODEL, actor="bob", reason="carry on")
    assert resumed.status is Status.RUNNING
    await service.aclose()


async def test_abort_rolls_back_and_a_new_rollout_may_start(
    migrated: Database, clock: FakeClock
) -> None:
    process = Process(migrated, clock, healthy())
    service = process.service
    first = await service.start(SLOW, actor="alice")
    await settle(clock, 1)
    aborted = await service.abort(MODEL, actor="bob", reason="bad feeling")
    assert (aborted.status, aborted.weight) == (Status.ABORTED, 0.0)
    assert process.split.canary is None
    await finish(clock)
    second = await service.start(SLOW, actor="alice")
    assert second.id != first.id
    assert (await service.get(MODEL)).id == second.id
    assert [r.id for r in await service.list()] == [second.id, first.id]
    await service.aclose()


async def test_commands_check_their_input(migrated: Database, clock: FakeClock) -> None:
    service = Process(migrated, clock, healthy()).service
    with pytest.raises(NotFoundError, match="model: 'iris' has no rollout"):
        await service.pause(MODEL, actor="bob", reason="why")
    with pytest.raises(InvalidInputError, match="reason: say why"):
        await service.abort(MODEL, actor="bob", reason=" ")
    with pytest.raises(InvalidInputError, match="value: must be a finite number"):
        service.push(MODEL, "conversion", CANARY, float("nan"))
    with pytest.raises(InvalidInputError, match="name/version: must not be empty"):
        service.push(MODEL, "", CANARY, 1.0)
    with pytest.raises(InvalidInputError, match="limit: 1 to 10000"):
        await service.list(limit=0)


async def test_pushed_business_metrics_reach_the_analysis(
    migrated: Database, clock: FakeClock
) -> None:
    process = Process(migrated, clock, healthy())
    plan = RolloutPlan(
        MODEL,
        STABLE,
        CANARY,
        (SetWeight(10), Analysis(interval_s=30, count=1, guardrails=(ERRORS, BUSINESS))),
    )
    await process.service.start(plan, actor="alice")
    await settle(clock, 1)
    clock.advance(20.0)
    process.service.push(MODEL, "conversion", CANARY, 0.01)  # below the minimum of 0.02
    clock.advance(10.0)
    await finish(clock)
    stored = await process.service.get(MODEL)
    assert stored.status is Status.ROLLED_BACK
    assert "conversion 0.01 < 0.02" in stored.reason


# --- restarts ---------------------------------------------------------------------------------


async def reference_decisions() -> tuple[list[Decision], RolloutState]:
    """ROLLOUT walked by a bare controller, run 1 of the analysis failing: what must happen."""

    class Traffic:
        async def set_canary_weight(self, percent: float) -> None: ...

        async def promote(self) -> None: ...

        async def rollback(self) -> None: ...

    decisions: list[Decision] = []

    async def record(decision: Decision) -> None:
        decisions.append(decision)

    clock, metrics = FakeClock(), healthy()
    controller = RolloutController(
        ROLLOUT,
        traffic=Traffic(),
        metrics=metrics,
        approvals=Approvals(),
        clock=clock,
        on_decision=record,
    )
    await controller.tick()
    for seconds, error_rate in ((60, GOOD), (30, BAD), (30, GOOD), (30, GOOD)):
        metrics.set("error_rate", CANARY, error_rate)
        clock.advance(seconds)
        await controller.tick()
    return decisions, controller.state


async def test_a_restarted_process_resumes_at_the_same_step_and_finishes_identically(
    migrated: Database, clock: FakeClock
) -> None:
    metrics = healthy()
    a = Process(migrated, clock, metrics)
    start = clock.time()
    assert await a.service.recover() == 0
    await a.service.start(ROLLOUT, actor="alice")
    await settle(clock, 2)  # the controller and the watch
    await advance(clock, 60, sleepers=2)  # weight 40, the analysis begins
    metrics.set("error_rate", CANARY, BAD)
    await advance(clock, 30, sleepers=2)  # run 1 fails (within the limit of 1)
    metrics.set("error_rate", CANARY, GOOD)
    await a.service.aclose()
    await settle(clock, 0)

    middle = await a.service.get(MODEL)
    state = middle.rollout_state()
    assert (middle.status, middle.step_index, state.failures) == (Status.RUNNING, 3, 1)
    assert state.next_analysis_at == start + 120.0

    b = Process(migrated, clock, metrics)  # a new process: its split starts at stable only
    assert b.split.snapshot() == SplitState(STABLE)
    assert await b.service.recover() == 1
    await settle(clock, 2)
    assert b.split.snapshot() == SplitState(STABLE, CANARY, 40.0)  # re-applied
    assert (await b.service.get(MODEL)).revision == middle.revision  # nothing new decided
    await advance(clock, 29.0, sleepers=2)
    assert (await b.service.get(MODEL)).revision == middle.revision  # not due yet
    await advance(clock, 1.0, sleepers=2)  # run 2, at the time A would have made it
    clock.advance(30.0)  # run 3, weight 100, promoted
    await finish(clock, 1)  # only the watch is left
    await b.service.aclose()

    expected, final = await reference_decisions()
    history = await b.service.history(MODEL)
    assert [(d.kind, d.step_index, d.status, d.weight, d.reason) for d in history] == [
        (d.kind, d.step_index, d.status, d.weight, d.reason) for d in expected
    ]
    assert [d.at for d in history] == [datetime.fromtimestamp(d.at, UTC) for d in expected]
    stored = await b.service.get(MODEL)
    assert stored.status is Status.PROMOTED
    assert stored.state["analysis_runs"] == final.to_json()["analysis_runs"]
    assert b.split.snapshot() == SplitState(CANARY)


async def test_a_failing_controller_is_logged_and_restarted_after_a_backoff(
    migrated: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    process = Process(migrated, clock, healthy())
    process.failures.append(RuntimeError("split unreachable"))  # the first weight change fails
    with caplog.at_level(logging.ERROR, logger="seawall.release"):
        await process.service.start(SLOW, actor="alice")
        await settle(clock, 1)  # sleeping the backoff
    assert "the controller failed; carrying on from the stored state in 5 s" in caplog.text
    assert "split unreachable" in caplog.text
    assert process.split.snapshot() == SplitState(STABLE)
    assert await process.service.history(MODEL) == []
    await advance(clock, BACKOFF_S)  # restarted from the stored state: step 0 again
    assert process.split.snapshot() == SplitState(STABLE, CANARY, 10.0)
    assert kinds(await process.service.history(MODEL)) == [DecisionKind.WEIGHT, DecisionKind.STEP]
    await process.service.aclose()


# --- several processes ------------------------------------------------------------------------


async def test_only_the_leader_runs_and_it_follows_what_others_stored(
    migrated: Database, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    leader = Process(migrated, clock, healthy())
    other = Process(migrated, clock, healthy(), leader=False)
    assert await leader.service.recover() == 0
    assert await other.service.recover() == 0
    await settle(clock, 2)  # the two watches

    await other.service.start(SLOW, actor="alice")  # stored; the follower runs nothing
    assert runners() == []
    assert other.split.snapshot() == leader.split.snapshot() == SplitState(STABLE)
    await advance(clock, POLL_S, sleepers=3)  # the leader's watch picks it up
    assert leader.split.snapshot() == SplitState(STABLE, CANARY, 10.0)

    paused = await other.service.pause(MODEL, actor="bob", reason="hold on")
    assert paused.status is Status.PAUSED
    with caplog.at_level(logging.INFO, logger="seawall.release"):
        clock.advance(POLL_S)  # the leader restarts its controller from the paused state
        await until(lambda: "from step 1 (paused, revision 3)" in caplog.text)
        await settle(clock, 2)  # the watches; the paused controller waits for a command
    await advance(clock, 3600.0, sleepers=2)  # long past the pause: but it is paused
    assert (await leader.service.get(MODEL)).status is Status.PAUSED

    await other.service.abort(MODEL, actor="bob", reason="no")
    clock.advance(POLL_S)
    await finish(clock, 2)  # the leader follows the abort on its own split
    assert leader.split.snapshot() == SplitState(STABLE)
    history = await leader.service.history(MODEL)
    assert [(d.kind, d.actor) for d in history] == [
        (DecisionKind.WEIGHT, "system"),
        (DecisionKind.STEP, "system"),
        (DecisionKind.PAUSED, "bob"),
        (DecisionKind.ABORTED, "bob"),
    ]
    await leader.service.aclose()
    await other.service.aclose()


async def test_a_process_that_loses_the_lease_stops_its_controllers(
    migrated: Database, clock: FakeClock
) -> None:
    process = Process(migrated, clock, healthy())
    await process.service.recover()
    await process.service.start(SLOW, actor="alice")
    await settle(clock, 2)
    process.leads = False
    clock.advance(POLL_S)
    await finish(clock, 1)  # only the watch is left
    await advance(clock, 3600.0)
    assert kinds(await process.service.history(MODEL)) == [DecisionKind.WEIGHT, DecisionKind.STEP]
    process.leads = True
    await advance(clock, POLL_S, sleepers=2)  # leader again: resumed, and the pause is over
    assert (await process.service.get(MODEL)).weight == 50.0
    await process.service.aclose()


# --- the registry -----------------------------------------------------------------------------

ARTIFACT = ArtifactInfo(kind="file", files={"model.joblib": "a" * 64}, total_bytes=10, uri="mem")


async def test_a_promotion_moves_the_registry_alias_and_records_the_deployments(
    migrated: Database, clock: FakeClock, audit: AuditLog
) -> None:
    registry = Registry(migrated, clock=clock, audit=audit)
    for _ in (STABLE, CANARY):
        await registry.register_version(MODEL, ARTIFACT, actor="cli:alice", framework="sklearn")
    await registry.set_alias(MODEL, "live", 1, actor="cli:alice")
    process = Process(migrated, clock, healthy(), registry=registry, alias="live")
    plan = RolloutPlan(MODEL, STABLE, CANARY, (SetWeight(30), Pause(10)))
    await process.service.start(plan, actor="alice")
    await settle(clock, 1)
    open_ = await registry.deployments(MODEL, open_only=True)
    assert [(d.version, d.traffic_share) for d in open_] == [(2, 0.3)]
    clock.advance(10)
    await finish(clock)
    assert (await registry.resolve(MODEL, "@live")).version == 2
    open_ = await registry.deployments(MODEL, open_only=True)
    assert [(d.version, d.traffic_share, d.target) for d in open_] == [(2, 1.0, "gateway")]
    assert process.split.snapshot().stable == CANARY
    assert (await process.service.get(MODEL)).status is Status.PROMOTED
    actions = [r.action for r in await audit.records(limit=1000)]
    last_alias = len(actions) - 1 - actions[::-1].index("model.alias")
    assert last_alias < actions.index("rollout.promoted")  # the alias moved first
    assert (await audit.verify()).ok


async def test_a_registry_refusal_holds_the_promotion_until_it_is_allowed(
    migrated: Database, clock: FakeClock, audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(migrated, clock=clock, audit=audit)
    for _ in (STABLE, CANARY):
        await registry.register_version(MODEL, ARTIFACT, actor="cli:alice", framework="sklearn")
    process = Process(migrated, clock, healthy(), registry=registry, alias="champion")
    await process.service.start(RolloutPlan(MODEL, STABLE, CANARY, (SetWeight(30),)), actor="alice")
    with caplog.at_level(logging.ERROR, logger="seawall.release"):
        await settle(clock, 1)  # champion needs production: refused, retried after a backoff
    assert "champion" in caplog.text
    assert process.split.snapshot().stable == STABLE  # no traffic moved for the promotion
    assert (await process.service.get(MODEL)).status is Status.RUNNING

    await registry.transition(MODEL, 2, "staging", actor="cli:alice")
    await registry.approve(MODEL, 2, actor="bob", comment="ok")
    await registry.transition(MODEL, 2, "production", actor="cli:alice")
    clock.advance(BACKOFF_S)
    await finish(clock)
    assert (await registry.resolve(MODEL, "@champion")).version == 2
    assert (await process.service.get(MODEL)).status is Status.PROMOTED
