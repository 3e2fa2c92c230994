"""RolloutStore on SQLite and PostgreSQL: one live rollout per model, a decision, its state and
its audit record in one transaction, stale writers refused, reads."""

from __future__ import annotations

import asyncio

import pytest

from seawall.clock import FakeClock
from seawall.errors import ConflictError, InvalidInputError, NotFoundError
from seawall.release.analysis import GuardrailResult, Verdict
from seawall.release.codec import plan_to_json
from seawall.release.errors import RolloutStateError
from seawall.release.plan import Pause, RolloutPlan, SetWeight
from seawall.release.state import Decision, DecisionKind, RolloutState, Status
from seawall.release.store import RolloutStore, StaleRolloutError
from seawall.store import AuditLog, Database

PLAN = RolloutPlan("iris", "1", "2", (SetWeight(10), Pause(60)))
WINE = RolloutPlan("wine", "7", "8", (SetWeight(5),))
RESULT = GuardrailResult("errors", 0.2, None, 0.01, Verdict.FAIL, "error_rate 0.2 > 0.01")


@pytest.fixture
def store(migrated: Database, audit: AuditLog, clock: FakeClock) -> RolloutStore:
    return RolloutStore(migrated, audit, clock=clock)


def decision(
    kind: DecisionKind,
    status: Status = Status.RUNNING,
    weight: float = 10.0,
    *results: GuardrailResult,
) -> Decision:
    return Decision(kind, 0, status, weight, f"{kind} now", tuple(results), 1_700_000_100.5)


def state(status: Status = Status.RUNNING, weight: float = 10.0) -> RolloutState:
    return RolloutState("iris", "2", step_index=1, status=status, weight=weight)


async def test_create_stores_the_plan_and_a_fresh_state_and_audits_it(
    store: RolloutStore, audit: AuditLog, clock: FakeClock
) -> None:
    record = await store.create(PLAN, actor="alice")
    assert (record.model, record.stable_version, record.canary_version) == ("iris", "1", "2")
    assert (record.status, record.step_index, record.weight, record.revision) == (
        Status.RUNNING,
        0,
        0.0,
        0,
    )
    assert record.created_at.timestamp() == clock.time()
    assert record.rollout_plan() == PLAN
    assert record.rollout_state() == RolloutState("iris", "2")
    assert await store.load(record.id) == record
    (entry,) = await audit.records()
    assert (entry.actor, entry.action, entry.target) == ("alice", "rollout.start", "model:iris/2")
    assert entry.details["plan"] == plan_to_json(PLAN)
    assert entry.details["rollout_id"] == record.id


async def test_a_second_live_rollout_of_a_model_is_refused_until_the_first_ends(
    store: RolloutStore,
) -> None:
    first = await store.create(PLAN, actor="alice")
    with pytest.raises(ConflictError, match=rf"rollout {first.id} of 2, running\); abort"):
        await store.create(PLAN, actor="bob")
    await store.create(WINE, actor="bob")  # another model is free
    ended = state(Status.ABORTED, 0.0)
    await store.save(first.id, ended, decision(DecisionKind.ABORTED), actor="bob", revision=0)
    second = await store.create(PLAN, actor="carol")
    assert (await store.get("iris")).id == second.id


async def test_concurrent_starts_of_one_model_store_one(store: RolloutStore) -> None:
    outcomes = await asyncio.gather(
        *(store.create(PLAN, actor=f"user{i}") for i in range(4)), return_exceptions=True
    )
    stored = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(stored) == 1
    assert all(isinstance(e, ConflictError) for e in refused)
    assert len(await store.list()) == 1


async def test_save_writes_state_decision_and_audit_record_together(
    store: RolloutStore, audit: AuditLog
) -> None:
    record = await store.create(PLAN, actor="alice")
    rolled = state(Status.ROLLED_BACK, 0.0)
    made = decision(DecisionKind.ROLLED_BACK, Status.ROLLED_BACK, 0.0, RESULT)
    saved, stored = await store.save(record.id, rolled, made, actor="system", revision=0)
    assert (saved.status, saved.weight, saved.step_index, saved.revision) == (
        Status.ROLLED_BACK,
        0.0,
        1,
        1,
    )
    assert saved.reason == "rolled_back now"
    assert saved.rollout_state() == rolled
    assert (stored.kind, stored.status, stored.actor, stored.rollout_id) == (
        DecisionKind.ROLLED_BACK,
        Status.ROLLED_BACK,
        "system",
        record.id,
    )
    assert stored.results == (RESULT.to_json(),)
    assert stored.at.timestamp() == 1_700_000_100.5
    assert await store.decisions(record.id) == [stored]
    last = (await audit.records())[-1]
    assert (last.action, last.actor, last.target) == (
        "rollout.rolled_back",
        "system",
        "model:iris/2",
    )
    assert last.details == {
        "rollout_id": record.id,
        "model": "iris",
        "stable_version": "1",
        "canary_version": "2",
        "step": 0,
        "status": "rolled_back",
        "weight": 0.0,
        "reason": "rolled_back now",
        "results": [RESULT.to_json()],
        "at": 1_700_000_100.5,
    }
    assert last.details["results"][0]["value"] == 0.2
    assert last.details["results"][0]["threshold"] == 0.01
    assert (await audit.verify()).ok


