"""Approvals, stages and protected aliases on SQLite and PostgreSQL: the rules of production."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import text

from seawall.clock import FakeClock
from seawall.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from seawall.registry import ApprovalStatus, Registry, RegistryOptions, Stage
from seawall.registry.approvals import Approvals, unapproved
from seawall.registry.history import History
from seawall.store import AuditLog, Database

from .conftest import APPROVER, APPROVER2, ARTIFACT, AUTHOR, in_production, staged


def _status(**changes: object) -> ApprovalStatus:
    status = ApprovalStatus(
        name="iris",
        version=3,
        required=2,
        approved_by=("bob",),
        expired=(),
        rejected_by=(),
        decisions=(),
    )
    return dataclasses.replace(status, **changes)  # type: ignore[arg-type]


async def test_production_needs_an_approval_from_someone_else(registry: Registry) -> None:
    version = await staged(registry)
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
    version = await staged(registry)
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
    version = await staged(registry)
    await registry.approve("iris", version, actor=APPROVER)
    clock.advance(RegistryOptions().approval_ttl_s + 1)
    with pytest.raises(ConflictError, match=r"it has 0 \(1 expired: bob\)"):
        await registry.transition("iris", version, "production", actor="deployer")
    await registry.approve("iris", version, actor=APPROVER, comment="re-checked")
    await registry.transition("iris", version, "production", actor="deployer")


async def test_a_rejection_blocks_until_the_approver_changes_their_mind(
    registry: Registry,
) -> None:
    version = await staged(registry)
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
    version = await staged(registry)
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
    v1 = await in_production(registry)
    await registry.set_alias("iris", "champion", v1, actor="deployer")
    v2 = await staged(registry)
    await registry.approve("iris", v2, actor=APPROVER)
    # Without moving the alias, v1 keeps serving as champion and stays in production.
    await registry.transition("iris", v2, "production", actor="deployer")
    assert (await registry.get_version("iris", v1)).stage is Stage.PRODUCTION
    await registry.set_alias("iris", "champion", v2, actor="deployer")
    v3 = await staged(registry)
    await registry.approve("iris", v3, actor=APPROVER)
    await registry.transition("iris", v3, "production", actor="deployer", alias="champion")
    stages = {v.version: v.stage for v in await registry.list_versions("iris")}
    assert stages == {v1: Stage.ARCHIVED, v2: Stage.ARCHIVED, v3: Stage.PRODUCTION}


async def test_a_refused_change_writes_nothing(registry: Registry, migrated: Database) -> None:
    version = await staged(registry)
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
    version = await staged(registry)

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


async def test_only_signed_versions_enter_production_when_required(
    migrated: Database, clock: FakeClock
) -> None:
    registry = Registry(migrated, clock=clock, options=RegistryOptions(require_signed=True))
    unsigned = await staged(registry)
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


async def test_aliases_move_and_are_deleted(registry: Registry) -> None:
    v1 = await staged(registry)
    v2 = await staged(registry)
    await registry.set_alias("iris", "challenger", v1, actor="deployer")
    await registry.set_alias("iris", "challenger", v2, actor="deployer")
    assert (await registry.get_model("iris")).aliases == {"challenger": v2}
    removed = await registry.delete_alias("iris", "challenger", actor="deployer")
    assert removed.version == v2
    with pytest.raises(NotFoundError):
        await registry.delete_alias("iris", "challenger", actor="deployer")
    with pytest.raises(InvalidInputError, match="alias: a lower-case word"):
        await registry.set_alias("iris", "42", v1, actor="deployer")


def test_why_a_version_is_unapproved_names_the_approvers() -> None:
    assert unapproved(_status()) == (
        "approvals: 'iris' version 3 needs 2 approval(s) from approvers other than its author;"
        " it has 1"
    )
    assert unapproved(_status(expired=("carol", "dave"))).endswith(
        "it has 1 (2 expired: carol, dave)"
    )
    assert unapproved(_status(rejected_by=("carol", "erin"))) == (
        "approvals: 'iris' version 3 is rejected by carol, erin"
    )


async def test_an_approval_expires_after_the_ttl_and_a_rejection_never(
    migrated: Database, clock: FakeClock
) -> None:
    registry = Registry(migrated, clock=clock, options=RegistryOptions(approval_ttl_s=60))
    version = await staged(registry)
    approval = await registry.approve("iris", version, actor=APPROVER, comment="ok")
    rejection = await registry.reject("iris", version, actor=APPROVER2, comment="no")
    assert approval.expires_at == approval.created_at + timedelta(seconds=60)
    assert rejection.expires_at is None
    clock.advance(59)
    status = await registry.approval_status("iris", version)
    assert (status.approved_by, status.expired, status.rejected_by) == (
        (APPROVER,),
        (),
        (APPROVER2,),
    )
    clock.advance(1)
    status = await registry.approval_status("iris", version)
    assert (status.approved_by, status.expired) == ((), (APPROVER,))
    assert len(status.decisions) == 2


async def test_each_approvers_latest_decision_counts(registry: Registry) -> None:
    version = await staged(registry)
    await registry.reject("iris", version, actor=APPROVER, comment="not yet")
    await registry.approve("iris", version, actor=APPROVER, comment="now")
    await registry.approve("iris", version, actor=APPROVER2)
    await registry.reject("iris", version, actor=APPROVER2, comment="second thoughts")
    status = await registry.approval_status("iris", version)
    assert (status.approved_by, status.rejected_by) == ((APPROVER,), (APPROVER2,))
    assert [d.decision for d in status.decisions] == ["reject", "approve", "approve", "reject"]
    assert not status.satisfied


def test_a_protected_alias_keeps_its_version_in_production(
    migrated: Database, clock: FakeClock
) -> None:
    approvals = Approvals(
        History(AuditLog(migrated, clock=clock), clock),
        approval_ttl_s=60,
        protected_aliases=frozenset({"champion", "stable"}),
        require_signed=False,
    )
    approvals.check_unprotected("iris", 1, {"champion": 2, "other": 1})
    with pytest.raises(ConflictError, match="protected alias 'stable' points at 'iris' version 1"):
        approvals.check_unprotected("iris", 1, {"stable": 1, "champion": 2})


async def test_archiving_spares_versions_a_protected_alias_holds(registry: Registry) -> None:
    v1 = await in_production(registry)
    await registry.set_alias("iris", "champion", v1, actor="deployer")
    v2 = await in_production(registry)
    v3 = await in_production(registry)
    stages = {v.version: v.stage for v in await registry.list_versions("iris")}
    assert stages == {v1: Stage.PRODUCTION, v2: Stage.ARCHIVED, v3: Stage.PRODUCTION}
    archived = [e for e in await registry.history("iris") if e.version == v2][-1]
    assert archived.details == {
        "from": "production",
        "to": "archived",
        "comment": "replaced by version 3",
    }
    v4 = await staged(registry)
    await registry.approve("iris", v4, actor=APPROVER)
    await registry.transition("iris", v4, "production", actor="deployer", archive_previous=False)
    assert (await registry.get_version("iris", v3)).stage is Stage.PRODUCTION
