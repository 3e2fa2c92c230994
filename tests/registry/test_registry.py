"""`Registry` on SQLite and PostgreSQL: models, versions, aliases, stages, approvals, audit."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from sqlalchemy import text

from seawall.clock import FakeClock
from seawall.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from seawall.registry import ArtifactInfo, Registry, RegistryOptions, Stage, parse_model_uri
from seawall.registry.registry import MODEL_NAME_PATTERN
from seawall.store import AuditLog, Database

from .conftest import ARTIFACT

AUTHOR = "cli:alice"
APPROVER = "bob"
APPROVER2 = "carol"


async def _staged(registry: Registry, name: str = "iris", **kwargs: object) -> int:
    record = await registry.register_version(
        name,
        ARTIFACT,
        actor=AUTHOR,
        framework="sklearn",
        **kwargs,  # type: ignore[arg-type]
    )
    await registry.transition(name, record.version, "staging", actor=AUTHOR)
    return record.version


async def _in_production(registry: Registry, name: str = "iris") -> int:
    version = await _staged(registry, name)
    await registry.approve(name, version, actor=APPROVER, comment="looks good")
    await registry.transition(name, version, Stage.PRODUCTION, actor="deployer")
    return version


def test_the_model_name_pattern_is_the_configs() -> None:
    from seawall.config.base import NAME_PATTERN

    assert MODEL_NAME_PATTERN == NAME_PATTERN


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/iris/3", ("iris", 3, None)),
        ("models:/iris@champion", ("iris", None, "champion")),
        ("models:/fraud.v2@challenger-1", ("fraud.v2", None, "challenger-1")),
    ],
)
def test_model_uris_parse(uri: str, expected: tuple[str, int | None, str | None]) -> None:
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    "uri", ["iris@champion", "models:/iris", "models:/iris@3", "models:/iris/x", "models:/@a"]
)
def test_bad_model_uris_are_refused_with_the_reason(uri: str) -> None:
    with pytest.raises(InvalidInputError, match=r"^(uri|alias|name):"):
        parse_model_uri(uri)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="approval_ttl_s"):
        RegistryOptions(approval_ttl_s=0)
    with pytest.raises(ValueError, match="protected_aliases"):
        RegistryOptions(protected_aliases=frozenset({"Champion!"}))
    with pytest.raises(ValueError, match="default_required_approvals"):
        RegistryOptions(default_required_approvals=11)


async def test_a_model_is_created_once_and_listed(registry: Registry) -> None:
    created = await registry.create_model(
        "iris", actor=AUTHOR, description="flowers", required_approvals=2, tags={"team": "ml"}
    )
    assert (created.name, created.required_approvals, created.tags) == ("iris", 2, {"team": "ml"})
    assert created.latest_version is None
    with pytest.raises(ConflictError, match="name: model 'iris' is registered already"):
        await registry.create_model("iris", actor=AUTHOR)
    await registry.create_model("adult", actor=AUTHOR)
    assert [m.name for m in await registry.list_models()] == ["adult", "iris"]
    updated = await registry.update_model("iris", actor=AUTHOR, required_approvals=0)
    assert updated.required_approvals == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": "iris", "required_approvals": -1}, "required_approvals"),
        ({"name": "iris", "required_approvals": True}, "required_approvals"),
        ({"name": "iris", "tags": {"x": float("nan")}}, "tags"),
        ({"name": "iris", "description": "a\x00b"}, "description"),
    ],
)
async def test_bad_models_are_refused_naming_the_field(
    registry: Registry, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"^{field}:"):
        await registry.create_model(actor=AUTHOR, **kwargs)  # type: ignore[arg-type]
    assert await registry.list_models() == []


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


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"framework": "Sk Learn"}, "framework"),
        ({"version": 0}, "version"),
        ({"version": 2**31}, "version"),
        ({"parent_version": 9}, "parent_version"),
        ({"metrics": {"accuracy": "high"}}, "metrics.accuracy"),
        ({"parameters": {"x": object()}}, "parameters"),
        (
            {"artifact": dataclasses.replace(ARTIFACT, files={"../etc/passwd": "a" * 64})},
            "artifact.files",
        ),
        ({"artifact": dataclasses.replace(ARTIFACT, files={"m": "xyz"})}, "artifact.files"),
        ({"artifact": dataclasses.replace(ARTIFACT, files={})}, "artifact.files"),
        ({"artifact": dataclasses.replace(ARTIFACT, kind="zip")}, "artifact.kind"),
    ],
)
async def test_bad_versions_are_refused_naming_the_field(
    registry: Registry, kwargs: dict[str, object], field: str
) -> None:
    arguments: dict[str, object] = {"framework": "sklearn", "artifact": ARTIFACT, **kwargs}
    artifact = arguments.pop("artifact")
    with pytest.raises(InvalidInputError, match=f"^{field}:"):
        await registry.register_version(
            "iris",
            artifact,  # type: ignore[arg-type]
            actor=AUTHOR,
            **arguments,  # type: ignore[arg-type]
        )
    assert await registry.list_models() == []  # nothing half-written, not even the model


async def test_unknown_models_and_versions_are_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="model 'nope' is not registered"):
        await registry.get_model("nope")
    await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="sklearn")
    with pytest.raises(NotFoundError, match="model 'iris' has no version 7"):
        await registry.get_version("iris", 7)
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        await registry.resolve("iris", "@champion")
    with pytest.raises(NotFoundError, match="not registered"):
        await registry.register_version(
            "other", ARTIFACT, actor=AUTHOR, framework="sklearn", create_model=False
        )


async def test_concurrent_registrations_get_distinct_numbers(registry: Registry) -> None:
    await registry.create_model("iris", actor=AUTHOR)
    records = await asyncio.gather(
        *(
            registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="sklearn")
            for _ in range(8)
        )
    )
    assert sorted(r.version for r in records) == list(range(1, 9))


async def test_production_needs_an_approval_from_someone_else(registry: Registry) -> None:
    version = await _staged(registry)
    with pytest.raises(ConflictError, match=r"needs 1 approval.* it has 0"):
        await registry.transition("iris", version, "production", actor="deployer")
    with pytest.raises(ForbiddenError, match="four eyes: 'cli:alice' registered"):
        await registry.approve("iris", version, actor=AUTHOR)
    approval = await registry.approve("iris", version, actor=APPROVER, comment="ok")
    assert approval.decision == "approve"
    assert approval.expires_at is not None
    promoted = await registry.transition("iris", version, "production", actor="deployer")
    assert promoted.stage is Stage.PRODUCTION


async def test_n_approvals_must_come_from_n_distinct_approvers(registry: Registry) -> None:
    await registry.create_model("iris", actor=AUTHOR, required_approvals=2)
    version = await _staged(registry)
    await registry.approve("iris", version, actor=APPROVER)
    await registry.approve("iris", version, actor=APPROVER)  # the same person twice is one
    with pytest.raises(ConflictError, match=r"needs 2 approval.* it has 1"):
        await registry.transition("iris", version, "production", actor="deployer")
    await registry.approve("iris", version, actor=APPROVER2)
    status = await registry.approval_status("iris", version)
    assert status.approved_by == (APPROVER, APPROVER2)
    assert status.satisfied
    await registry.transition("iris", version, "production", actor="deployer")


async def test_approvals_expire(registry: Registry, clock: FakeClock) -> None:
    version = await _staged(registry)
    await registry.approve("iris", version, actor=APPROVER)
    clock.advance(RegistryOptions().approval_ttl_s + 1)
    with pytest.raises(ConflictError, match=r"it has 0 \(1 expired: bob\)"):
        await registry.transition("iris", version, "production", actor="deployer")
    await registry.approve("iris", version, actor=APPROVER, comment="re-checked")
    await registry.transition("iris", version, "production", actor="deployer")


async def test_a_rejection_blocks_until_the_approver_changes_their_mind(
    registry: Registry,
) -> None:
    version = await _staged(registry)
    await registry.approve("iris", version, actor=APPROVER)
    with pytest.raises(InvalidInputError, match="comment: a rejection says why"):
        await registry.reject("iris", version, actor=APPROVER2, comment=" ")
    await registry.reject("iris", version, actor=APPROVER2, comment="recall dropped on segment B")
    with pytest.raises(ConflictError, match="rejected by carol"):
        await registry.transition("iris", version, "production", actor="deployer")
    await registry.approve("iris", version, actor=APPROVER2, comment="fixed upstream")
    await registry.transition("iris", version, "production", actor="deployer")
    with pytest.raises(ConflictError, match="approvals are for versions on their way"):
        await registry.approve("iris", version, actor="dave")


async def test_stage_transitions_follow_the_table(registry: Registry) -> None:
    record = await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="sklearn")
    with pytest.raises(ConflictError, match="stage: none → production is not allowed"):
        await registry.transition("iris", record.version, "production", actor="deployer")
    with pytest.raises(InvalidInputError, match="stage: one of"):
        await registry.transition("iris", record.version, "prod", actor="deployer")
    await registry.transition("iris", record.version, "archived", actor="deployer")
    with pytest.raises(ConflictError, match="already in archived"):
        await registry.transition("iris", record.version, "archived", actor="deployer")


async def test_protected_aliases_point_only_at_production(registry: Registry) -> None:
    version = await _staged(registry)
    with pytest.raises(ConflictError, match=r"'champion' is protected .* version 1 is in staging"):
        await registry.set_alias("iris", "champion", version, actor="deployer")
    challenger = await registry.set_alias("iris", "challenger", version, actor="deployer")
    assert challenger.version == version
    await registry.approve("iris", version, actor=APPROVER)
    await registry.transition("iris", version, "production", actor="deployer", alias="champion")
    assert (await registry.resolve("iris", "@champion")).version == version
    assert (await registry.resolve_uri("models:/iris@champion")).aliases == (
        "challenger",
        "champion",
    )
    with pytest.raises(ConflictError, match="protected alias 'champion' points at"):
        await registry.transition("iris", version, "archived", actor="deployer")


async def test_promotion_archives_the_previous_version_once_the_alias_moves(
    registry: Registry,
) -> None:
    v1 = await _in_production(registry)
    await registry.set_alias("iris", "champion", v1, actor="deployer")
    v2 = await _staged(registry)
    await registry.approve("iris", v2, actor=APPROVER)
    # Without moving the alias, v1 keeps serving as champion and stays in production.
    await registry.transition("iris", v2, "production", actor="deployer")
    assert (await registry.get_version("iris", v1)).stage is Stage.PRODUCTION
    await registry.set_alias("iris", "champion", v2, actor="deployer")
    v3 = await _staged(registry)
    await registry.approve("iris", v3, actor=APPROVER)
    await registry.transition("iris", v3, "production", actor="deployer", alias="champion")
    stages = {v.version: v.stage for v in await registry.list_versions("iris")}
    assert stages == {v1: Stage.ARCHIVED, v2: Stage.ARCHIVED, v3: Stage.PRODUCTION}


async def test_aliases_move_and_are_deleted(registry: Registry) -> None:
    v1 = await _staged(registry)
    v2 = await _staged(registry)
    await registry.set_alias("iris", "challenger", v1, actor="deployer")
    await registry.set_alias("iris", "challenger", v2, actor="deployer")
    assert (await registry.get_model("iris")).aliases == {"challenger": v2}
    removed = await registry.delete_alias("iris", "challenger", actor="deployer")
    assert removed.version == v2
    with pytest.raises(NotFoundError):
        await registry.delete_alias("iris", "challenger", actor="deployer")
    with pytest.raises(InvalidInputError, match="alias: a lower-case word"):
        await registry.set_alias("iris", "42", v1, actor="deployer")


async def test_deployment_history_opens_and_closes(registry: Registry, clock: FakeClock) -> None:
    v1 = await _staged(registry)
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
    version = await _staged(registry)
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


async def test_a_refused_change_writes_nothing(registry: Registry, migrated: Database) -> None:
    version = await _staged(registry)
    before = len(await AuditLog(migrated).records())
    with pytest.raises(ConflictError):
        await registry.transition("iris", version, "production", actor="deployer")
    with pytest.raises(ForbiddenError):
        await registry.approve("iris", version, actor=AUTHOR)
    assert len(await AuditLog(migrated).records()) == before
    assert (await registry.get_version("iris", version)).stage is Stage.STAGING


async def test_the_author_check_holds_even_for_rows_written_around_it(
    registry: Registry, migrated: Database
) -> None:
    version = await _staged(registry)

    def forge() -> None:
        with migrated.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO model_approvals (model_id, version, decision, approver, comment,"
                    " created_at, expires_at) SELECT id, 1, 'approve', :a, '', :t, :e"
                    " FROM registered_models"
                ),
                {"a": AUTHOR, "t": "2026-01-01 00:00:00", "e": "2999-01-01 00:00:00"},
            )

    await migrated.run(forge)
    status = await registry.approval_status("iris", version)
    assert status.approved_by == ()
    assert not status.satisfied


async def test_the_blob_store_must_hold_the_artifact(migrated: Database, tmp_path: object) -> None:
    from pathlib import Path

    from seawall.store import BlobStore

    blobs = BlobStore(Path(str(tmp_path)) / "blobs")
    registry = Registry(migrated, blobs=blobs)
    with pytest.raises(InvalidInputError, match="is not in the artifact store"):
        await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="sklearn")
    digest = blobs.put(b"model bytes")
    stored = ArtifactInfo(kind="file", files={"m.joblib": digest}, total_bytes=11, uri=blobs.root)
    record = await registry.register_version("iris", stored, actor=AUTHOR, framework="sklearn")
    assert record.artifact.files == {"m.joblib": digest}


async def test_only_signed_versions_enter_production_when_required(
    migrated: Database, clock: FakeClock
) -> None:
    registry = Registry(migrated, clock=clock, options=RegistryOptions(require_signed=True))
    unsigned = await _staged(registry)
    await registry.approve("iris", unsigned, actor=APPROVER)
    with pytest.raises(ConflictError, match="signature: 'iris' version 1 was registered unsigned"):
        await registry.transition("iris", unsigned, "production", actor="deployer")
    signed_artifact = dataclasses.replace(ARTIFACT, manifest_digest="b" * 64, signed_by="k" * 16)
    record = await registry.register_version(
        "iris", signed_artifact, actor=AUTHOR, framework="sklearn"
    )
    await registry.transition("iris", record.version, "staging", actor=AUTHOR)
    await registry.approve("iris", record.version, actor=APPROVER)
    promoted = await registry.transition("iris", record.version, "production", actor="deployer")
    assert promoted.stage is Stage.PRODUCTION
