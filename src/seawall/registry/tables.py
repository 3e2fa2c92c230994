"""The registry's tables (migration 0004): models, versions, aliases, approvals, deployments.

Only `seawall.registry` reads or writes them; other packages call its functions. Versions are
numbered per model from 1, never reused. JSON columns hold what has no fixed shape (metrics,
parameters, tags, the input/output signature, the artifact's files by path and sha256).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from seawall.store.schema import Base, UtcDateTime

__all__ = ["AliasRow", "ApprovalRow", "DeploymentRow", "EventRow", "ModelRow", "VersionRow"]


class ModelRow(Base):
    """A registered model: a name that versions are registered under."""

    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text)
    #: Distinct approvers a version needs before it may enter production.
    required_approvals: Mapped[int] = mapped_column(Integer)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(Text)


class VersionRow(Base):
    """One version of a model: its artifact, provenance, evaluation and stage."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16))
    framework: Mapped[str] = mapped_column(String(32))
    #: "file" or "directory", as in the signed manifest.
    artifact_kind: Mapped[str] = mapped_column(String(16))
    #: {relative path: sha256} of every file of the artifact (a one-file artifact: its name).
    artifact_files: Mapped[dict[str, str]] = mapped_column(JSON)
    artifact_bytes: Mapped[int] = mapped_column(BigInteger)
    #: Where the blobs are (the artifact store's root when registered).
    artifact_uri: Mapped[str] = mapped_column(Text)
    #: sha256 of the signed manifest envelope in the artifact store (None: unsigned).
    manifest_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The signing key's id (None: unsigned).
    signed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset_snapshot: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_version: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The version this one was trained from or fine-tuned on (lineage), if any.
    parent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stage_changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AliasRow(Base):
    """A movable name for one version of a model (`champion`, `challenger`, ...)."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(Text)


class ApprovalRow(Base):
    """An approval or a rejection of one version, by one approver, with a comment."""

    __tablename__ = "model_approvals"
    __table_args__ = (Index("ix_model_approvals_model_id_version", "model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    version: Mapped[int] = mapped_column(Integer)
    #: "approve" or "reject".
    decision: Mapped[str] = mapped_column(String(16))
    approver: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: An approval stops counting at this time; a rejection stands until withdrawn.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class DeploymentRow(Base):
    """A version serving somewhere, at a traffic share, from `started_at` to `ended_at`."""

    __tablename__ = "model_deployments"
    __table_args__ = (Index("ix_model_deployments_model_id_target", "model_id", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    version: Mapped[int] = mapped_column(Integer)
    #: Where it serves: a gateway, an environment, a rollout's variant.
    target: Mapped[str] = mapped_column(Text)
    traffic_share: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_by: Mapped[str] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ended_by: Mapped[str | None] = mapped_column(Text, nullable=True)


class EventRow(Base):
    """One change to a model, for `history`: registered, stage moved, alias moved, approved..."""

    __tablename__ = "model_events"
    __table_args__ = (Index("ix_model_events_model_id", "model_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    #: The version concerned (None: the model itself).
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The audit action it was recorded under (`model.promote`, `model.alias`, ...).
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
