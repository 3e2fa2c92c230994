"""A model's history: its events (each with an audit record), deployments and lineage.

`History` writes in the caller's transaction, so a change, its history entry and its audit
record are committed together or not at all; the functions read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from seawall.clock import Clock
from seawall.registry.lookup import model_row, version_record, version_row
from seawall.registry.records import DeploymentRecord, EventRecord, LineageNode
from seawall.registry.tables import DeploymentRow, EventRow
from seawall.store.audit import AuditLog

__all__ = ["History", "deployments", "events", "lineage"]


class History:
    """Appends a model's events and deployments, timed by `clock`, audited in `audit`."""

    def __init__(self, audit: AuditLog, clock: Clock) -> None:
        self.audit = audit
        self.clock = clock

    def now(self) -> datetime:
        """The clock's time, as the registry stores it (UTC)."""
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def event(
        self,
        connection: Connection,
        model_id: int,
        name: str,
        version: int | None,
        action: str,
        actor: str,
        details: dict[str, Any],
    ) -> None:
        """Append `action` to the model's history and to the audit log."""
        target = f"model:{name}" if version is None else f"model:{name}/{version}"
        self.audit.append_in(connection, actor, action, target, details)
        connection.execute(
            insert(EventRow).values(
                model_id=model_id,
                version=version,
                action=action,
                details=details,
                actor=actor,
                at=self.now(),
            )
        )

    def deploy(
        self, connection: Connection, name: str, version: int, target: str, share: float, actor: str
    ) -> DeploymentRecord | None:
        """End `version`'s open deployment at `target`; open one for `share` unless it is 0."""
        model, _ = version_row(connection, name, version)
        now = self.now()
        ended = self._end_open(connection, model.id, version, target, now, actor)
        new_id = None
        if share > 0:
            new_id = connection.execute(
                insert(DeploymentRow)
                .values(
                    model_id=model.id,
                    version=version,
                    target=target,
                    traffic_share=share,
                    started_at=now,
                    started_by=actor,
                )
                .returning(DeploymentRow.id)
            ).scalar_one()
        details = {"target": target, "traffic_share": share}
        self.event(connection, model.id, name, version, "model.deploy", actor, details)
        wanted = new_id if new_id is not None else (max(ended) if ended else None)
        if wanted is None:
            return None
        row = connection.execute(select(DeploymentRow).where(DeploymentRow.id == wanted)).one()
        return _deployment(name, row)

    @staticmethod
    def _end_open(
        connection: Connection,
        model_id: int,
        version: int,
        target: str,
        now: datetime,
        actor: str,
    ) -> list[int]:
        open_rows = connection.execute(
            select(DeploymentRow.id).where(
                DeploymentRow.model_id == model_id,
                DeploymentRow.version == version,
                DeploymentRow.target == target,
                DeploymentRow.ended_at.is_(None),
            )
        ).scalars()
        ended = list(open_rows)
        if ended:
            connection.execute(
                update(DeploymentRow)
                .where(DeploymentRow.id.in_(ended))
                .values(ended_at=now, ended_by=actor)
            )
        return ended


def deployments(
    connection: Connection, name: str, target: str | None, open_only: bool
) -> list[DeploymentRecord]:
    """Deployments of `name` (at `target`; only open ones), newest first."""
    model = model_row(connection, name)
    query = select(DeploymentRow).where(DeploymentRow.model_id == model.id)
    if target is not None:
        query = query.where(DeploymentRow.target == target)
    if open_only:
        query = query.where(DeploymentRow.ended_at.is_(None))
    rows = connection.execute(query.order_by(DeploymentRow.id.desc()))
    return [_deployment(name, row) for row in rows]


def events(connection: Connection, name: str, limit: int) -> list[EventRecord]:
    """The last `limit` events of `name` and its versions, oldest first."""
    model = model_row(connection, name)
    rows = connection.execute(
        select(EventRow)
        .where(EventRow.model_id == model.id)
        .order_by(EventRow.id.desc())
        .limit(limit)
    ).all()
    return [
        EventRecord(r.id, name, r.version, r.action, dict(r.details), r.actor, r.at)
        for r in reversed(rows)
    ]


def lineage(connection: Connection, name: str, version: int) -> list[LineageNode]:
    """`version`, then the version it came from, and so on (parent links, cycle-safe)."""
    chain: list[LineageNode] = []
    seen: set[int] = set()
    current: int | None = version
    while current is not None and current not in seen:
        seen.add(current)
        record = version_record(connection, name, current)
        chain.append(
            LineageNode(
                name=name,
                version=record.version,
                stage=record.stage,
                dataset_snapshot=record.dataset_snapshot,
                code_version=record.code_version,
                parent_version=record.parent_version,
                author=record.author,
                created_at=record.created_at,
                artifact_digests=record.artifact.files,
            )
        )
        current = record.parent_version
    return chain


def _deployment(name: str, row: Any) -> DeploymentRecord:
    return DeploymentRecord(
        row.id,
        name,
        row.version,
        row.target,
        row.traffic_share,
        row.started_at,
        row.started_by,
        row.ended_at,
        row.ended_by,
    )
