"""`RolloutController`: walks a rollout plan on a clock, judging the canary and acting on it.

`tick()` does whatever is due now: a `SetWeight` step is applied at once and the next step
begins in the same tick; a timed pause ends when its duration has passed; an approval pause
asks the `ApprovalGate` each tick (`run()` ticks every `plan.approval_poll_s`); an analysis
step measures its guardrails every `interval_s`. A failed analysis rolls the canary back (weight
0) in the tick that measured the failure, so within one interval of it; an inconclusive one
pauses for a human (or rolls back, if the plan says `inconclusive: fail`). After the last step
the canary is promoted. `pause`, `resume`, `abort` and `promote_now` are the manual commands.

Every change of state is a `Decision` passed to `on_decision` (after the state changed, so the
hook may persist `controller.state`). Traffic moves before the decision is recorded: a rollback
must not wait for the audit log. A controller built with a restored state carries on where it
left off, and its first tick re-applies the state's weight to the traffic target. Errors of the
traffic target, the approval gate or the hook propagate out of `tick()` and `run()`: whoever
runs the loop restarts it from the persisted state. Commands wait for a tick in progress, which
is bounded by the analysis's `metric_timeout_s`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from seawall.clock import Clock
from seawall.release.analysis import GuardrailResult, Verdict, run_analysis
from seawall.release.errors import RolloutStateError
from seawall.release.metrics import MetricSource
from seawall.release.plan import Analysis, Inconclusive, Pause, RolloutPlan, SetWeight, Step
from seawall.release.state import Decision, DecisionKind, RolloutState, Status

__all__ = ["ApprovalGate", "DecisionHook", "RolloutController", "TrafficTarget"]

#: A time within this of a due time counts as due (sums of float durations are not exact).
_DUE_TOLERANCE_S = 1e-6
_ACTIVE = frozenset({Status.RUNNING, Status.WAITING_APPROVAL})
_LIVE = frozenset({Status.RUNNING, Status.WAITING_APPROVAL, Status.PAUSED})


class TrafficTarget(Protocol):
    """The traffic split of the plan's model, as the controller drives it."""

    async def set_canary_weight(self, percent: float) -> None:
        """Send `percent` of the traffic to the canary version."""
        ...

    async def promote(self) -> None:
        """Make the canary the stable version (it then gets all the traffic)."""
        ...

    async def rollback(self) -> None:
        """Send no traffic to the canary any more and clear it; the stable version serves all."""
        ...


class ApprovalGate(Protocol):
    """Whether a version was approved (the registry's approvals)."""

    async def approved(self, model: str, version: str) -> bool:
        """True once `version` of `model` has the approvals it needs."""
        ...


DecisionHook = Callable[[Decision], Awaitable[None]]


