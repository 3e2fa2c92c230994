"""The registry's records as the admin API shows them, and the requests that change them.

Each view has exactly the fields of its `seawall.registry.records` record (`to_json()`), plus
what a client would otherwise compute (a version's `uri`, whether approvals are `satisfied`);
a test keeps them equal. Requests are bounded as the registry's columns are, so the schema
says what will be refused; the rules no schema can state (four eyes, stages, protected aliases)
are the registry's, answered 403 or 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from seawall.config.base import NAME_PATTERN
from seawall.gateway.admin.artifacts import MAX_VERSION, ArtifactSpec

if TYPE_CHECKING:
    from seawall.registry import ApprovalStatus, VersionRecord

__all__ = [
    "ALIAS_PATTERN",
    "MODEL_NAME_PATTERN",
    "AliasChange",
    "AliasView",
    "ApprovalStatusView",
    "ApprovalView",
    "ArtifactView",
    "DecisionRequest",
    "DeploymentView",
    "EventView",
    "LineageNodeView",
    "ModelChange",
    "ModelCreate",
    "ModelView",
    "RejectionRequest",
    "StageChange",
    "VersionCreate",
    "VersionDetail",
    "VersionView",
    "approval_status_view",
    "version_view",
]

#: Model names, as in config (and `seawall.registry.MODEL_NAME_PATTERN`).
MODEL_NAME_PATTERN = NAME_PATTERN
#: Alias names (`seawall.registry.ALIAS_PATTERN`): a lower-case word, never a number.
ALIAS_PATTERN = r"^[a-z][a-z0-9_\-]{0,63}$"
#: Longest description, comment or provenance text (the registry's limit).
MAX_TEXT = 10_000
#: At most this many approvals can be required (`registry.MAX_REQUIRED_APPROVALS`).
MAX_REQUIRED_APPROVALS = 10

Stage = Literal["none", "staging", "production", "archived"]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Number = Annotated[int, Field(ge=1, le=MAX_VERSION, strict=True)]
Metric = Annotated[float, Field(strict=True, allow_inf_nan=False)]
#: Nesting deeper than this is refused (as the registry does).
MAX_DEPTH = 20


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    """`value`, if every text in it is UTF-8 (JSON may spell a lone surrogate, which no
    database or audit hash can store) and it nests at most `MAX_DEPTH` deep."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"text {item!r} is not UTF-8 (a lone surrogate)") from None
        elif isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


#: A JSON object of any shape (tags, parameters, a signature).
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelView(_View):
    """A registered model."""

    name: str
    description: str
    required_approvals: int
    """Approvals from people other than the author a version needs to enter production."""
    tags: dict[str, Any]
    created_at: datetime
    created_by: str
    """An API key's name, or `cli:<user>`."""
    aliases: dict[str, int]
    """Alias → the version it points at."""
    latest_version: int | None
    """The highest version number; null before the first registration."""


class ModelCreate(_View):
    """A model to register (its versions come later)."""

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    """As in config and in `/v2/models/{name}`."""
    description: Text = ""
    required_approvals: int | None = Field(None, ge=0, le=MAX_REQUIRED_APPROVALS, strict=True)
    """Approvals a version needs before production; null: `registry.required_approvals`."""
    tags: JsonObject = {}
    """Free-form labels (team, task...)."""


class ModelChange(_View):
    """What to change about a model (at least one field)."""

    description: Text | None = None
    required_approvals: int | None = Field(None, ge=0, le=MAX_REQUIRED_APPROVALS, strict=True)
    """Lowering it weakens four eyes for every version not yet in production: admin only."""


class ArtifactView(_View):
    """A version's artifact in the artifact store."""

    kind: Literal["file", "directory"]
    files: dict[str, str]
    """Relative POSIX path → sha256."""
    total_bytes: int
    uri: str
    """The artifact store the blobs are in."""
    manifest_digest: str | None
    """sha256 of the signed manifest envelope; null: unsigned."""
    signed_by: str | None
    """The signing key's id, from the manifest."""


