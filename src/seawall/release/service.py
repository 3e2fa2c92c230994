"""`RolloutService`: rollouts stored in the database, each run by a controller task in the leader.

`start` stores a rollout (one live rollout per model) and, in the leader, starts a
`RolloutRunner` for it: a task running its `RolloutController`, each decision saved with the new
state and audited in one transaction, restarted from the stored state after a backoff if it
fails. `recover` (at start-up) resumes every live rollout from the database, at the step and
timers it had, and starts the watch: every `poll_s` it asks `leader()` (a lease, so one replica
runs the loops), stops the runners if leadership was lost, starts the rollouts other processes
stored, and restarts the runners whose rollout another process changed.

Manual commands (`pause`, `resume`, `abort`, `promote`) go through the rollout's controller
here, or, when this process does not run it, through a controller bound to the stored state
for the one command; either way the decision is saved as the command's actor's. A command the
rollout's status does not allow is a `RolloutStateError` (409).

What stays per process: a traffic target is the process's own (a `TrafficSplit` in memory), so
the leader's controllers move the leader's split, and another replica's split changes only by
the commands that replica runs; values pushed with `push` stay in the process that got them.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from seawall.clock import Clock
from seawall.errors import InvalidInputError
from seawall.release.controller import ApprovalGate, RolloutController, TrafficTarget
from seawall.release.errors import MetricUnavailableError, RolloutStateError
from seawall.release.metrics import MetricSource, PushedSource
from seawall.release.plan import MetricRef, Origin, RolloutPlan
from seawall.release.records import DecisionRecord, RolloutRecord
from seawall.release.runner import Binding, RolloutRunner, acting_as
from seawall.release.store import MAX_LIST, RolloutStore
from seawall.store.audit import AuditLog
from seawall.store.engine import Database

__all__ = [
    "DEFAULT_MAX_PUSHED_MODELS",
    "DEFAULT_MAX_RESTART_BACKOFF_S",
    "DEFAULT_POLL_S",
    "DEFAULT_RESTART_BACKOFF_S",
    "RolloutService",
    "RolloutServiceOptions",
]

logger = logging.getLogger("seawall.release")

#: First wait before a failed controller is restarted from the stored state.
DEFAULT_RESTART_BACKOFF_S = 5.0
#: Longest wait between restarts of a controller that keeps failing.
DEFAULT_MAX_RESTART_BACKOFF_S = 300.0
#: Seconds between two looks at leadership and at rollouts changed by other processes.
DEFAULT_POLL_S = 15.0
#: Models business metrics may be pushed for at once (each keeps its own series).
DEFAULT_MAX_PUSHED_MODELS = 1000

Leader = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class RolloutServiceOptions:
    """Timings of the service's background work."""

    restart_backoff_s: float = DEFAULT_RESTART_BACKOFF_S
    max_restart_backoff_s: float = DEFAULT_MAX_RESTART_BACKOFF_S
    poll_s: float = DEFAULT_POLL_S
    max_pushed_models: int = DEFAULT_MAX_PUSHED_MODELS

    def __post_init__(self) -> None:
        for name in ("restart_backoff_s", "max_restart_backoff_s", "poll_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number of seconds, got {value}")
        if self.max_restart_backoff_s < self.restart_backoff_s:
            raise ValueError(
                f"max_restart_backoff_s: {self.max_restart_backoff_s} is below "
                f"restart_backoff_s {self.restart_backoff_s}"
            )
        if self.max_pushed_models < 1:
            raise ValueError(f"max_pushed_models: at least 1, got {self.max_pushed_models}")


