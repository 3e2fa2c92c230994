"""What the registry hands out: immutable records of models, versions, aliases, approvals.

Each has `to_json()` (plain JSON types, times in ISO 8601 UTC) for the admin API, the CLI's
`--json` output and audit details.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from seawall.registry.stages import Stage
from seawall.store.record import Record

__all__ = [
    "AliasRecord",
    "ApprovalRecord",
    "ApprovalStatus",
    "ArtifactInfo",
    "DeploymentRecord",
    "EventRecord",
    "LineageNode",
    "ModelRecord",
    "VersionRecord",
]


@dataclass(frozen=True, slots=True)
class ArtifactInfo(Record):
    """An artifact put into the artifact store: its files by path and sha256, and its manifest."""

    #: "file" or "directory".
    kind: str
    #: Relative POSIX path → sha256 (a one-file artifact: its file name).
    files: dict[str, str]
    total_bytes: int
    #: The artifact store the blobs are in.
    uri: str
    #: sha256 of the signed manifest envelope, stored as a blob too (None: unsigned).
    manifest_digest: str | None = None
    #: Id of the key that signed the manifest (None: unsigned).
    signed_by: str | None = None

    @property
    def entry(self) -> str:
        """The file to load for a one-file artifact ("" for a directory)."""
        return next(iter(self.files)) if self.kind == "file" else ""


@dataclass(frozen=True, slots=True)
class ModelRecord(Record):
    """A registered model."""

    name: str
    description: str
    required_approvals: int
    tags: dict[str, Any]
    created_at: datetime
    created_by: str
    #: Alias → version.
    aliases: dict[str, int] = field(default_factory=dict)
    latest_version: int | None = None


@dataclass(frozen=True, slots=True)
class VersionRecord(Record):
    """One version of a model."""

    name: str
    version: int
    stage: Stage
    framework: str
    artifact: ArtifactInfo
    signature: dict[str, Any] | None
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    tags: dict[str, Any]
    dataset_snapshot: str | None
    code_version: str | None
    parent_version: int | None
    description: str
    author: str
    created_at: datetime
    stage_changed_at: datetime
    #: Aliases pointing at this version.
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        """`models:/name/version`."""
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class AliasRecord(Record):
    """Where an alias points now."""

    name: str
    alias: str
    version: int
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class ApprovalRecord(Record):
    """An approval or rejection of one version."""

    id: int
    name: str
    version: int
    decision: str
    approver: str
    comment: str
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApprovalStatus(Record):
    """Whether a version may enter production now, and why (not)."""

    name: str
    version: int
    required: int
    #: Approvers whose latest decision is an approval that has not expired.
    approved_by: tuple[str, ...]
    #: Approvers whose approval expired (without a newer decision).
    expired: tuple[str, ...]
    #: Approvers whose latest decision is a rejection.
    rejected_by: tuple[str, ...]
    decisions: tuple[ApprovalRecord, ...]

    @property
    def satisfied(self) -> bool:
        return not self.rejected_by and len(self.approved_by) >= self.required


@dataclass(frozen=True, slots=True)
class DeploymentRecord(Record):
    """A version serving at a target, at a traffic share, for a time (open: `ended_at` None)."""

    id: int
    name: str
    version: int
    target: str
    traffic_share: float
    started_at: datetime
    started_by: str
    ended_at: datetime | None
    ended_by: str | None


@dataclass(frozen=True, slots=True)
class EventRecord(Record):
    """One entry of a model's history."""

    id: int
    name: str
    version: int | None
    action: str
    details: dict[str, Any]
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LineageNode(Record):
    """One version in a lineage walk: where it came from."""

    name: str
    version: int
    stage: Stage
    dataset_snapshot: str | None
    code_version: str | None
    parent_version: int | None
    author: str
    created_at: datetime
    artifact_digests: dict[str, str]
