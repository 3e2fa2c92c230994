"""RolloutController on a FakeClock: the issue's acceptance list, manual commands, restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from seawall.clock import FakeClock
from seawall.monitor.report import DriftReport
from seawall.monitor.result import DriftResult, Stat
from seawall.release.analysis import Verdict
from seawall.release.controller import RolloutController
from seawall.release.errors import RolloutStateError
from seawall.release.metrics import DriftSource, MetricRouter, StaticSource
from seawall.release.plan import (
    Analysis,
    Guardrail,
    Inconclusive,
    MetricKind,
    MetricRef,
    Pause,
    RolloutPlan,
    SetWeight,
    Step,
)
from seawall.release.state import Decision, DecisionKind, RolloutState, Status

MODEL, STABLE, CANARY = "iris", "1", "2"
ERRORS = Guardrail("errors", MetricRef(MetricKind.ERROR_RATE), max=0.01)
LATENCY = Guardrail(
    "latency", MetricRef(MetricKind.LATENCY_P95_S), max=1.2, relative_to_stable=True
)
DRIFT = Guardrail("drift", MetricRef(MetricKind.DRIFT_SCORE), max=0.99)
GUARDRAILS = (ERRORS, LATENCY, DRIFT)
TERMINAL_KINDS = {DecisionKind.PROMOTED, DecisionKind.ROLLED_BACK, DecisionKind.ABORTED}


def analysis(
    interval_s: float = 30.0,
    count: int = 3,
    failure_limit: int = 0,
    consecutive_error_limit: int = 2,
    inconclusive: Inconclusive = Inconclusive.PAUSE,
    guardrails: tuple[Guardrail, ...] = GUARDRAILS,
) -> Analysis:
    return Analysis(
        interval_s=interval_s,
        count=count,
        guardrails=guardrails,
        failure_limit=failure_limit,
        consecutive_error_limit=consecutive_error_limit,
        inconclusive=inconclusive,
    )


def plan(*steps: Step) -> RolloutPlan:
    return RolloutPlan(MODEL, STABLE, CANARY, steps)


def drift_report(version: str, *, drifting: bool, psi: float = 0.05) -> DriftReport:
    result = DriftResult(
        "petal_length", Stat.PSI, psi, 0.0001 if drifting else 0.4, 0.2, 0.01, drifting, 500
    )
    return DriftReport(MODEL, version, 0.0, 60.0, 500, (result,), (), 1)


class Traffic:
    """A TrafficTarget that records what it was told."""

    def __init__(self) -> None:
        self.weight = 0.0
        self.promoted = False
        self.rolled_back = False
        self.calls: list[tuple[str, float]] = []

    async def set_canary_weight(self, percent: float) -> None:
        self.calls.append(("weight", percent))
        self.weight = percent

    async def promote(self) -> None:
        self.calls.append(("promote", 100.0))
        self.promoted = True

    async def rollback(self) -> None:
        self.calls.append(("rollback", 0.0))
        self.rolled_back = True
        self.weight = 0.0


class Approvals:
    def __init__(self) -> None:
        self.granted: set[tuple[str, str]] = set()
        self.asked = 0

    async def approved(self, model: str, version: str) -> bool:
        self.asked += 1
        return (model, version) in self.granted


class Harness:
    """A controller over fakes: static error and latency values, drift reports per version."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.static = StaticSource()
        self.reports: dict[str, DriftReport] = {}
        self.metrics = MetricRouter(
            builtin={
                MetricKind.ERROR_RATE: self.static,
                MetricKind.LATENCY_P95_S: self.static,
                MetricKind.DRIFT_SCORE: DriftSource(self._report),
            }
        )
        self.traffic = Traffic()
        self.approvals = Approvals()
        self.decisions: list[Decision] = []
        self.healthy()

    async def _report(self, version: str) -> DriftReport | None:
        return self.reports.get(version)

    def healthy(self) -> None:
        for version in (STABLE, CANARY):
            self.static.set("error_rate", version, 0.001)
            self.reports[version] = drift_report(version, drifting=False)
        self.static.set("latency_p95_s", STABLE, 0.200)
        self.static.set("latency_p95_s", CANARY, 0.220)

    async def record(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def controller(
        self, rollout: RolloutPlan, state: RolloutState | None = None
    ) -> RolloutController:
        return RolloutController(
            rollout,
            traffic=self.traffic,
            metrics=self.metrics,
            approvals=self.approvals,
            clock=self.clock,
            on_decision=self.record,
            state=state,
        )

    def kinds(self) -> list[DecisionKind]:
        return [d.kind for d in self.decisions]

    def last(self, kind: DecisionKind) -> Decision:
        return [d for d in self.decisions if d.kind is kind][-1]


async def step(h: Harness, controller: RolloutController) -> list[Decision]:
    """Advance the clock to the controller's next due time and tick."""
    due = controller.due_at()
    assert due is not None, f"nothing is due: {controller.state}"
    h.clock.advance(max(0.0, due - h.clock.time()))
    return await controller.tick()


async def walk(h: Harness, controller: RolloutController, limit_s: float = 100_000.0) -> None:
    """Tick at every due time until the rollout ends, pauses, or `limit_s` passed."""
    end = h.clock.time() + limit_s
    await controller.tick()
    while controller.due_at() is not None and (controller.due_at() or 0) <= end:
        await step(h, controller)


# --- acceptance -----------------------------------------------------------------------------


@pytest.mark.parametrize(("interval_s", "failure_limit"), [(30.0, 0), (30.0, 1), (10.0, 2)])
async def test_a_canary_failing_from_step_2_is_rolled_back_within_interval_x_limit_plus_1(
    interval_s: float, failure_limit: int
) -> None:
    """Healthy at 10%; from step 2 (50% of the traffic) on, 20% of its calls fail."""
    h = Harness()
    rollout = plan(
        SetWeight(10),
        analysis(interval_s, count=4, failure_limit=failure_limit),
        SetWeight(50),
        analysis(interval_s, count=4, failure_limit=failure_limit),
        SetWeight(100),
    )

    async def break_at_step_2(decision: Decision) -> None:
        await h.record(decision)
        if decision.kind is DecisionKind.WEIGHT and decision.step_index == 2:
            h.static.set("error_rate", CANARY, 0.2)

    controller = RolloutController(
        rollout,
        traffic=h.traffic,
        metrics=h.metrics,
        approvals=h.approvals,
        clock=h.clock,
        on_decision=break_at_step_2,
    )
    await walk(h, controller)

    failing_since = h.last(DecisionKind.WEIGHT).at
    rolled_back = h.last(DecisionKind.ROLLED_BACK)
    assert h.last(DecisionKind.WEIGHT).weight == 50
    assert rolled_back.at - failing_since == interval_s * (failure_limit + 1)
    assert (rolled_back.status, rolled_back.weight, rolled_back.step_index) == (
        Status.ROLLED_BACK,
        0.0,
        3,
    )
    assert controller.state.status is Status.ROLLED_BACK
    assert controller.state.weight == 0.0
    assert h.traffic.weight == 0.0
    assert h.traffic.rolled_back
    assert not h.traffic.promoted
    errors = next(r for r in rolled_back.results if r.name == "errors")
    assert (errors.value, errors.threshold, errors.verdict) == (0.2, 0.01, Verdict.FAIL)
    # The first analysis (10%) passed every run; nothing happens after the rollback.
    assert all(r.verdict is Verdict.PASS for r in controller.state.runs_at(1))
    assert [r.verdict for r in controller.state.runs_at(3)] == [Verdict.FAIL] * (failure_limit + 1)
    assert controller.due_at() is None
    assert await controller.tick() == []


async def test_a_latency_only_regression_relative_to_stable_is_rolled_back() -> None:
    h = Harness()
    h.static.set("latency_p95_s", CANARY, 0.300)  # 1.5 x stable's 0.2 s; errors and drift fine
    controller = h.controller(plan(SetWeight(20), analysis(count=3), SetWeight(100)))
    start = h.clock.time()
    await walk(h, controller)

    rolled_back = h.last(DecisionKind.ROLLED_BACK)
    assert rolled_back.at == start + 30.0
    by_name = {r.name: r for r in rolled_back.results}
    assert by_name["errors"].verdict is Verdict.PASS
    assert by_name["drift"].verdict is Verdict.PASS
    latency = by_name["latency"]
    assert latency.verdict is Verdict.FAIL
    assert (latency.value, latency.stable_value) == (0.3, 0.2)
    assert latency.threshold == pytest.approx(0.24)
    assert h.traffic.weight == 0.0
    assert not h.traffic.promoted


async def test_latency_within_the_ratio_to_stable_is_promoted() -> None:
    h = Harness()  # canary 0.22 s = 1.1 x stable: within 1.2 x
    controller = h.controller(plan(SetWeight(20), analysis(count=3), SetWeight(100)))
    await walk(h, controller)
    assert controller.state.status is Status.PROMOTED
    assert h.traffic.promoted


async def test_input_drift_alone_is_rolled_back() -> None:
    h = Harness()
    h.reports[CANARY] = drift_report(CANARY, drifting=True, psi=0.4)
    controller = h.controller(plan(SetWeight(20), analysis(count=3), SetWeight(100)))
    start = h.clock.time()
    await walk(h, controller)

    rolled_back = h.last(DecisionKind.ROLLED_BACK)
    assert rolled_back.at == start + 30.0
    verdicts = {r.name: (r.verdict, r.value) for r in rolled_back.results}
    assert verdicts["drift"] == (Verdict.FAIL, 1.0)
    assert verdicts["errors"][0] is Verdict.PASS
    assert verdicts["latency"][0] is Verdict.PASS
    assert h.traffic.rolled_back
    assert not h.traffic.promoted


async def test_a_healthy_canary_is_promoted_after_the_sum_of_its_pauses() -> None:
    h = Harness()
    rollout = plan(SetWeight(10), Pause(60), SetWeight(50), Pause(120), SetWeight(100), Pause(30))
    controller = h.controller(rollout)
    start = h.clock.time()
    await walk(h, controller)

    assert rollout.pause_s == 210.0
    assert h.last(DecisionKind.PROMOTED).at == start + 210.0
    assert h.clock.time() == start + 210.0
    assert [c for c in h.traffic.calls if c[0] != "weight" or c[1] > 0] == [
        ("weight", 10.0),
        ("weight", 50.0),
        ("weight", 100.0),
        ("promote", 100.0),
    ]
    assert controller.state.status is Status.PROMOTED
    assert controller.state.weight == 100.0


async def test_a_healthy_canary_with_analyses_is_promoted_after_pauses_plus_analysis_runs() -> None:
    h = Harness()
    rollout = plan(
        SetWeight(10),
        Pause(60),
        analysis(30.0, count=3),
        SetWeight(50),
        analysis(20.0, count=2),
        Pause(45),
    )
    controller = h.controller(rollout)
    start = h.clock.time()
    await walk(h, controller)

    assert h.last(DecisionKind.PROMOTED).at == start + 60 + 3 * 30 + 2 * 20 + 45
    assert len(controller.state.analysis_runs) == 5
    assert h.kinds().count(DecisionKind.ANALYSIS) == 5


async def test_a_run_one_second_before_promotion_has_not_promoted_yet() -> None:
    h = Harness()
    controller = h.controller(plan(SetWeight(10), Pause(60)))
    await controller.tick()
    h.clock.advance(59.0)
    assert await controller.tick() == []
    assert controller.state.status is Status.RUNNING
    assert not h.traffic.promoted
    h.clock.advance(1.0)
    assert [d.kind for d in await controller.tick()] == [DecisionKind.PROMOTED]


@pytest.mark.parametrize("limit", [0, 2])
async def test_a_metric_source_that_errors_pauses_and_never_promotes(limit: int) -> None:
    h = Harness()
    h.static.set("error_rate", CANARY, None)  # unavailable, whatever we ask
    rollout = plan(SetWeight(10), analysis(30.0, count=2, consecutive_error_limit=limit))
    controller = h.controller(rollout)
    start = h.clock.time()
    await walk(h, controller)

    paused = h.last(DecisionKind.PAUSED)
    assert paused.at == start + 30.0 * (limit + 1)
    assert paused.status is Status.PAUSED
    assert paused.weight == 10.0
    assert paused.reason.startswith(f"inconclusive: {limit + 1} runs in a row")
    errors = next(r for r in paused.results if r.name == "errors")
    assert errors.verdict is Verdict.ERROR
    assert errors.value is None
    assert "no value for version '2'" in errors.reason
    # A week later: still paused, still at 10%, never promoted, nothing due.
    h.clock.advance(7 * 24 * 3600.0)
    assert await controller.tick() == []
    assert controller.due_at() is None
    assert controller.state.status is Status.PAUSED
    assert h.traffic.weight == 10.0
    assert not h.traffic.promoted
    assert not h.traffic.rolled_back


async def test_inconclusive_fail_rolls_back_instead_of_pausing() -> None:
    h = Harness()
    h.static.set("error_rate", CANARY, None)
    rollout = plan(
        SetWeight(10), analysis(30.0, consecutive_error_limit=1, inconclusive=Inconclusive.FAIL)
    )
    controller = h.controller(rollout)
    start = h.clock.time()
    await walk(h, controller)
    assert h.last(DecisionKind.ROLLED_BACK).at == start + 60.0
    assert controller.state.reason.startswith("inconclusive: 2 runs in a row")
    assert h.traffic.weight == 0.0
    assert DecisionKind.PAUSED not in h.kinds()


async def test_errored_runs_do_not_count_towards_count_and_are_retried() -> None:
    h = Harness()
    h.static.set("error_rate", CANARY, None)
    controller = h.controller(
        plan(SetWeight(10), analysis(30.0, count=2, consecutive_error_limit=3))
    )
    start = h.clock.time()
    await controller.tick()
    await step(h, controller)
    await step(h, controller)
    assert controller.state.consecutive_errors == 2
    assert controller.state.status is Status.RUNNING
    h.static.set("error_rate", CANARY, 0.001)
    await walk(h, controller)
    assert [r.verdict for r in controller.state.runs_at(1)] == [Verdict.ERROR] * 2 + [
        Verdict.PASS
    ] * 2
    assert h.last(DecisionKind.PROMOTED).at == start + 4 * 30.0


async def test_failures_within_the_limit_still_complete_the_analysis() -> None:
    h = Harness()
    controller = h.controller(plan(SetWeight(10), analysis(10.0, count=3, failure_limit=1)))
    await controller.tick()
    h.static.set("error_rate", CANARY, 0.05)
    await step(h, controller)
    h.static.set("error_rate", CANARY, 0.001)
    await walk(h, controller)
    assert [r.verdict for r in controller.state.runs_at(1)] == [
        Verdict.FAIL,
        Verdict.PASS,
        Verdict.PASS,
    ]
    assert controller.state.status is Status.PROMOTED


async def test_an_approval_pause_waits_until_the_canary_is_approved() -> None:
    h = Harness()
    rollout = RolloutPlan(
        MODEL, STABLE, CANARY, (SetWeight(10), Pause(until_approved=True), SetWeight(50)), 15.0
    )
    controller = h.controller(rollout)
    start = h.clock.time()
    await controller.tick()
    assert controller.state.status is Status.WAITING_APPROVAL
    assert h.last(DecisionKind.STEP).reason == "waiting for approval of iris 2"
    while h.clock.time() < start + 24 * 3600.0:
        await step(h, controller)  # asks every approval_poll_s
    assert controller.state.status is Status.WAITING_APPROVAL
    assert h.traffic.weight == 10.0
    assert h.approvals.asked == 1 + 24 * 3600 // 15
    assert h.clock.time() == start + 24 * 3600.0

    h.approvals.granted.add((MODEL, CANARY))
    made = await step(h, controller)
    assert [d.kind for d in made] == [
        DecisionKind.APPROVED,
        DecisionKind.WEIGHT,
        DecisionKind.PROMOTED,
    ]
    assert made[-1].at == start + 24 * 3600.0 + 15.0
    assert h.traffic.weight == 50.0
    assert h.traffic.promoted


# --- manual commands ------------------------------------------------------------------------


async def test_pause_holds_a_timed_pause_and_resume_keeps_its_remaining_time() -> None:
    h = Harness()
    controller = h.controller(plan(SetWeight(10), Pause(60), SetWeight(50)))
    start = h.clock.time()
    await controller.tick()
    h.clock.advance(20.0)
    paused = await controller.pause("looking at a dashboard")
    assert (paused.kind, paused.status, paused.reason) == (
        DecisionKind.PAUSED,
        Status.PAUSED,
        "looking at a dashboard",
    )
    h.clock.advance(1000.0)
    assert await controller.tick() == []
    assert controller.due_at() is None
    assert h.traffic.weight == 10.0
    resumed = await controller.resume()
    assert resumed.kind is DecisionKind.RESUMED
    assert controller.state.status is Status.RUNNING
    assert controller.due_at() == start + 1060.0  # 40 s of the pause were left
    await walk(h, controller)
    assert h.last(DecisionKind.PROMOTED).at == start + 1060.0


async def test_resume_after_an_inconclusive_pause_carries_on_with_the_analysis() -> None:
    h = Harness()
    h.static.set("error_rate", CANARY, None)
    controller = h.controller(
        plan(SetWeight(10), analysis(30.0, count=2, consecutive_error_limit=0))
    )
    await walk(h, controller)
    assert controller.state.status is Status.PAUSED
    h.clock.advance(500.0)
    h.static.set("error_rate", CANARY, 0.001)
    await controller.resume("metrics back")
    assert controller.state.consecutive_errors == 0
    resumed_at = h.clock.time()
    await walk(h, controller)
    assert h.last(DecisionKind.PROMOTED).at == resumed_at + 2 * 30.0


async def test_pause_resume_while_waiting_for_approval_returns_to_waiting() -> None:
    h = Harness()
    controller = h.controller(plan(SetWeight(10), Pause(until_approved=True)))
    await controller.tick()
    await controller.pause("hold")
    h.approvals.granted.add((MODEL, CANARY))
    assert await controller.tick() == []  # paused: approvals are not even asked
    await controller.resume()
    assert controller.state.status is Status.WAITING_APPROVAL
    assert [d.kind for d in await controller.tick()] == [
        DecisionKind.APPROVED,
        DecisionKind.PROMOTED,
    ]


async def test_abort_rolls_back_at_once_and_ends_the_rollout() -> None:
    h = Harness()
    controller = h.controller(plan(SetWeight(30), analysis(30.0), SetWeight(100)))
    await controller.tick()
    h.clock.advance(10.0)
    aborted = await controller.abort("bad canary, by hand")
    assert (aborted.kind, aborted.status, aborted.weight) == (
        DecisionKind.ABORTED,
        Status.ABORTED,
        0.0,
    )
    assert h.traffic.weight == 0.0
    assert h.traffic.rolled_back
    assert controller.due_at() is None
    assert await controller.tick() == []
    for command in (controller.abort("again"), controller.resume(), controller.pause("x")):
        with pytest.raises(RolloutStateError, match="is aborted"):
            await command
    with pytest.raises(RolloutStateError, match="promote: the rollout of iris 2 is aborted"):
        await controller.promote_now()


async def test_promote_now_skips_the_remaining_steps() -> None:
    h = Harness()
    controller = h.controller(plan(SetWeight(10), Pause(3600), SetWeight(50)))
    await controller.tick()
    promoted = await controller.promote_now("urgent fix")
    assert (promoted.kind, promoted.status, promoted.weight, promoted.step_index) == (
        DecisionKind.PROMOTED,
        Status.PROMOTED,
        100.0,
        1,
    )
    assert h.traffic.promoted
    assert not h.traffic.rolled_back
    with pytest.raises(RolloutStateError):
        await controller.abort("too late")


async def test_commands_that_the_status_does_not_allow_are_refused() -> None:
    h = Harness()
    controller = h.controller(plan(SetWeight(10), Pause(60)))
    with pytest.raises(
        RolloutStateError, match="resume: the rollout of iris 2 is running, not paused"
    ):
        await controller.resume()
    await controller.pause("hold")
    with pytest.raises(
        RolloutStateError, match=r"pause: .* is paused, not running or waiting_approval"
    ):
        await controller.pause("again")
    assert h.kinds() == [DecisionKind.PAUSED]


# --- state, restarts and the loop -----------------------------------------------------------


ROLLOUT = plan(
    SetWeight(10),
    Pause(60),
    SetWeight(40),
    analysis(30.0, count=3, failure_limit=1),
    SetWeight(100),
)


async def test_state_json_round_trip_mid_analysis_resumes_at_the_same_step_and_time() -> None:
    reference = Harness()
    reference_controller = reference.controller(ROLLOUT)
    await walk(reference, reference_controller)

    h = Harness()
    controller = h.controller(ROLLOUT)
    await controller.tick()
    await step(h, controller)  # the pause ends, weight 40, analysis begins
    h.static.set("error_rate", CANARY, 0.5)
    await step(h, controller)  # run 1: failed (within the limit)
    h.static.set("error_rate", CANARY, 0.001)
    await step(h, controller)  # run 2: passed
    state = controller.state
    assert (state.step_index, state.failures, len(state.runs_at(3))) == (3, 1, 2)

    text = json.dumps(state.to_json())
    restored = RolloutState.from_json(json.loads(text))
    assert restored == state
    assert restored.next_analysis_at == state.next_analysis_at == h.clock.time() + 30.0

    # A new process: fresh traffic split (weight 0), same clock time.
    h.traffic = Traffic()
    restarted = h.controller(ROLLOUT, restored)
    assert restarted.due_at() == h.clock.time()  # its first tick re-applies the weight
    assert await restarted.tick() == []
    assert h.traffic.calls == [("weight", 40.0)]
    assert restarted.due_at() == state.next_analysis_at
    await walk(h, restarted)
    assert h.last(DecisionKind.PROMOTED).at == reference.last(DecisionKind.PROMOTED).at
    assert [r.verdict for r in restarted.state.runs_at(3)] == [
        Verdict.FAIL,
        Verdict.PASS,
        Verdict.PASS,
    ]
    assert [(d.kind, d.at) for d in h.decisions[-3:]] == [
        (d.kind, d.at) for d in reference.decisions[-3:]
    ]


async def test_a_state_of_another_rollout_is_refused() -> None:
    h = Harness()
    with pytest.raises(ValueError, match="state: belongs to iris 3, not the plan's iris 2"):
        h.controller(ROLLOUT, RolloutState(MODEL, "3"))
    with pytest.raises(ValueError, match="state: step_index 9 is past the plan's 5 steps"):
        h.controller(ROLLOUT, RolloutState(MODEL, CANARY, step_index=9))


async def settle(clock: FakeClock, task: asyncio.Task[Any]) -> None:
    """Let the loop run until `task` sleeps on the clock again, waits for a command, or ends."""
    for _ in range(200):
        await asyncio.sleep(0)
        if task.done() or clock.sleepers:
            return


async def test_run_sleeps_until_each_due_time_and_promotes_on_time() -> None:
    h = Harness()
    controller = h.controller(ROLLOUT)
    start = h.clock.time()
    task = asyncio.create_task(controller.run())
    await settle(h.clock, task)
    while not task.done():
        due = controller.due_at()
        assert due is not None
        assert h.clock.sleepers == 1
        h.clock.advance(due - h.clock.time())
        await settle(h.clock, task)
    assert (await task).status is Status.PROMOTED
    assert h.last(DecisionKind.PROMOTED).at == start + 60 + 3 * 30


async def test_run_waits_while_paused_and_wakes_on_resume() -> None:
    h = Harness()
    h.static.set("error_rate", CANARY, None)
    controller = h.controller(
        plan(SetWeight(10), analysis(30.0, count=1, consecutive_error_limit=0))
    )
    task = asyncio.create_task(controller.run())
    await settle(h.clock, task)
    h.clock.advance(30.0)
    for _ in range(50):
        await asyncio.sleep(0)
    assert controller.state.status is Status.PAUSED
    assert h.clock.sleepers == 0
    assert not task.done()
    h.static.set("error_rate", CANARY, 0.001)
    await controller.resume()
    await settle(h.clock, task)
    assert h.clock.sleepers == 1  # back to sleeping until the next analysis run
    h.clock.advance(30.0)
    await settle(h.clock, task)
    assert (await task).status is Status.PROMOTED


async def test_abort_wakes_run_and_ends_it() -> None:
    h = Harness()
    controller = h.controller(plan(SetWeight(10), Pause(3600)))
    task = asyncio.create_task(controller.run())
    await settle(h.clock, task)
    await controller.abort("stop")
    for _ in range(50):  # no clock advance: the abort itself must wake the loop
        await asyncio.sleep(0)
    assert task.done()
    assert (await task).status is Status.ABORTED


# --- the state machine, at random -----------------------------------------------------------

GOOD, BAD = 0.001, 0.2
ONLY_ERRORS = (ERRORS,)


@st.composite
def rollout_plans(draw: st.DrawFn) -> RolloutPlan:
    steps: list[Step] = [SetWeight(draw(st.integers(1, 100)))]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["weight", "pause", "approval", "analysis"]))
        if kind == "weight":
            steps.append(SetWeight(draw(st.integers(1, 100))))
        elif kind == "pause":
            steps.append(Pause(draw(st.sampled_from([1.0, 15.0, 60.0]))))
        elif kind == "approval":
            steps.append(Pause(until_approved=True))
        else:
            count = draw(st.integers(1, 4))
            steps.append(
                analysis(
                    draw(st.sampled_from([5.0, 10.0, 30.0])),
                    count=count,
                    failure_limit=draw(st.integers(0, count - 1)),
                    consecutive_error_limit=draw(st.integers(0, 2)),
                    inconclusive=draw(st.sampled_from(list(Inconclusive))),
                    guardrails=ONLY_ERRORS,
                )
            )
    return RolloutPlan(MODEL, STABLE, CANARY, tuple(steps), approval_poll_s=10.0)


