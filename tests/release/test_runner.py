"""Bindings save each decision as the acting actor at the revision they saw; runners restart a
failing controller after a doubling backoff and follow an end another process stored."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from seawall.clock import FakeClock
from seawall.release.controller import RolloutController
from seawall.release.metrics import StaticSource
from seawall.release.plan import Pause, RolloutPlan, SetWeight
from seawall.release.records import RolloutRecord
from seawall.release.runner import SYSTEM_ACTOR, Binding, RolloutRunner, acting_as
from seawall.release.state import Decision, DecisionKind, Status
from seawall.release.store import RolloutStore, StaleRolloutError
from seawall.store import AuditLog, Database

PLAN = RolloutPlan("iris", "1", "2", (SetWeight(10), Pause(60), SetWeight(20), Pause(60)))


class Traffic:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def set_canary_weight(self, percent: float) -> None:
        self.calls.append(f"weight {percent:g}")

    async def promote(self) -> None:
        self.calls.append("promote")

    async def rollback(self) -> None:
        self.calls.append("rollback")


class Approvals:
    async def approved(self, model: str, version: str) -> bool:
        return False


@pytest.fixture
def store(migrated: Database, audit: AuditLog, clock: FakeClock) -> RolloutStore:
    return RolloutStore(migrated, audit, clock=clock)


def binder(
    store: RolloutStore, clock: FakeClock, traffic: Traffic
) -> Callable[[RolloutRecord], Binding]:
    def bind(record: RolloutRecord) -> Binding:
        def build(bound: RolloutRecord, hook: Binding) -> RolloutController:
            return RolloutController(
                bound.rollout_plan(),
                traffic=traffic,
                metrics=StaticSource(),
                approvals=Approvals(),
                clock=clock,
                on_decision=hook,
                state=bound.rollout_state(),
            )

        return Binding(store, record, build, traffic)

    return bind


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 10 s"
        await asyncio.sleep(0.001)


async def test_a_binding_saves_decisions_as_the_actor_at_the_revision_it_saw(
    store: RolloutStore, clock: FakeClock
) -> None:
    record = await store.create(PLAN, actor="alice")
    binding = binder(store, clock, Traffic())(record)
    await binding.controller.tick()  # weight 10, the pause begins: two saves as the system
    with acting_as("bob"):
        await binding.controller.pause("hold")
    assert binding.record.revision == 3
    assert binding.saves == 3
    assert not await binding.behind(3)
    assert await binding.behind(4)
    assert [(d.kind, d.actor) for d in await store.history("iris")] == [
        (DecisionKind.WEIGHT, SYSTEM_ACTOR),
        (DecisionKind.STEP, SYSTEM_ACTOR),
        (DecisionKind.PAUSED, "bob"),
    ]

    stale = binder(store, clock, Traffic())(record)  # bound to revision 0
    with pytest.raises(StaleRolloutError):
        await stale.controller.tick()


async def test_a_failing_controller_is_restarted_after_a_doubling_backoff(
    store: RolloutStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    record = await store.create(PLAN, actor="alice")
    traffic = Traffic()
    bind = binder(store, clock, traffic)
    failures = [RuntimeError("no split"), RuntimeError("no split")]

    def flaky(record: RolloutRecord) -> Binding:
        if failures:
            raise failures.pop()
        return bind(record)

    runner = RolloutRunner(
        record.id, store=store, bind=flaky, clock=clock, backoff_s=5.0, max_backoff_s=8.0
    )
    with caplog.at_level(logging.ERROR, logger="seawall.release"):
        runner.start()
        await until(lambda: clock.sleepers == 1)
        clock.advance(4.9)
        assert clock.sleepers == 1  # still waiting
        clock.advance(0.1)  # 5 s: fails again, then waits 8 s (doubled, capped)
        await until(lambda: caplog.text.count("the controller failed") == 2)
        await until(lambda: clock.sleepers == 1)
        clock.advance(7.9)
        assert clock.sleepers == 1
        assert traffic.calls == []
        clock.advance(0.1)
        await until(lambda: traffic.calls == ["weight 0", "weight 10"])
    assert "in 5 s" in caplog.text
    assert "in 8 s" in caplog.text
    await until(lambda: runner.binding is not None and runner.binding.saves == 2)
    assert not runner.done
    await runner.stop()
    assert runner.binding is None
    assert (await store.load(record.id)).step_index == 1  # stopped: the state stays stored


async def test_a_runner_follows_an_end_stored_by_another_process(
    store: RolloutStore, clock: FakeClock
) -> None:
    record = await store.create(PLAN, actor="alice")
    traffic = Traffic()
    runner = RolloutRunner(
        record.id,
        store=store,
        bind=binder(store, clock, traffic),
        clock=clock,
        backoff_s=5.0,
        max_backoff_s=60.0,
    )
    runner.start()
    await until(lambda: runner.binding is not None and runner.binding.saves == 2)
    stored = await store.load(record.id)
    ended = Decision(DecisionKind.ABORTED, 1, Status.ABORTED, 0.0, "stop", (), clock.time())
    aborted = replace(stored.rollout_state(), status=Status.ABORTED, weight=0.0)
    await store.save(record.id, aborted, ended, actor="bob", revision=stored.revision)
    await runner.restart()
    await until(lambda: runner.done)
    assert traffic.calls == ["weight 0", "weight 10", "rollback"]


async def test_a_runner_of_an_ended_rollout_ends_at_once(
    store: RolloutStore, clock: FakeClock
) -> None:
    record = await store.create(PLAN, actor="alice")
    ended = Decision(DecisionKind.ABORTED, 0, Status.ABORTED, 0.0, "stop", (), clock.time())
    state = replace(record.rollout_state(), status=Status.ABORTED)
    await store.save(record.id, state, ended, actor="bob", revision=0)
    traffic = Traffic()
    runner = RolloutRunner(
        record.id,
        store=store,
        bind=binder(store, clock, traffic),
        clock=clock,
        backoff_s=5.0,
        max_backoff_s=60.0,
    )
    await runner.start()
    assert runner.done
    assert traffic.calls == []  # it never ran this rollout: nothing to follow
