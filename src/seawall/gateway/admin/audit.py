"""The audit log, read over HTTP: pages of records, the chain's head, and a verification.

Admin only, and only with a key for every model: the log names every model, key and actor, so
neither viewers nor a key limited to some models may read it. Without a database, 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict

from seawall.gateway.admin.access import Control, requires
from seawall.gateway.admin.errors import responses
from seawall.policies import ApiKey

__all__ = ["AuditHeadView", "AuditPage", "AuditRecordView", "AuditVerification", "audit_routes"]

Admin = Annotated[ApiKey, Depends(requires("admin", every_model=True))]

#: Records in a page when no limit is given, and the most in one page.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# seq is a signed 64-bit integer in both databases: a larger `after_seq` cannot be bound.
_MAX_SEQ = 2**63 - 1


class AuditRecordView(BaseModel):
    """One audit record: who did what to what, when, and its place in the hash chain."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    at: datetime
    actor: str
    """An API key's name, `cli:<user>` or `system`."""
    action: str
    """A dotted name: `key.create`, `circuit.mode`, `model.promote`."""
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """Records in seq order, and where the next page starts."""

    model_config = ConfigDict(extra="forbid")

    records: list[AuditRecordView]
    next_after_seq: int | None
    """`after_seq` of the next page; null when this page was the last one (for now)."""


class AuditHeadView(BaseModel):
    """Where the chain ends: keep a copy elsewhere to prove later that nothing was rewritten."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    """The last record's seq (0: the log is empty)."""
    hash: str


class AuditVerification(BaseModel):
    """Whether every record's link and hash, and the head, check out."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    checked: int
    """Records found intact: all of them when ok, else those before the first bad one."""
    head_seq: int
    head_hash: str
    first_bad_seq: int | None
    problem: str | None
    """edited, missing, relinked, unexpected, replaced or no_head."""
    reason: str


def audit_routes(app: FastAPI) -> None:
    """`/admin/audit/...` over the gateway database's audit log."""

    @app.get(
        "/admin/audit/records",
        tags=["audit"],
        response_model=AuditPage,
        responses=responses(422, 503),
    )
    async def audit_records(
        key: Admin,
        control: Control,
        after_seq: Annotated[int, Query(ge=0, le=_MAX_SEQ, description="Records after it.")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    ) -> AuditPage:
        """Up to `limit` records with seq above `after_seq`, oldest first."""
        records = await (await control.audit()).records(after_seq=after_seq, limit=limit)
        views = [
            AuditRecordView(
                seq=r.seq,
                at=r.at,
                actor=r.actor,
                action=r.action,
                target=r.target,
                details=r.details,
                prev_hash=r.prev_hash,
                hash=r.hash,
            )
            for r in records
        ]
        last = records[-1].seq if len(records) == limit else None
        return AuditPage(records=views, next_after_seq=last)

    @app.get(
        "/admin/audit/head", tags=["audit"], response_model=AuditHeadView, responses=responses(503)
    )
    async def audit_head(key: Admin, control: Control) -> AuditHeadView:
        """The last record's seq and hash."""
        head = await (await control.audit()).head()
        return AuditHeadView(seq=head.seq, hash=head.hash)

    @app.get(
        "/admin/audit/verify",
        tags=["audit"],
        response_model=AuditVerification,
        responses=responses(503),
    )
    async def audit_verify(key: Admin, control: Control) -> AuditVerification:
        """Check the whole chain (200 either way: `ok` says whether it holds)."""
        result = await (await control.audit()).verify()
        return AuditVerification(
            ok=result.ok,
            checked=result.checked,
            head_seq=result.head_seq,
            head_hash=result.head_hash,
            first_bad_seq=result.first_bad_seq,
            problem=result.problem,
            reason=result.reason,
        )