class RolloutMachine(RuleBasedStateMachine):
    """Random metric outcomes, clock advances, approvals, commands and restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.h = Harness()
        self.controller = self.h.controller(plan(SetWeight(10)))
        self.promoted_by_hand = False

    def teardown(self) -> None:
        self.loop.close()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize(rollout=rollout_plans())
    def start(self, rollout: RolloutPlan) -> None:
        self.controller = self.h.controller(rollout)

    @rule(value=st.sampled_from([GOOD, BAD, None]))
    def canary_metrics(self, value: float | None) -> None:
        self.h.static.set("error_rate", CANARY, value)

    @rule(seconds=st.sampled_from([0.0, 0.5, 5.0, 10.0, 30.0, 100.0]))
    def advance(self, seconds: float) -> None:
        self.h.clock.advance(seconds)
        self._run(self.controller.tick())

    @rule()
    def until_due(self) -> None:
        if self.controller.due_at() is not None:
            self._run(step(self.h, self.controller))

    @rule()
    def approve(self) -> None:
        self.h.approvals.granted.add((MODEL, CANARY))

    @rule(command=st.sampled_from(["pause", "resume", "abort", "promote_now"]))
    def command(self, command: str) -> None:
        status = self.controller.state.status
        allowed = {
            "pause": {Status.RUNNING, Status.WAITING_APPROVAL},
            "resume": {Status.PAUSED},
            "abort": {Status.RUNNING, Status.WAITING_APPROVAL, Status.PAUSED},
            "promote_now": {Status.RUNNING, Status.WAITING_APPROVAL, Status.PAUSED},
        }[command]
        method = getattr(self.controller, command)
        args: Sequence[str] = ("by hand",) if command in ("pause", "abort") else ()
        if status not in allowed:
            with pytest.raises(RolloutStateError):
                self._run(method(*args))
            return
        decision = self._run(method(*args))
        assert decision is self.h.decisions[-1]
        self.promoted_by_hand |= command == "promote_now"

    @rule()
    def restart(self) -> None:
        """A new process: the state from JSON, the same traffic split (the gateway lives on)."""
        text = json.dumps(self.controller.state.to_json())
        state = RolloutState.from_json(json.loads(text))
        assert state == self.controller.state
        self.controller = self.h.controller(self.controller.plan, state)

    @invariant()
    def rolled_back_means_weight_0(self) -> None:
        state = self.controller.state
        if state.status in (Status.ROLLED_BACK, Status.ABORTED):
            assert state.weight == 0.0
            assert self.h.traffic.weight == 0.0
            assert self.h.traffic.rolled_back
            assert not self.h.traffic.promoted

    @invariant()
    def promoted_only_after_all_steps(self) -> None:
        state = self.controller.state
        if state.status is Status.PROMOTED:
            assert self.promoted_by_hand or state.step_index == len(self.controller.plan.steps)
            assert self.h.traffic.promoted
            assert not self.h.traffic.rolled_back
            assert state.weight == 100.0

    @invariant()
    def never_both(self) -> None:
        assert not (self.h.traffic.promoted and self.h.traffic.rolled_back)
        ends = [d for d in self.h.decisions if d.kind in TERMINAL_KINDS]
        assert len(ends) <= 1
        assert not ends or ends[0] is self.h.decisions[-1]

    @invariant()
    def decisions_are_monotone_in_time(self) -> None:
        times = [d.at for d in self.h.decisions]
        assert times == sorted(times)
        assert all(t <= self.h.clock.time() for t in times)

    @invariant()
    def traffic_follows_the_state(self) -> None:
        state = self.controller.state
        if not state.status.terminal and self.h.traffic.calls:
            assert self.h.traffic.weight == state.weight

    @invariant()
    def failures_stay_within_the_limit_while_live(self) -> None:
        state = self.controller.state
        steps = self.controller.plan.steps
        if not state.status.terminal and state.step_index < len(steps):
            current = steps[state.step_index]
            if isinstance(current, Analysis):
                assert state.failures <= current.failure_limit


TestRolloutMachine = RolloutMachine.TestCase
TestRolloutMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
