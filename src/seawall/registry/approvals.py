"""Approvals and the rules of stage transitions and protected aliases.

- A version enters `production` only from `staging` and only with the model's required number
  of approvals, from distinct approvers other than the version's author (four eyes), none of
  them expired, and no standing rejection. Each approver's latest decision counts.
- A protected alias points only at a version in production, and a version a protected alias
  points at cannot leave production: move the alias first.

`Approvals` works in the caller's transaction and records each change in the model's `History`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from seawall.errors import ConflictError, ForbiddenError, InvalidInputError
from seawall.registry.history import History
from seawall.registry.lookup import alias_row, aliases, version_record, version_row
from seawall.registry.records import AliasRecord, ApprovalRecord, ApprovalStatus, VersionRecord
from seawall.registry.stages import Stage, check_transition
from seawall.registry.tables import AliasRow, ApprovalRow, VersionRow

__all__ = ["Approvals", "unapproved"]


class Approvals:
    """Decisions on versions, stage changes and alias moves, under the registry's rules."""

    def __init__(
        self,
        history: History,
        *,
        approval_ttl_s: float,
        protected_aliases: frozenset[str],
        require_signed: bool,
    ) -> None:
        self.history = history
        self.approval_ttl_s = approval_ttl_s
        self.protected_aliases = protected_aliases
        self.require_signed = require_signed

    # -------------------------------------------------------------- approvals

    def decide(
        self,
        connection: Connection,
        name: str,
        version: int,
        decision: str,
        actor: str,
        comment: str,
    ) -> ApprovalRecord:
        """Record `actor`'s "approve" or "reject" of `version` (never by its author)."""
        model, row = version_row(connection, name, version)
        _check_decidable(name, version, row, decision, actor)
        now = self.history.now()
        ttl = timedelta(seconds=self.approval_ttl_s)
        expires = now + ttl if decision == "approve" else None
        approval_id = connection.execute(
            insert(ApprovalRow)
            .values(
                model_id=model.id,
                version=version,
                decision=decision,
                approver=actor,
                comment=comment,
                created_at=now,
                expires_at=expires,
            )
            .returning(ApprovalRow.id)
        ).scalar_one()
        details = {
            "comment": comment,
            "expires_at": None if expires is None else expires.isoformat(),
        }
        self.history.event(connection, model.id, name, version, f"model.{decision}", actor, details)
        return ApprovalRecord(approval_id, name, version, decision, actor, comment, now, expires)

    def status(self, connection: Connection, name: str, version: int) -> ApprovalStatus:
        """Who approved or rejected `version`, and whether it may enter production now."""
        model, row = version_row(connection, name, version)
        rows = connection.execute(
            select(ApprovalRow)
            .where(ApprovalRow.model_id == model.id, ApprovalRow.version == version)
            .order_by(ApprovalRow.id)
        ).all()
        decisions = tuple(
            ApprovalRecord(
                r.id, name, version, r.decision, r.approver, r.comment, r.created_at, r.expires_at
            )
            for r in rows
        )
        approved, expired, rejected = _standing(decisions, row.author, self.history.now())
        return ApprovalStatus(
            name=name,
            version=version,
            required=model.required_approvals,
            approved_by=approved,
            expired=expired,
            rejected_by=rejected,
            decisions=decisions,
        )

    # ----------------------------------------------------------------- stages

    def transition(
        self,
        connection: Connection,
        name: str,
        version: int,
        target: Stage,
        actor: str,
        comment: str,
        alias: str | None,
        archive_previous: bool,
    ) -> VersionRecord:
        """Move `version` to `target` (see `Registry.transition`)."""
        model, row = version_row(connection, name, version)
        current = Stage(row.stage)
        why = check_transition(current, target)
        if why is not None:
            raise ConflictError(f"stage: {why}")
        if alias is not None and target is not Stage.PRODUCTION:
            raise InvalidInputError("alias", "an alias is moved with a promotion to production")
        if current is Stage.PRODUCTION:
            self.check_unprotected(name, version, aliases(connection, model.id))
        details: dict[str, Any] = {"from": current.value, "to": target.value, "comment": comment}
        if target is Stage.PRODUCTION:
            details["approved_by"] = self._check_promotable(connection, name, version, row)
        self.set_stage(connection, model.id, version, target)
        self.history.event(connection, model.id, name, version, "model.stage", actor, details)
        if alias is not None:
            self.point(connection, model.id, name, alias, version, target.value, actor)
        if target is Stage.PRODUCTION and archive_previous:
            self.archive_others(connection, model.id, name, version, actor)
        return version_record(connection, name, version)

    def _check_promotable(
        self, connection: Connection, name: str, version: int, row: Any
    ) -> list[str]:
        """Refuse production to an unsigned (when required) or unapproved version; its approvers."""
        if self.require_signed and not row.signed_by:
            raise ConflictError(
                f"signature: {name!r} version {version} was registered unsigned, and only "
                "signed versions enter production (registry.require_signed)"
            )
        status = self.status(connection, name, version)
        if not status.satisfied:
            raise ConflictError(unapproved(status))
        return list(status.approved_by)

    def check_unprotected(self, name: str, version: int, pointers: dict[str, int]) -> None:
        """Refuse to move `version` out of production while a protected alias points at it."""
        held = sorted(
            a for a, v in pointers.items() if v == version and a in self.protected_aliases
        )
        if held:
            raise ConflictError(
                f"stage: the protected alias {held[0]!r} points at {name!r} version {version}; "
                "move it to another production version first"
            )

    def set_stage(self, connection: Connection, model_id: int, version: int, stage: Stage) -> None:
        """Put `version` in `stage`, now."""
        connection.execute(
            update(VersionRow)
            .where(VersionRow.model_id == model_id, VersionRow.version == version)
            .values(stage=stage.value, stage_changed_at=self.history.now())
        )

    def archive_others(
        self, connection: Connection, model_id: int, name: str, version: int, actor: str
    ) -> None:
        """Archive the model's other production versions, except those a protected alias holds."""
        pointers = aliases(connection, model_id)
        held = {v for a, v in pointers.items() if a in self.protected_aliases}
        others = connection.execute(
            select(VersionRow.version).where(
                VersionRow.model_id == model_id,
                VersionRow.stage == Stage.PRODUCTION.value,
                VersionRow.version != version,
            )
        ).scalars()
        for other in sorted(set(others) - held):
            self.set_stage(connection, model_id, other, Stage.ARCHIVED)
            details = {
                "from": Stage.PRODUCTION.value,
                "to": Stage.ARCHIVED.value,
                "comment": f"replaced by version {version}",
            }
            self.history.event(connection, model_id, name, other, "model.stage", actor, details)

    # ---------------------------------------------------------------- aliases

    def set_alias(
        self, connection: Connection, name: str, alias: str, version: int, actor: str
    ) -> AliasRecord:
        """Point `alias` of `name` at `version`; a protected alias only at one in production."""
        model, row = version_row(connection, name, version)
        return self.point(connection, model.id, name, alias, version, row.stage, actor)

    def delete_alias(
        self, connection: Connection, name: str, alias: str, actor: str
    ) -> AliasRecord:
        """Remove `alias` of `name`; the record of where it pointed."""
        model, row = alias_row(connection, name, alias)
        connection.execute(delete(AliasRow).where(AliasRow.id == row.id))
        details = {"alias": alias, "from": row.version, "to": None}
        self.history.event(connection, model.id, name, row.version, "model.alias", actor, details)
        return AliasRecord(name, alias, row.version, row.updated_at, row.updated_by)

    def point(
        self,
        connection: Connection,
        model_id: int,
        name: str,
        alias: str,
        version: int,
        stage: str,
        actor: str,
    ) -> AliasRecord:
        """Point `alias` at `version` (in `stage`); a protected alias only at production."""
        if alias in self.protected_aliases and stage != Stage.PRODUCTION:
            raise ConflictError(
                f"alias: {alias!r} is protected and points only at a version in production; "
                f"version {version} is in {stage}"
            )
        previous = aliases(connection, model_id).get(alias)
        now = self.history.now()
        if previous is None:
            connection.execute(
                insert(AliasRow).values(
                    model_id=model_id,
                    alias=alias,
                    version=version,
                    updated_at=now,
                    updated_by=actor,
                )
            )
        else:
            connection.execute(
                update(AliasRow)
                .where(AliasRow.model_id == model_id, AliasRow.alias == alias)
                .values(version=version, updated_at=now, updated_by=actor)
            )
        details = {"alias": alias, "from": previous, "to": version}
        self.history.event(connection, model_id, name, version, "model.alias", actor, details)
        return AliasRecord(name, alias, version, now, actor)


