"""Registration on SQLite and PostgreSQL: models created once, versions numbered once from 1."""

from __future__ import annotations

import asyncio

import pytest

from seawall.clock import FakeClock
from seawall.errors import ConflictError, InvalidInputError, NotFoundError
from seawall.registry import Registry, Stage
from seawall.registry.fields import new_version_columns
from seawall.registry.history import History, events
from seawall.registry.lookup import model_record
from seawall.registry.registration import (
    create_model,
    insert_model,
    register_version,
    update_model,
)
from seawall.store import AuditLog, Database

from .conftest import ARTIFACT, AUTHOR


def _columns(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "framework": "sklearn",
        "signature": None,
        "parameters": None,
        "metrics": None,
        "tags": None,
        "dataset_snapshot": "snap-1",
        "code_version": None,
        "parent_version": None,
        "description": "",
        "author": AUTHOR,
        **changes,
    }
    return new_version_columns("iris", None, ARTIFACT, None, **fields)  # type: ignore[arg-type]


def _model(name: str = "iris", required_approvals: int = 2) -> dict[str, object]:
    return {
        "name": name,
        "description": "flowers",
        "required_approvals": required_approvals,
        "tags": {"team": "ml"},
        "created_by": AUTHOR,
    }


@pytest.fixture
def history(migrated: Database, clock: FakeClock) -> History:
    return History(AuditLog(migrated, clock=clock), clock)


async def test_versions_are_numbered_from_one_with_their_provenance(registry: Registry) -> None:
    first = await registry.register_version(
        "iris",
        ARTIFACT,
        actor=AUTHOR,
        framework="sklearn",
        metrics={"accuracy": 0.97},
        parameters={"n_estimators": 50},
        dataset_snapshot="snap-1",
        code_version="abc123",
        signature={"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]},
    )
    second = await registry.register_version(
        "iris", ARTIFACT, actor=AUTHOR, framework="sklearn", parent_version=1
    )
    assert (first.version, second.version) == (1, 2)
    assert first.uri == "models:/iris/1"
    assert first.stage is Stage.NONE
    assert first.author == AUTHOR
    assert first.metrics == {"accuracy": 0.97}
    assert first.artifact == ARTIFACT
    assert [v.version for v in await registry.list_versions("iris")] == [2, 1]
    assert (await registry.get_model("iris")).latest_version == 2
    lineage = await registry.lineage("iris", 2)
    assert [(n.version, n.dataset_snapshot, n.code_version) for n in lineage] == [
        (2, None, None),
        (1, "snap-1", "abc123"),
    ]


async def test_an_explicit_version_number_is_taken_once(registry: Registry) -> None:
    await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="onnx", version=5)
    with pytest.raises(ConflictError, match="version: 'iris' version 5 exists"):
        await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="onnx", version=5)
    nxt = await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="onnx")
    assert nxt.version == 6


async def test_concurrent_registrations_get_distinct_numbers(registry: Registry) -> None:
    await registry.create_model("iris", actor=AUTHOR)
    records = await asyncio.gather(
        *(
            registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="sklearn")
            for _ in range(8)
        )
    )
    assert sorted(r.version for r in records) == list(range(1, 9))


def test_a_model_is_inserted_once_with_its_create_event(
    migrated: Database, history: History
) -> None:
    with migrated.begin() as connection:
        created = create_model(connection, history, _model())
        with pytest.raises(ConflictError, match=r"^name: model 'iris' is registered already$"):
            insert_model(connection, history, _model())
        updated = update_model(connection, history, "iris", {"description": "irises"}, "bob")
        logged = events(connection, "iris", 10)
    assert (created.description, created.required_approvals, created.created_at) == (
        "flowers",
        2,
        history.now(),
    )
    assert updated.description == "irises"
    assert [(e.action, e.actor, e.version, e.details) for e in logged] == [
        (
            "model.create",
            AUTHOR,
            None,
            {"description": "flowers", "required_approvals": 2, "tags": {"team": "ml"}},
        ),
        ("model.update", "bob", None, {"description": "irises"}),
    ]


def test_a_version_creates_its_model_only_when_asked(migrated: Database, history: History) -> None:
    with migrated.begin() as connection, pytest.raises(NotFoundError, match="not registered"):
        register_version(
            connection, history, "iris", None, _columns(), create_model=False, required_approvals=3
        )
    with migrated.begin() as connection:
        record = register_version(
            connection, history, "iris", None, _columns(), create_model=True, required_approvals=3
        )
        model = model_record(connection, "iris")
        logged = events(connection, "iris", 10)
    assert model.required_approvals == 3
    assert (record.version, record.stage, record.author) == (1, Stage.NONE, AUTHOR)
    assert logged[0].details["required_approvals"] == 3
    assert logged[1].action == "model.register"
    assert logged[1].details == {
        "framework": "sklearn",
        "artifact_files": ARTIFACT.files,
        "manifest_digest": None,
        "signed_by": None,
        "dataset_snapshot": "snap-1",
        "code_version": None,
        "parent_version": None,
    }


def test_a_parent_must_be_a_version_of_the_same_model(migrated: Database, history: History) -> None:
    with migrated.begin() as connection:
        create_model(connection, history, _model("iris"))
        create_model(connection, history, _model("adult"))
        register_version(
            connection, history, "adult", None, _columns(), create_model=False, required_approvals=1
        )
    with (
        migrated.begin() as connection,
        pytest.raises(InvalidInputError, match=r"^parent_version: 'iris' has no version 1$"),
    ):
        register_version(
            connection,
            history,
            "iris",
            None,
            _columns(parent_version=1),
            create_model=False,
            required_approvals=1,
        )
    with migrated.begin() as connection:
        assert events(connection, "iris", 10)[-1].action == "model.create"  # rolled back