class RolloutController:
    """Drives one rollout plan: state machine, guardrail analysis, traffic and decisions."""

    def __init__(
        self,
        plan: RolloutPlan,
        *,
        traffic: TrafficTarget,
        metrics: MetricSource,
        approvals: ApprovalGate,
        clock: Clock,
        on_decision: DecisionHook,
        state: RolloutState | None = None,
    ) -> None:
        self._plan = plan
        self._traffic = traffic
        self._metrics = metrics
        self._approvals = approvals
        self._clock = clock
        self._on_decision = on_decision
        self._state = state or RolloutState(plan.model, plan.canary_version)
        _check_state(plan, self._state)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._synced = False
        self._approval_checked_at: float | None = None
        self._made: list[Decision] = []

    @property
    def plan(self) -> RolloutPlan:
        return self._plan

    @property
    def state(self) -> RolloutState:
        return self._state

    def due_at(self) -> float | None:
        """Wall time at which `tick` next has work; None when only a command can change things."""
        state, now = self._state, self._clock.time()
        if state.status.terminal or state.status is Status.PAUSED:
            return None
        if not self._synced or state.step_index >= len(self._plan.steps):
            return now
        step = self._plan.steps[state.step_index]
        if state.step_started_at is None or isinstance(step, SetWeight):
            return now
        if isinstance(step, Analysis):
            return now if state.next_analysis_at is None else state.next_analysis_at
        if step.duration_s is not None:
            return state.step_started_at + step.duration_s
        checked = self._approval_checked_at
        return (now if checked is None else checked) + self._plan.approval_poll_s

    async def tick(self) -> list[Decision]:
        """Do whatever is due now; the decisions made, in order."""
        async with self._lock:
            self._made = []
            if self._state.status.terminal:
                return []
            if not self._synced:
                await self._traffic.set_canary_weight(self._state.weight)
                self._synced = True
            if self._state.status not in _ACTIVE:
                return []
            for _ in range(len(self._plan.steps) + 1):
                if not await self._work() or self._state.status not in _ACTIVE:
                    break
            return self._made

    async def run(self) -> RolloutState:
        """Tick whenever something is due until the rollout is promoted, rolled back or aborted."""
        while True:
            self._wake.clear()
            await self.tick()
            if self._state.status.terminal:
                return self._state
            await self._sleep_until(self.due_at())

    async def pause(self, reason: str) -> Decision:
        """Stop where the rollout is (traffic stays as it is) until `resume`."""
        return await self._command("pause", _ACTIVE, self._pause, reason)

    async def resume(self, reason: str = "resumed by hand") -> Decision:
        """Carry on after a pause; the step's timers are shifted by the time spent paused."""
        return await self._command("resume", frozenset({Status.PAUSED}), self._resume, reason)

    async def abort(self, reason: str) -> Decision:
        """Roll the canary back now."""
        return await self._command("abort", _LIVE, self._abort, reason)

    async def promote_now(self, reason: str = "promoted by hand") -> Decision:
        """Promote the canary now, skipping the remaining steps."""
        return await self._command("promote", _LIVE, self._promote, reason)

    # ------------------------------------------------------------------ steps

    async def _work(self) -> bool:
        """Work on the current step; True when it finished and the next one may begin."""
        state, steps = self._state, self._plan.steps
        if state.step_index >= len(steps):
            await self._promote(f"all {len(steps)} steps done")
            return False
        step = steps[state.step_index]
        if state.step_started_at is None:
            await self._enter(step)
        if isinstance(step, SetWeight):
            return self._next_step()
        if isinstance(step, Pause):
            return await self._pause_step(step)
        return await self._analysis_step(step)

    async def _enter(self, step: Step) -> None:
        now = self._clock.time()
        if isinstance(step, SetWeight):
            await self._traffic.set_canary_weight(step.percent)
            self._update(weight=step.percent, step_started_at=now)
            await self._decide(DecisionKind.WEIGHT, f"canary weight {step.percent:g}%")
        elif isinstance(step, Pause) and step.until_approved:
            self._update(status=Status.WAITING_APPROVAL, step_started_at=now)
            version = f"{self._plan.model} {self._plan.canary_version}"
            await self._decide(DecisionKind.STEP, f"waiting for approval of {version}")
        elif isinstance(step, Pause):
            self._update(step_started_at=now)
            await self._decide(DecisionKind.STEP, f"pause for {step.duration_s:g} s")
        else:
            self._update(step_started_at=now, next_analysis_at=now + step.interval_s)
            reason = f"analysis: {step.count} run(s), one every {step.interval_s:g} s"
            await self._decide(DecisionKind.STEP, reason)

    def _next_step(self) -> bool:
        self._update(
            step_index=self._state.step_index + 1,
            status=Status.RUNNING,
            failures=0,
            consecutive_errors=0,
            step_started_at=None,
            next_analysis_at=None,
        )
        return True

    async def _pause_step(self, step: Pause) -> bool:
        now = self._clock.time()
        if step.duration_s is not None:
            started = self._state.step_started_at
            started = now if started is None else started
            return _due(now, started + step.duration_s) and self._next_step()
        self._approval_checked_at = now
        if not await self._approvals.approved(self._plan.model, self._plan.canary_version):
            return False
        self._update(status=Status.RUNNING)
        await self._decide(DecisionKind.APPROVED, f"{self._plan.canary_version} approved")
        return self._next_step()

    async def _analysis_step(self, step: Analysis) -> bool:
        state = self._state
        if state.next_analysis_at is not None and not _due(
            self._clock.time(), state.next_analysis_at
        ):
            return False
        run = await run_analysis(
            self._plan, state.step_index, metrics=self._metrics, clock=self._clock
        )
        failed, errored = run.verdict is Verdict.FAIL, run.verdict is Verdict.ERROR
        self._update(
            analysis_runs=(*state.analysis_runs, run),
            failures=state.failures + failed,
            consecutive_errors=state.consecutive_errors + 1 if errored else 0,
            next_analysis_at=run.at + step.interval_s,
        )
        state = self._state
        concluded = sum(r.verdict is not Verdict.ERROR for r in state.runs_at(state.step_index))
        reason = (
            f"run {len(state.runs_at(state.step_index))}: {run.verdict}; {concluded}/{step.count} "
            f"concluded, {state.failures} failed (limit {step.failure_limit}), "
            f"{state.consecutive_errors} errored in a row (limit {step.consecutive_error_limit})"
        )
        await self._decide(DecisionKind.ANALYSIS, reason, run.results)
        if state.failures > step.failure_limit:
            failing = "; ".join(r.reason for r in run.results if r.verdict is Verdict.FAIL)
            why = (
                f"{state.failures} failed run(s), over the limit of {step.failure_limit}: {failing}"
            )
            await self._roll_back(DecisionKind.ROLLED_BACK, why, run.results)
            return False
        if state.consecutive_errors > step.consecutive_error_limit:
            await self._inconclusive(step, run.results)
            return False
        return concluded >= step.count and self._next_step()

    async def _inconclusive(self, step: Analysis, results: Sequence[GuardrailResult]) -> None:
        errors = self._state.consecutive_errors
        why = (
            f"inconclusive: {errors} runs in a row with unavailable metrics "
            f"(limit {step.consecutive_error_limit})"
        )
        if step.inconclusive is Inconclusive.FAIL:
            await self._roll_back(DecisionKind.ROLLED_BACK, why, results)
            return
        self._update(status=Status.PAUSED, paused_at=self._clock.time(), reason=why)
        await self._decide(DecisionKind.PAUSED, why, results)

    # --------------------------------------------------------------- outcomes

    async def _roll_back(
        self, kind: DecisionKind, reason: str, results: Sequence[GuardrailResult] = ()
    ) -> None:
        await self._traffic.rollback()
        status = Status.ABORTED if kind is DecisionKind.ABORTED else Status.ROLLED_BACK
        self._update(
            status=status, weight=0.0, reason=reason, next_analysis_at=None, paused_at=None
        )
        await self._decide(kind, reason, results)

    async def _promote(self, reason: str) -> None:
        await self._traffic.promote()
        self._update(
            status=Status.PROMOTED,
            weight=100.0,
            reason=reason,
            next_analysis_at=None,
            paused_at=None,
        )
        await self._decide(DecisionKind.PROMOTED, reason)

    async def _abort(self, reason: str) -> None:
        await self._roll_back(DecisionKind.ABORTED, reason)

    async def _pause(self, reason: str) -> None:
        self._update(status=Status.PAUSED, paused_at=self._clock.time(), reason=reason)
        await self._decide(DecisionKind.PAUSED, reason)

    async def _resume(self, reason: str) -> None:
        state, now = self._state, self._clock.time()
        paused_s = now - (state.paused_at if state.paused_at is not None else now)
        step = (
            self._plan.steps[state.step_index] if state.step_index < len(self._plan.steps) else None
        )
        waiting = (
            isinstance(step, Pause) and step.until_approved and state.step_started_at is not None
        )
        self._update(
            status=Status.WAITING_APPROVAL if waiting else Status.RUNNING,
            paused_at=None,
            consecutive_errors=0,
            step_started_at=_shift(state.step_started_at, paused_s),
            next_analysis_at=_shift(state.next_analysis_at, paused_s),
            reason=reason,
        )
        await self._decide(DecisionKind.RESUMED, reason)

    # ------------------------------------------------------------- machinery

    async def _command(
        self,
        name: str,
        allowed: frozenset[Status],
        action: Callable[[str], Awaitable[None]],
        reason: str,
    ) -> Decision:
        async with self._lock:
            status = self._state.status
            if status not in allowed:
                rollout = f"{self._plan.model} {self._plan.canary_version}"
                expected = " or ".join(sorted(s.value for s in allowed))
                raise RolloutStateError(
                    f"{name}: the rollout of {rollout} is {status}, not {expected}"
                )
            self._made = []
            await action(reason)
            decision = self._made[-1]
        self._wake.set()
        return decision

    def _update(self, **changes: Any) -> None:
        self._state = replace(self._state, **changes)

    async def _decide(
        self, kind: DecisionKind, reason: str, results: Sequence[GuardrailResult] = ()
    ) -> None:
        state = self._state
        decision = Decision(
            kind,
            state.step_index,
            state.status,
            state.weight,
            reason,
            tuple(results),
            self._clock.time(),
        )
        self._made.append(decision)
        await self._on_decision(decision)

    async def _sleep_until(self, due: float | None) -> None:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if due is not None:
            delay = max(0.0, due - self._clock.time())
            waits.append(asyncio.ensure_future(self._clock.sleep(delay)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


def _due(now: float, at: float) -> bool:
    return now + _DUE_TOLERANCE_S >= at


def _shift(at: float | None, seconds: float) -> float | None:
    return None if at is None else at + seconds


def _check_state(plan: RolloutPlan, state: RolloutState) -> None:
    if (state.model, state.canary_version) != (plan.model, plan.canary_version):
        raise ValueError(
            f"state: belongs to {state.model} {state.canary_version}, "
            f"not the plan's {plan.model} {plan.canary_version}"
        )
    if state.step_index > len(plan.steps):
        raise ValueError(
            f"state: step_index {state.step_index} is past the plan's {len(plan.steps)} steps"
        )