def unapproved(status: ApprovalStatus) -> str:
    """Why `status` keeps its version out of production, for a ConflictError."""
    if status.rejected_by:
        return (
            f"approvals: {status.name!r} version {status.version} is rejected by "
            f"{', '.join(status.rejected_by)}"
        )
    expired = (
        f" ({len(status.expired)} expired: {', '.join(status.expired)})" if status.expired else ""
    )
    return (
        f"approvals: {status.name!r} version {status.version} needs {status.required} "
        f"approval(s) from approvers other than its author; it has {len(status.approved_by)}"
        f"{expired}"
    )


def _check_decidable(name: str, version: int, row: Any, decision: str, actor: str) -> None:
    if actor == row.author:
        raise ForbiddenError(
            f"four eyes: {actor!r} registered {name!r} version {version} and cannot "
            f"{decision} it; another approver must"
        )
    if row.stage in (Stage.PRODUCTION, Stage.ARCHIVED):
        raise ConflictError(
            f"stage: version {version} is in {row.stage}; approvals are for versions "
            "on their way to production"
        )


def _standing(
    decisions: Iterable[ApprovalRecord], author: str, now: datetime
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Approvers whose latest decision stands, has expired, or rejects, by name."""
    latest: dict[str, ApprovalRecord] = {}
    for d in decisions:
        if d.approver != author:  # never counts, whatever got it into the table
            latest[d.approver] = d
    approved, expired, rejected = [], [], []
    for approver, d in sorted(latest.items()):
        if d.decision == "reject":
            rejected.append(approver)
        elif d.expires_at is not None and d.expires_at <= now:
            expired.append(approver)
        else:
            approved.append(approver)
    return tuple(approved), tuple(expired), tuple(rejected)
