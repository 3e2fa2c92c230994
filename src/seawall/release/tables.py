"""The release controller's tables (migration 0007): rollouts and the decisions that moved them.

Only `seawall.release` reads or writes them. A rollout row holds the plan it walks and the
controller's whole state (`RolloutState.to_json()`), so a restarted gateway resumes it at the
same step; its other columns repeat what the state says for queries and listings. At most one
rollout per model is live (running, waiting for approval or paused): the store checks it in
the transaction that starts one, and a partial unique index holds it against a concurrent start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from seawall.store.schema import Base, UtcDateTime

__all__ = ["LIVE_PREDICATE", "LIVE_STATUSES", "DecisionRow", "RolloutRow"]

#: The statuses of a rollout that is not over (`Status` values); one such rollout per model.
LIVE_STATUSES = ("running", "waiting_approval", "paused")

#: `status IN ('running', ...)`: the predicate of the partial unique index, as migration 0007
#: writes it.
LIVE_PREDICATE = "status IN ({})".format(", ".join(f"'{s}'" for s in LIVE_STATUSES))


class RolloutRow(Base):
    """One rollout of a model's canary version: its plan, state and where it stands."""

    __tablename__ = "rollouts"
    __table_args__ = (
        Index("ix_rollouts_model_id", "model", "id"),
        Index(
            "uq_rollouts_live_model",
            "model",
            unique=True,
            postgresql_where=text(LIVE_PREDICATE),
            sqlite_where=text(LIVE_PREDICATE),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(200))
    stable_version: Mapped[str] = mapped_column(String(64))
    canary_version: Mapped[str] = mapped_column(String(64))
    #: A `Status` value; the same as `state["status"]`.
    status: Mapped[str] = mapped_column(String(32))
    step_index: Mapped[int] = mapped_column(Integer)
    #: The canary's share of traffic, percent.
    weight: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    #: `plan_to_json(plan)`: the plan file's shape.
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: `RolloutState.to_json()`: everything a controller needs to carry on.
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Saves so far; a save names the revision it follows, so a stale writer is refused.
    revision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DecisionRow(Base):
    """One decision of a rollout: what changed, why, with the guardrails' measurements."""

    __tablename__ = "rollout_decisions"
    __table_args__ = (Index("ix_rollout_decisions_rollout_id", "rollout_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"))
    #: A `DecisionKind` value (the audit action is `rollout.<kind>`).
    kind: Mapped[str] = mapped_column(String(32))
    step_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    weight: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    #: `GuardrailResult.to_json()` of each guardrail measured (analysis decisions).
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: Who decided: `system` (the controller) or the person who gave the command.
    actor: Mapped[str] = mapped_column(Text)