async def test_a_failed_audit_append_writes_nothing(migrated: Database, clock: FakeClock) -> None:
    store = RolloutStore(migrated, AuditLog(migrated, max_details_bytes=400), clock=clock)
    record = await store.create(RolloutPlan("m", "1", "2", (SetWeight(1),)), actor="a")
    made = decision(DecisionKind.ANALYSIS, Status.RUNNING, 1.0, *[RESULT] * 5)
    moved = RolloutState("m", "2", weight=1.0)
    with pytest.raises(InvalidInputError, match="details: at most 400 bytes"):
        await store.save(record.id, moved, made, actor="system", revision=0)
    assert await store.load(record.id) == record
    assert await store.decisions(record.id) == []


async def test_stale_and_ended_rollouts_and_foreign_states_are_refused(
    store: RolloutStore,
) -> None:
    record = await store.create(PLAN, actor="alice")
    await store.save(record.id, state(), decision(DecisionKind.WEIGHT), actor="a", revision=0)
    with pytest.raises(StaleRolloutError, match=r"revision 1, this writer follows 0"):
        await store.save(record.id, state(), decision(DecisionKind.STEP), actor="a", revision=0)
    with pytest.raises(InvalidInputError, match=r"state: belongs to iris 3, not rollout"):
        await store.save(
            record.id, RolloutState("iris", "3"), decision(DecisionKind.STEP), actor="a", revision=1
        )
    done = state(Status.PROMOTED, 100.0)
    await store.save(record.id, done, decision(DecisionKind.PROMOTED), actor="a", revision=1)
    with pytest.raises(RolloutStateError, match="already promoted"):
        await store.save(record.id, done, decision(DecisionKind.STEP), actor="a", revision=2)
    with pytest.raises(NotFoundError, match="rollout: no rollout with id 999"):
        await store.save(999, done, decision(DecisionKind.STEP), actor="a", revision=0)
    assert len(await store.decisions(record.id)) == 2


async def test_reads_current_listing_and_history(store: RolloutStore) -> None:
    with pytest.raises(NotFoundError, match="model: 'iris' has no rollout"):
        await store.get("iris")
    first = await store.create(PLAN, actor="alice")
    for revision, kind in enumerate([DecisionKind.WEIGHT, DecisionKind.STEP]):
        await store.save(first.id, state(), decision(kind), actor="a", revision=revision)
    ended = state(Status.ABORTED, 0.0)
    await store.save(first.id, ended, decision(DecisionKind.ABORTED), actor="a", revision=2)
    assert (await store.get("iris")).id == first.id  # the latest, though ended
    wine = await store.create(WINE, actor="bob")
    second = await store.create(PLAN, actor="carol")
    assert [r.id for r in await store.list()] == [second.id, wine.id, first.id]
    assert [r.id for r in await store.list(limit=2)] == [second.id, wine.id]
    assert [r.id for r in await store.list(active_only=True)] == [second.id, wine.id]
    assert (await store.get("iris")).id == second.id  # the live one
    assert await store.history("iris") == []
    old = await store.decisions(first.id, limit=2)
    assert [d.kind for d in old] == [DecisionKind.STEP, DecisionKind.ABORTED]  # the last two


async def test_bad_input_is_refused_naming_the_field(store: RolloutStore) -> None:
    with pytest.raises(InvalidInputError, match="actor: who acted"):
        await store.create(PLAN, actor=" ")
    with pytest.raises(InvalidInputError, match="limit: 1 to 10000, got 0"):
        await store.list(limit=0)
    with pytest.raises(InvalidInputError, match="limit: 1 to 10000, got 10001"):
        await store.history("iris", limit=10_001)
    long = RolloutPlan("m" * 201, "1", "2", (SetWeight(1),))
    with pytest.raises(InvalidInputError, match="model: at most 200 characters"):
        await store.create(long, actor="alice")
    with pytest.raises(InvalidInputError, match="canary_version: at most 64 characters"):
        await store.create(RolloutPlan("m", "1", "2" * 65, (SetWeight(1),)), actor="alice")
    assert await store.list() == []