class VersionView(_View):
    """One version of a model."""

    name: str
    version: int
    uri: str
    """`models:/name/version`, as a gateway's `registry` backend names it."""
    stage: Stage
    framework: str
    artifact: ArtifactView
    signature: dict[str, Any] | None
    """The model's inputs and outputs, if registered."""
    parameters: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, Any]
    dataset_snapshot: str | None
    code_version: str | None
    parent_version: int | None
    description: str
    author: str
    """Who registered it (an API key's name): never one of its approvers."""
    created_at: datetime
    stage_changed_at: datetime
    aliases: list[str]
    """Aliases pointing at it."""


class VersionCreate(_View):
    """A version to register, its files already uploaded (`PUT /admin/artifacts/{sha256}`)."""

    framework: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,31}$")
    """sklearn, onnx, pytorch..."""
    version: Number | None = None
    """The number to take; null: the next one (or, with a manifest, the one it was signed for)."""
    artifact: ArtifactSpec
    signature: JsonObject | None = None
    """The model's inputs and outputs (names, datatypes, shapes)."""
    parameters: JsonObject = {}
    """Training parameters."""
    metrics: dict[str, Metric] = {}
    """Evaluation results, by name."""
    tags: JsonObject = {}
    dataset_snapshot: Text | None = None
    """The data snapshot it was trained on."""
    code_version: Text | None = None
    """The commit it was trained from."""
    parent_version: Number | None = None
    """The version it was trained or fine-tuned from (lineage)."""
    description: Text = ""


class StageChange(_View):
    """Where to move a version."""

    stage: Stage
    """Production only from staging, with the model's approvals."""
    comment: Text = ""
    alias: str | None = Field(None, pattern=ALIAS_PATTERN)
    """With `production`: point this alias at the version in the same commit."""
    archive_previous: bool = True
    """With `production`: archive the model's other production versions (not those a protected
    alias points at)."""


class ApprovalView(_View):
    """An approval or rejection of one version."""

    id: int
    name: str
    version: int
    decision: Literal["approve", "reject"]
    approver: str
    comment: str
    created_at: datetime
    expires_at: datetime | None
    """When an approval stops counting; null for a rejection (it stands until replaced)."""


class ApprovalStatusView(_View):
    """Whether a version may enter production now, and why (not)."""

    name: str
    version: int
    required: int
    approved_by: list[str]
    """Approvers whose latest decision is an approval that has not expired."""
    expired: list[str]
    """Approvers whose approval expired."""
    rejected_by: list[str]
    """Approvers whose latest decision is a rejection."""
    decisions: list[ApprovalView]
    """Every decision, oldest first."""
    satisfied: bool
    """Enough approvals and no standing rejection."""


class VersionDetail(VersionView):
    """One version, with its approval status."""

    approvals: ApprovalStatusView


class DecisionRequest(_View):
    """An approval."""

    comment: Text = ""


class RejectionRequest(_View):
    """A rejection: it says why."""

    comment: Text = Field(min_length=1)


class AliasView(_View):
    """Where an alias points."""

    name: str
    alias: str
    version: int
    updated_at: datetime
    updated_by: str


class AliasChange(_View):
    """The version an alias should point at."""

    version: Number
    """A protected alias (`champion`) only points at a version in production."""


class EventView(_View):
    """One entry of a model's history."""

    id: int
    name: str
    version: int | None
    """Null: about the model itself."""
    action: str
    """`model.create`, `model.register`, `model.stage`, `model.approve`, `model.alias`..."""
    details: dict[str, Any]
    actor: str
    """An API key's name, `cli:<user>` or `system`."""
    at: datetime


class LineageNodeView(_View):
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


class DeploymentView(_View):
    """A version serving at a target (open while `ended_at` is null)."""

    id: int
    name: str
    version: int
    target: str
    traffic_share: float
    started_at: datetime
    started_by: str
    ended_at: datetime | None
    ended_by: str | None


def version_view(record: VersionRecord) -> VersionView:
    return VersionView.model_validate({**record.to_json(), "uri": record.uri})


def approval_status_view(status: ApprovalStatus) -> ApprovalStatusView:
    return ApprovalStatusView.model_validate({**status.to_json(), "satisfied": status.satisfied})
