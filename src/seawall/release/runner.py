"""`RolloutRunner`: runs one stored rollout's controller in a task, persisting and restarting it.

A `Binding` ties a controller to its stored rollout: it is the controller's `on_decision` hook,
saving each decision with the new state at the revision it last saw (so a stale controller is
refused, see `RolloutStore.save`), under the actor of the command being run (`acting_as`), else
`system`. The runner's task loads the rollout, binds a controller and runs it to the end; if
the controller raises (a traffic target, the approval gate or the database failed), the error
is logged and, after a backoff on the clock (doubling up to a maximum, back to the start after
a decision was saved), the rollout is loaded again and carries on from its stored state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from seawall.clock import Clock
from seawall.release.controller import RolloutController, TrafficTarget
from seawall.release.records import RolloutRecord
from seawall.release.state import Decision, Status
from seawall.release.store import RolloutStore

__all__ = ["SYSTEM_ACTOR", "Binding", "RolloutRunner", "acting_as"]

logger = logging.getLogger("seawall.release")

#: The actor of decisions the controller makes on its own.
SYSTEM_ACTOR = "system"

_ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar(
    "seawall_rollout_actor", default=SYSTEM_ACTOR
)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Decisions saved inside the block (in this task) are recorded as `actor`'s."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


class Binding:
    """A controller bound to its stored rollout: each decision is saved with the new state."""

    def __init__(
        self,
        store: RolloutStore,
        record: RolloutRecord,
        build: Callable[[RolloutRecord, Binding], RolloutController],
        traffic: TrafficTarget,
    ) -> None:
        self.record = record
        self.traffic = traffic
        self.saves = 0
        self.lock = asyncio.Lock()  # a save and the revision it leaves change together
        self._store = store
        self.controller = build(record, self)

    async def __call__(self, decision: Decision) -> None:
        async with self.lock:
            self.record, _ = await self._store.save(
                self.record.id,
                self.controller.state,
                decision,
                actor=_ACTOR.get(),
                revision=self.record.revision,
            )
            self.saves += 1

    async def behind(self, revision: int) -> bool:
        """True if the stored rollout is at a later revision than this controller saw."""
        async with self.lock:
            return revision > self.record.revision


Bind = Callable[[RolloutRecord], Binding]


#: How long a command waits for a just-started controller to load its rollout (wall time: I/O).
BIND_TIMEOUT_S = 10.0


class RolloutRunner:
    """Runs the controller of stored rollout `rollout_id` until it ends; restarts it on errors."""

    def __init__(
        self,
        rollout_id: int,
        *,
        store: RolloutStore,
        bind: Bind,
        clock: Clock,
        backoff_s: float,
        max_backoff_s: float,
    ) -> None:
        self.rollout_id = rollout_id
        self.binding: Binding | None = None
        self._store = store
        self._bind = bind
        self._clock = clock
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self._ran = False
        self._bound = asyncio.Event()  # set once `binding` is set, or the task has ended

    @property
    def done(self) -> bool:
        """The task ended: the rollout is over (or the runner was stopped)."""
        return self._task is not None and self._task.done()

    async def wait_bound(self, timeout_s: float = BIND_TIMEOUT_S) -> Binding | None:
        """The controller the task runs, once it has loaded the rollout (None: it ended)."""
        if self._task is not None and not self._task.done() and self.binding is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bound.wait(), timeout_s)
        return None if self.done else self.binding

    def start(self) -> asyncio.Task[None]:
        """Start the task (decisions in it are `system`'s, whoever calls this)."""
        self._bound.clear()
        self._task = asyncio.create_task(
            self._supervise(), name=f"rollout-{self.rollout_id}", context=contextvars.Context()
        )
        return self._task

    async def restart(self) -> None:
        """Drop the controller and carry on from the stored state now (it changed elsewhere)."""
        await self.stop()
        self.start()

    async def stop(self) -> None:
        """Cancel the task; the rollout stays as stored."""
        task, self._task, self.binding = self._task, None, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _supervise(self) -> None:
        delay = self._backoff_s
        while True:
            binding = None
            try:
                record = await self._store.load(self.rollout_id)
                if record.live:
                    binding = self.binding = self._bind(record)
                    self._bound.set()
                    self._ran = True
                    _log_start(record)
                    await binding.controller.run()
                elif self._ran:
                    await _follow(record, self._bind(record).traffic)
                self._bound.set()
                return
            except Exception:  # any failure: log it, carry on from the stored state
                logger.exception(
                    "rollout %d: the controller failed; carrying on from the stored state in %g s",
                    self.rollout_id,
                    delay,
                )
            self.binding = None
            if binding is not None and binding.saves:
                delay = self._backoff_s
            await self._clock.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)


def _name(record: RolloutRecord) -> str:
    return f"rollout {record.id} of {record.model} {record.canary_version}"


def _log_start(record: RolloutRecord) -> None:
    logger.info(
        "%s: controller running from step %d (%s, revision %d)",
        _name(record),
        record.step_index,
        record.status,
        record.revision,
    )


async def _follow(record: RolloutRecord, traffic: TrafficTarget) -> None:
    """Apply the end another process gave a rollout this one was running to its own traffic."""
    logger.info("%s: %s by another process; following", _name(record), record.status)
    if record.status is Status.PROMOTED:
        await traffic.promote()
    else:
        await traffic.rollback()
