"""History on SQLite and PostgreSQL: events with their audit records, deployments, lineage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from seawall.clock import FakeClock
from seawall.errors import InvalidInputError, NotFoundError
from seawall.registry import Registry
from seawall.registry.history import History, deployments, events, lineage
from seawall.registry.lookup import model_row
from seawall.store import AuditLog, Database

from .conftest import APPROVER, ARTIFACT, AUTHOR, staged


async def test_deployment_history_opens_and_closes(registry: Registry, clock: FakeClock) -> None:
    v1 = await staged(registry)
    first = await registry.record_deployment("iris", v1, "gw-1", 1.0, actor="system")
    assert first is not None
    assert first.ended_at is None
    clock.advance(60)
    changed = await registry.record_deployment("iris", v1, "gw-1", 0.5, actor="system")
    assert changed is not None
    assert changed.traffic_share == 0.5
    clock.advance(60)
    ended = await registry.record_deployment("iris", v1, "gw-1", 0.0, actor="system")
    assert ended is not None
    assert ended.id == changed.id
    assert ended.ended_at is not None
    history = await registry.deployments("iris", target="gw-1")
    assert [(d.traffic_share, d.ended_at is None) for d in history] == [(0.5, False), (1.0, False)]
    assert await registry.deployments("iris", open_only=True) == []
    with pytest.raises(InvalidInputError, match="traffic_share"):
        await registry.record_deployment("iris", v1, "gw-1", 1.5, actor="system")


async def test_every_change_is_in_the_history_and_the_audit_log(
    registry: Registry, migrated: Database
) -> None:
    version = await staged(registry)
    await registry.approve("iris", version, actor=APPROVER, comment="ok")
    await registry.transition(
        "iris", version, "production", actor="deployer", alias="champion", comment="go"
    )
    await registry.record_deployment("iris", version, "gw-1", 1.0, actor="system")
    expected = [
        "model.create",
        "model.register",
        "model.stage",
        "model.approve",
        "model.stage",
        "model.alias",
        "model.deploy",
    ]
    history = await registry.history("iris")
    assert [e.action for e in history] == expected
    promote = history[4]
    assert promote.details == {
        "from": "staging",
        "to": "production",
        "comment": "go",
        "approved_by": [APPROVER],
    }
    assert promote.actor == "deployer"
    audit = AuditLog(migrated)
    records = await audit.records()
    assert [r.action for r in records] == expected
    assert records[4].target == "model:iris/1"
    assert (await audit.verify()).ok


async def test_an_event_is_audited_with_its_target_and_time(
    registry: Registry, migrated: Database, clock: FakeClock
) -> None:
    await registry.create_model("iris", actor=AUTHOR)
    audit = AuditLog(migrated, clock=clock)
    history = History(audit, clock)
    clock.advance(5)
    assert history.now() == datetime.fromtimestamp(clock.time(), UTC)
    with migrated.begin() as connection:
        model_id = model_row(connection, "iris").id
        history.event(connection, model_id, "iris", None, "model.note", "ops", {"n": 1})
        history.event(connection, model_id, "iris", 3, "model.note", "ops", {"n": 2})
        logged = events(connection, "iris", 2)
    assert [(e.version, e.details, e.at) for e in logged] == [
        (None, {"n": 1}, history.now()),
        (3, {"n": 2}, history.now()),
    ]
    records = (await audit.records())[-2:]
    assert [(r.target, r.actor, r.details) for r in records] == [
        ("model:iris", "ops", {"n": 1}),
        ("model:iris/3", "ops", {"n": 2}),
    ]


async def test_history_returns_the_last_events_oldest_first(registry: Registry) -> None:
    await staged(registry)
    everything = [e.action for e in await registry.history("iris")]
    assert everything == ["model.create", "model.register", "model.stage"]
    assert [e.action for e in await registry.history("iris", limit=2)] == everything[1:]
    for limit in (0, 100_001):
        with pytest.raises(InvalidInputError, match=f"^limit: 1 to 100000, got {limit}"):
            await registry.history("iris", limit=limit)
    with pytest.raises(NotFoundError, match="model 'nope' is not registered"):
        await registry.history("nope")


async def test_deployments_are_kept_per_target(registry: Registry) -> None:
    v1 = await staged(registry)
    assert await registry.record_deployment("iris", v1, "gw-1", 0.0, actor="system") is None
    await registry.record_deployment("iris", v1, "gw-1", 1.0, actor="system")
    await registry.record_deployment("iris", v1, "gw-2", 0.25, actor="system")
    at_two = await registry.deployments("iris", target="gw-2")
    assert [(d.target, d.traffic_share, d.started_by) for d in at_two] == [("gw-2", 0.25, "system")]
    assert [d.target for d in await registry.deployments("iris", open_only=True)] == [
        "gw-2",
        "gw-1",
    ]
    for target, reason in (("", "where the version serves"), ("a\x00", "contains a NUL")):
        with pytest.raises(InvalidInputError, match=f"^target: {reason}"):
            await registry.record_deployment("iris", v1, target, 1.0, actor="system")
    with pytest.raises(InvalidInputError, match=r"^traffic_share: 0 to 1, got -0\.1"):
        await registry.record_deployment("iris", v1, "gw-1", -0.1, actor="system")


async def test_lineage_stops_at_a_cycle_written_around_the_registry(
    registry: Registry, migrated: Database
) -> None:
    await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="sklearn")
    await registry.register_version(
        "iris", ARTIFACT, actor=AUTHOR, framework="sklearn", parent_version=1
    )
    with migrated.begin() as connection:
        connection.execute(text("UPDATE model_versions SET parent_version = 2 WHERE version = 1"))
    with migrated.begin(read_only=True) as connection:
        chain = lineage(connection, "iris", 2)
        assert deployments(connection, "iris", None, open_only=False) == []
    assert [(n.version, n.parent_version, n.author) for n in chain] == [
        (2, 1, AUTHOR),
        (1, 2, AUTHOR),
    ]
    assert chain[0].artifact_digests == ARTIFACT.files