class RolloutService:
    """Starts, runs, commands and resumes rollouts; see the module docstring."""

    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        *,
        clock: Clock,
        traffic: Callable[[RolloutPlan], TrafficTarget],
        metrics: Callable[[RolloutPlan], MetricSource],
        approvals: ApprovalGate,
        leader: Leader | None = None,
        options: RolloutServiceOptions | None = None,
    ) -> None:
        """`traffic`/`metrics` build a plan's traffic target and metric source, at `start` (to
        refuse a plan early) and whenever a controller is (re)built, so they should share their
        clients (an HTTP session) between calls. `leader`: True while this process may run
        the controllers (None: always, a single process)."""
        self.store = RolloutStore(database, audit, clock=clock)
        self.options = options or RolloutServiceOptions()
        self._clock = clock
        self._traffic = traffic
        self._metrics = metrics
        self._approvals = approvals
        self._leader = leader
        self._runners: dict[str, RolloutRunner] = {}
        self._pushed: dict[str, PushedSource] = {}
        self._watch: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()
        self._closed = False

    async def start(self, plan: RolloutPlan, *, actor: str) -> RolloutRecord:
        """Store a rollout of `plan` and run it (in the leader); ConflictError if one is live."""
        self._check_open()
        try:  # an unrouted model or a bad source is refused before anything is stored
            self._traffic(plan)
            self._source(plan)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise InvalidInputError(field, reason or "refused") from None
        record = await self.store.create(plan, actor=actor)
        if await self._is_leader():
            async with self._sync_lock:  # the watch may be starting runners too
                await self._run(record)
        return record

    async def get(self, model: str) -> RolloutRecord:
        """`model`'s live rollout, else its latest; NotFoundError if it never had one."""
        return await self.store.get(model)

    async def list(self, *, active_only: bool = False, limit: int = 100) -> list[RolloutRecord]:
        """Rollouts, newest first (only the live ones with `active_only`)."""
        return await self.store.list(active_only=active_only, limit=limit)

    async def history(self, model: str, *, limit: int = 100) -> builtins.list[DecisionRecord]:
        """The decisions of `model`'s current rollout (the last `limit`), oldest first."""
        return await self.store.history(model, limit=limit)

    async def pause(self, model: str, *, actor: str, reason: str) -> RolloutRecord:
        """Hold the rollout where it is (traffic unchanged) until resumed."""
        return await self._command(model, RolloutController.pause, actor, reason)

    async def resume(self, model: str, *, actor: str, reason: str) -> RolloutRecord:
        """Carry on after a pause (by hand or an inconclusive analysis)."""
        return await self._command(model, RolloutController.resume, actor, reason)

    async def abort(self, model: str, *, actor: str, reason: str) -> RolloutRecord:
        """Roll the canary back now."""
        return await self._command(model, RolloutController.abort, actor, reason)

    async def promote(self, model: str, *, actor: str, reason: str) -> RolloutRecord:
        """Promote the canary now, skipping the remaining steps."""
        return await self._command(model, RolloutController.promote_now, actor, reason)

    def push(self, model: str, name: str, version: str, value: float) -> None:
        """Record a business metric's value for `version` of `model` (guardrails `pushed`)."""
        if not isinstance(model, str) or not model:
            raise InvalidInputError("model", "must not be empty")
        source = self._pushed.get(model)
        if source is None:
            if len(self._pushed) >= self.options.max_pushed_models:
                limit = self.options.max_pushed_models
                raise InvalidInputError("model", f"values are kept for {limit} models at most")
            source = PushedSource(clock=self._clock)
        try:
            source.push(name, version, value)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise InvalidInputError(field, reason) from None
        self._pushed[model] = source

    async def recover(self) -> int:
        """Resume every live rollout from the database (in the leader) and start the watch.

        The number of rollouts whose controllers this call started."""
        self._check_open()
        if self._watch is None:
            self._watch = asyncio.create_task(self._watching(), name="rollout-watch")
        return await self._sync()

    async def aclose(self) -> None:
        """Stop the watch and every controller task; the rollouts stay as stored."""
        self._closed = True
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        await self._stop_all()

    # ============================================================ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the rollout service is closed")

    def _source(self, plan: RolloutPlan) -> MetricSource:
        return _WithPushed(self._metrics(plan), self._pushed, plan.model)

    def _bind(self, record: RolloutRecord) -> Binding:
        plan, state = record.rollout_plan(), record.rollout_state()
        traffic = self._traffic(plan)

        def build(bound: RolloutRecord, hook: Binding) -> RolloutController:
            return RolloutController(
                plan,
                traffic=traffic,
                metrics=self._source(plan),
                approvals=self._approvals,
                clock=self._clock,
                on_decision=hook,
                state=state,
            )

        return Binding(self.store, record, build, traffic)

    async def _run(self, record: RolloutRecord) -> bool:
        """Run `record`'s controller here unless it runs already; True if started."""
        runner = self._runners.get(record.model)
        if runner is not None and runner.rollout_id == record.id and not runner.done:
            return False
        if runner is not None:
            await runner.stop()
        opts = self.options
        runner = RolloutRunner(
            record.id,
            store=self.store,
            bind=self._bind,
            clock=self._clock,
            backoff_s=opts.restart_backoff_s,
            max_backoff_s=opts.max_restart_backoff_s,
        )
        self._runners[record.model] = runner
        runner.start()
        return True

    async def _command(
        self,
        model: str,
        command: Callable[[RolloutController, str], Awaitable[object]],
        actor: str,
        reason: str,
    ) -> RolloutRecord:
        self._check_open()
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError("reason", "say why (it goes into the audit log)")
        runner = self._runners.get(model)
        # A controller that was just started may still be loading the rollout: wait for it,
        # or two controllers would act on one rollout.
        binding = None if runner is None or runner.done else await runner.wait_bound()
        if binding is None:  # not run here: bind the stored state for this one command
            record = await self.store.get(model)
            if not record.live:
                raise RolloutStateError(
                    f"the rollout of {model} {record.canary_version} is {record.status}"
                )
            binding = self._bind(record)
        with acting_as(actor):
            try:
                await command(binding.controller, reason)
            except RolloutStateError:
                raise
            except Exception:
                if runner is not None and runner.binding is binding:
                    await runner.restart()  # its controller may be ahead of the database
                raise
        return binding.record

    async def _is_leader(self) -> bool:
        if self._leader is None:
            return True
        try:
            return await self._leader()
        except Exception:  # a lease that cannot be checked is not held
            logger.exception("rollouts: could not check the leader lease")
            return False

    async def _sync(self) -> int:
        async with self._sync_lock:
            if not await self._is_leader():
                await self._stop_all()
                return 0
            live = await self.store.list(active_only=True, limit=MAX_LIST)
            started = 0
            for record in live:
                runner = self._runners.get(record.model)
                binding = None if runner is None else runner.binding
                if (
                    binding is not None
                    and runner is not None
                    and await binding.behind(record.revision)
                ):
                    await runner.restart()  # changed by another process
                elif await self._run(record):
                    started += 1
            ids = {r.id for r in live}
            for runner in builtins.list(self._runners.values()):
                if runner.rollout_id not in ids:
                    await self._follow_end(runner)
            return started

    async def _follow_end(self, runner: RolloutRunner) -> None:
        """Restart a runner whose rollout another process ended, so it follows that end."""
        binding = runner.binding  # None: done, or restarting (it will load the end itself)
        if binding is None or runner.done:
            return
        record = await self.store.load(runner.rollout_id)
        if await binding.behind(record.revision):
            await runner.restart()

    async def _watching(self) -> None:
        while True:
            await self._clock.sleep(self.options.poll_s)
            try:
                await self._sync()
            except Exception:  # the database may be down for a while: try again next poll
                logger.exception("rollouts: could not look for changed rollouts")

    async def _stop_all(self) -> None:
        runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            await runner.stop()


class _WithPushed:
    """Metrics pushed through the service first, everything else from the plan's source."""

    def __init__(self, source: MetricSource, pushed: dict[str, PushedSource], model: str) -> None:
        self._source = source
        self._pushed = pushed
        self._model = model

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        if metric.origin is Origin.PUSHED:
            pushed = self._pushed.get(self._model) or _NOTHING_PUSHED
            return await pushed.value(metric, variant_version, window_s)
        return await self._source.value(metric, variant_version, window_s)


class _NothingPushed:
    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        raise MetricUnavailableError(f"{metric.name}: nothing pushed for {variant_version!r}")


_NOTHING_PUSHED = _NothingPushed()
