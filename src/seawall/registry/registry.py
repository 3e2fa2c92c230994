"""`Registry`: registered models, versions, aliases, stages, approvals, deployments, lineage.

Every change is one transaction that also appends its audit record (`AuditLog.append_in`) and
a row of the model's history (`model_events`): the change, the record and the history entry
are committed together or not at all. Reads run on a read-only connection.

Rules enforced here, whoever calls (admin API, CLI, rollout controller):

- A version enters `production` only from `staging` and only with the model's required number
  of approvals, from distinct approvers other than the version's author (four eyes), none of
  them expired, and no standing rejection. Each approver's latest decision counts.
- A protected alias (`champion` by default) points only at a version in production, and a
  version a protected alias points at cannot leave production: move the alias first. What a
  gateway serves by `models:/name@champion` has therefore always been approved.
- Versions are numbered per model from 1 and never reused; a version's artifact, provenance and
  author never change after registration.

Refusals are seawall errors, so the admin API maps them to statuses without a table of its own:
`InvalidInputError` (400) names the field, `NotFoundError` (404) an unknown model, version or
alias, `ConflictError` (409) a broken rule (stage, approvals, alias), `ForbiddenError` (403) an
author deciding on their own version.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from seawall.clock import Clock, SystemClock
from seawall.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from seawall.registry.records import (
    AliasRecord,
    ApprovalRecord,
    ApprovalStatus,
    ArtifactInfo,
    DeploymentRecord,
    EventRecord,
    LineageNode,
    ModelRecord,
    VersionRecord,
)
from seawall.registry.stages import Stage, check_transition
from seawall.registry.tables import (
    AliasRow,
    ApprovalRow,
    DeploymentRow,
    EventRow,
    ModelRow,
    VersionRow,
)
from seawall.store.audit import AuditLog
from seawall.store.blobs import BlobStore, is_digest
from seawall.store.engine import Database

__all__ = [
    "ALIAS_PATTERN",
    "DEFAULT_APPROVAL_TTL_S",
    "DEFAULT_PROTECTED_ALIASES",
    "DEFAULT_REQUIRED_APPROVALS",
    "MODEL_NAME_PATTERN",
    "Registry",
    "RegistryOptions",
    "check_framework",
    "parse_model_uri",
]

#: Model names, as in config and in /v2/models/{name}.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
#: Alias names: a lower-case word, never a number (a number is a version).
ALIAS_PATTERN = r"^[a-z][a-z0-9_\-]{0,63}$"
#: Approvals count for a week unless configured otherwise.
DEFAULT_APPROVAL_TTL_S = 7 * 24 * 3600.0
#: Aliases that may only point at a version in production.
DEFAULT_PROTECTED_ALIASES = frozenset({"champion"})
#: Approvals a new model's versions need before production, unless given when it is created.
DEFAULT_REQUIRED_APPROVALS = 1
#: The largest version number (the columns are 32-bit integers on both databases).
MAX_VERSION = 2**31 - 1
#: At most this many approvals can be required (four eyes is 1; a committee is a few).
MAX_REQUIRED_APPROVALS = 10

_NAME = re.compile(MODEL_NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[^/@]+))$")
_FRAMEWORK = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")
_MAX_TEXT = 10_000
_VERSION_ATTEMPTS = 5
T = TypeVar("T")


def parse_model_uri(uri: str) -> tuple[str, int | None, str | None]:
    """`models:/name/3` → (name, 3, None); `models:/name@champion` → (name, None, "champion")."""
    match = _URI.fullmatch(uri)
    if match is None:
        raise InvalidInputError(
            "uri", f"expected models:/<name>/<version> or models:/<name>@<alias>, got {uri!r}"
        )
    name, version, alias = match["name"], match["version"], match["alias"]
    _check_name(name)
    if alias is not None:
        _check_alias(alias)
    return name, None if version is None else int(version), alias


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """Rules of a registry."""

    #: How long an approval counts, in seconds.
    approval_ttl_s: float = DEFAULT_APPROVAL_TTL_S
    #: Aliases that only ever point at a version in production.
    protected_aliases: frozenset[str] = DEFAULT_PROTECTED_ALIASES
    #: Approvals a model needs when created without saying.
    default_required_approvals: int = DEFAULT_REQUIRED_APPROVALS
    #: A version enters production only if it was registered with a signed manifest.
    require_signed: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.approval_ttl_s) and self.approval_ttl_s > 0):
            raise ValueError(f"approval_ttl_s: seconds > 0, got {self.approval_ttl_s}")
        for alias in self.protected_aliases:
            if not _ALIAS.fullmatch(alias):
                raise ValueError(f"protected_aliases: {alias!r} does not match {ALIAS_PATTERN}")
        if not 0 <= self.default_required_approvals <= MAX_REQUIRED_APPROVALS:
            raise ValueError(
                f"default_required_approvals: 0 to {MAX_REQUIRED_APPROVALS}, "
                f"got {self.default_required_approvals}"
            )


class Registry:
    """The model registry in `database`; every method is async, on the database's threads."""

    def __init__(
        self,
        database: Database,
        *,
        clock: Clock | None = None,
        audit: AuditLog | None = None,
        blobs: BlobStore | None = None,
        options: RegistryOptions | None = None,
    ) -> None:
        """`blobs`: when given, a version's files (and manifest) must be in it to register."""
        self.database = database
        self.options = options or RegistryOptions()
        self.blobs = blobs
        self._clock = clock or SystemClock()
        self._audit = audit or AuditLog(database, clock=self._clock)

    # ----------------------------------------------------------------- models

    async def create_model(
        self,
        name: str,
        *,
        actor: str,
        description: str = "",
        required_approvals: int | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Register a model name (ConflictError if it exists)."""
        _check_name(name)
        required = (
            self.options.default_required_approvals
            if required_approvals is None
            else _check_required(required_approvals)
        )
        values = {
            "name": name,
            "description": _text("description", description),
            "required_approvals": required,
            "tags": _object("tags", tags),
            "created_by": actor,
        }
        try:
            return await self.database.run(self._create_model, values)
        except IntegrityError:
            raise ConflictError(f"name: model {name!r} is registered already") from None

    async def update_model(
        self,
        name: str,
        *,
        actor: str,
        description: str | None = None,
        required_approvals: int | None = None,
    ) -> ModelRecord:
        """Change a model's description or the approvals its versions need."""
        changes: dict[str, Any] = {}
        if description is not None:
            changes["description"] = _text("description", description)
        if required_approvals is not None:
            changes["required_approvals"] = _check_required(required_approvals)
        if not changes:
            raise InvalidInputError("body", "nothing to change (description, required_approvals)")
        return await self.database.run(self._update_model, name, changes, actor)

    async def list_models(self) -> list[ModelRecord]:
        """Every registered model, by name."""
        return await self.database.run(self._list_models)

    async def get_model(self, name: str) -> ModelRecord:
        """One model, with its aliases and latest version."""
        return await self.database.run(self._read, lambda c: self._model_record(c, name))

    # --------------------------------------------------------------- versions

    async def register_version(
        self,
        name: str,
        artifact: ArtifactInfo,
        *,
        actor: str,
        framework: str,
        version: int | None = None,
        signature: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        dataset_snapshot: str | None = None,
        code_version: str | None = None,
        parent_version: int | None = None,
        description: str = "",
        create_model: bool = True,
    ) -> VersionRecord:
        """Register a new version of `name` (created first if `create_model` and missing).

        `version`: the number to take (a signed manifest names its version, so a client that
        signs first asks for the number it signed); default the next one. The author is
        `actor`, for the four-eyes rule. The artifact's blobs must be in `blobs`, if set.
        """
        _check_name(name)
        if version is not None and not (isinstance(version, int) and 1 <= version <= MAX_VERSION):
            raise InvalidInputError(
                "version", f"a whole number, 1 to {MAX_VERSION}, got {version!r}"
            )
        if parent_version is not None and not (
            isinstance(parent_version, int) and 1 <= parent_version <= MAX_VERSION
        ):
            raise InvalidInputError("parent_version", f"a version number, got {parent_version!r}")
        check_framework(framework)
        self._check_artifact(artifact)
        values: dict[str, Any] = {
            "framework": framework,
            "artifact_kind": artifact.kind,
            "artifact_files": dict(artifact.files),
            "artifact_bytes": artifact.total_bytes,
            "artifact_uri": artifact.uri,
            "manifest_digest": artifact.manifest_digest,
            "signed_by": artifact.signed_by,
            "signature": None if signature is None else _object("signature", signature),
            "parameters": _object("parameters", parameters),
            "metrics": _metrics(metrics),
            "tags": _object("tags", tags),
            "dataset_snapshot": _optional_text("dataset_snapshot", dataset_snapshot),
            "code_version": _optional_text("code_version", code_version),
            "parent_version": parent_version,
            "description": _text("description", description),
            "author": actor,
        }
        for attempt in range(_VERSION_ATTEMPTS):
            try:
                return await self.database.run(
                    self._register, name, version, values, actor, create_model
                )
            except IntegrityError:
                # Another writer created the model (or took an explicit number) first.
                if version is not None or attempt == _VERSION_ATTEMPTS - 1:
                    raise ConflictError(
                        f"version: {name!r} version {version} exists"
                        if version is not None
                        else f"version: could not number a new version of {name!r}; retry"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def list_versions(self, name: str) -> list[VersionRecord]:
        """Every version of `name`, newest first."""
        return await self.database.run(self._read, lambda c: self._versions(c, name))

    async def get_version(self, name: str, version: int) -> VersionRecord:
        """One version."""
        return await self.database.run(self._read, lambda c: self._version_record(c, name, version))

    async def resolve(self, name: str, ref: str | int) -> VersionRecord:
        """The version `ref` names: a number, `@alias` or `alias`; or a `models:/` URI's target."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return await self.get_version(name, int(ref))
        alias = ref.removeprefix("@")
        _check_alias(alias)
        return await self.database.run(self._read, lambda c: self._by_alias(c, name, alias))

    async def resolve_uri(self, uri: str) -> VersionRecord:
        """The version a `models:/name/3` or `models:/name@alias` URI names now."""
        name, version, alias = parse_model_uri(uri)
        return await self.resolve(name, version if version is not None else f"@{alias}")

    # ---------------------------------------------------------------- aliases

    async def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> AliasRecord:
        """Point `alias` at `version` (creating it); a protected alias needs production."""
        _check_alias(alias)
        return await self.database.run(self._set_alias, name, alias, version, actor)

    async def delete_alias(self, name: str, alias: str, *, actor: str) -> AliasRecord:
        """Remove `alias`; the record of where it pointed."""
        _check_alias(alias)
        return await self.database.run(self._delete_alias, name, alias, actor)

    # -------------------------------------------------------------- approvals

    async def approve(
        self, name: str, version: int, *, actor: str, comment: str = ""
    ) -> ApprovalRecord:
        """Approve `version` for production (not by its author); expires after the TTL."""
        return await self.database.run(
            self._decide, name, version, "approve", actor, _text("comment", comment)
        )

    async def reject(self, name: str, version: int, *, actor: str, comment: str) -> ApprovalRecord:
        """Reject `version`: it cannot enter production while this is the actor's last word."""
        if not comment or not comment.strip():
            raise InvalidInputError("comment", "a rejection says why")
        return await self.database.run(
            self._decide, name, version, "reject", actor, _text("comment", comment)
        )

    async def approval_status(self, name: str, version: int) -> ApprovalStatus:
        """Who approved or rejected `version`, and whether it may enter production now."""
        return await self.database.run(
            self._read, lambda c: self._approval_status(c, name, version)
        )

    # ----------------------------------------------------------------- stages

    async def transition(
        self,
        name: str,
        version: int,
        stage: Stage | str,
        *,
        actor: str,
        comment: str = "",
        alias: str | None = None,
        archive_previous: bool = True,
    ) -> VersionRecord:
        """Move `version` to `stage` (production needs its approvals).

        Entering production with `alias` also points that alias at it, in the same commit;
        with `archive_previous`, the model's other production versions are archived, except
        those a protected alias still points at.
        """
        try:
            target = Stage(stage)
        except ValueError:
            known = ", ".join(s.value for s in Stage)
            raise InvalidInputError("stage", f"one of {known}, got {stage!r}") from None
        if alias is not None:
            _check_alias(alias)
        return await self.database.run(
            self._transition,
            name,
            version,
            target,
            actor,
            _text("comment", comment),
            alias,
            archive_previous,
        )

    # ------------------------------------------------------------ deployments

    async def record_deployment(
        self, name: str, version: int, target: str, traffic_share: float, *, actor: str
    ) -> DeploymentRecord | None:
        """`version` now serves `traffic_share` (0 to 1) of `target`'s traffic.

        Ends the open deployment of this version at `target`, if any, and opens a new one
        unless the share is 0 (then the ended one is returned, or None if none was open).
        """
        if not (isinstance(traffic_share, int | float) and 0.0 <= traffic_share <= 1.0):
            raise InvalidInputError("traffic_share", f"0 to 1, got {traffic_share!r}")
        _optional_text("target", target)
        if not target:
            raise InvalidInputError("target", "where the version serves (a gateway, a variant)")
        return await self.database.run(
            self._deploy, name, version, target, float(traffic_share), actor
        )

    async def deployments(
        self, name: str, *, target: str | None = None, open_only: bool = False
    ) -> list[DeploymentRecord]:
        """Deployments of `name` (at `target`), newest first."""
        return await self.database.run(
            self._read, lambda c: self._deployments(c, name, target, open_only)
        )

    # ---------------------------------------------------------- history, lineage

    async def history(self, name: str, *, limit: int = 1000) -> list[EventRecord]:
        """What happened to `name` and its versions, oldest first (the last `limit` events)."""
        if not 1 <= limit <= 100_000:
            raise InvalidInputError("limit", f"1 to 100000, got {limit}")
        return await self.database.run(self._read, lambda c: self._history(c, name, limit))

    async def lineage(self, name: str, version: int) -> list[LineageNode]:
        """`version`, then the version it came from, and so on (parent links, cycle-safe)."""
        return await self.database.run(self._read, lambda c: self._lineage(c, name, version))

    # ============================================================ internals

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.database.begin(read_only=True) as connection:
            return fn(connection)

    def _check_artifact(self, artifact: ArtifactInfo) -> None:
        if artifact.kind not in ("file", "directory"):
            raise InvalidInputError(
                "artifact.kind", f"'file' or 'directory', got {artifact.kind!r}"
            )
        if not artifact.files:
            raise InvalidInputError("artifact.files", "at least one file")
        if artifact.kind == "file" and len(artifact.files) != 1:
            raise InvalidInputError("artifact.files", "a one-file artifact has exactly one file")
        for path, digest in artifact.files.items():
            if not path or path.startswith("/") or ".." in path.split("/") or "\\" in path:
                raise InvalidInputError("artifact.files", f"{path!r} is not a relative POSIX path")
            if not is_digest(digest):
                raise InvalidInputError("artifact.files", f"{path}: {digest!r} is not a sha256")
        if artifact.manifest_digest is not None and not is_digest(artifact.manifest_digest):
            raise InvalidInputError("artifact.manifest_digest", "not a sha256")
        if artifact.total_bytes < 0:
            raise InvalidInputError("artifact.total_bytes", "must be >= 0")
        if self.blobs is not None:
            wanted = list(artifact.files.items())
            if artifact.manifest_digest is not None:
                wanted.append(("manifest", artifact.manifest_digest))
            for path, digest in wanted:
                if not self.blobs.has(digest):
                    raise InvalidInputError(
                        "artifact.files",
                        f"{path}: blob {digest} is not in the artifact store {self.blobs.root}",
                    )

    def _event(
        self,
        connection: Connection,
        model_id: int,
        name: str,
        version: int | None,
        action: str,
        actor: str,
        details: dict[str, Any],
    ) -> None:
        target = f"model:{name}" if version is None else f"model:{name}/{version}"
        self._audit.append_in(connection, actor, action, target, details)
        connection.execute(
            insert(EventRow).values(
                model_id=model_id,
                version=version,
                action=action,
                details=details,
                actor=actor,
                at=self._now(),
            )
        )

    def _model_row(self, connection: Connection, name: str) -> Any:
        row = connection.execute(select(ModelRow).where(ModelRow.name == name)).first()
        if row is None:
            raise NotFoundError(f"model {name!r} is not registered")
        return row

    def _version_row(self, connection: Connection, name: str, version: int) -> tuple[Any, Any]:
        model = self._model_row(connection, name)
        row = connection.execute(
            select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == version)
        ).first()
        if row is None:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return model, row

    def _aliases(self, connection: Connection, model_id: int) -> dict[str, int]:
        rows = connection.execute(
            select(AliasRow.alias, AliasRow.version)
            .where(AliasRow.model_id == model_id)
            .order_by(AliasRow.alias)
        )
        return {row.alias: row.version for row in rows}

    # ----------------------------------------------------------------- models

    def _create_model(self, values: dict[str, Any]) -> ModelRecord:
        with self.database.begin() as connection:
            self._insert_model(connection, values)
            return self._model_record(connection, values["name"])

    def _insert_model(self, connection: Connection, values: dict[str, Any]) -> int:
        name = values["name"]
        if connection.execute(select(ModelRow.id).where(ModelRow.name == name)).first():
            raise ConflictError(f"name: model {name!r} is registered already")
        # A concurrent insert of the same name (PostgreSQL) raises IntegrityError here.
        model_id: int = connection.execute(
            insert(ModelRow).values(created_at=self._now(), **values).returning(ModelRow.id)
        ).scalar_one()
        details = {k: values[k] for k in ("description", "required_approvals", "tags")}
        self._event(connection, model_id, name, None, "model.create", values["created_by"], details)
        return model_id

    def _update_model(self, name: str, changes: dict[str, Any], actor: str) -> ModelRecord:
        with self.database.begin() as connection:
            model = self._model_row(connection, name)
            connection.execute(update(ModelRow).where(ModelRow.id == model.id).values(**changes))
            self._event(connection, model.id, name, None, "model.update", actor, changes)
            return self._model_record(connection, name)

    def _list_models(self) -> list[ModelRecord]:
        with self.database.begin(read_only=True) as connection:
            names = connection.execute(select(ModelRow.name).order_by(ModelRow.name)).scalars()
            return [self._model_record(connection, n) for n in list(names)]

    def _model_record(self, connection: Connection, name: str) -> ModelRecord:
        row = self._model_row(connection, name)
        latest = connection.execute(
            select(func.max(VersionRow.version)).where(VersionRow.model_id == row.id)
        ).scalar()
        return ModelRecord(
            name=row.name,
            description=row.description,
            required_approvals=row.required_approvals,
            tags=dict(row.tags),
            created_at=row.created_at,
            created_by=row.created_by,
            aliases=self._aliases(connection, row.id),
            latest_version=latest,
        )

    # --------------------------------------------------------------- versions

    def _register(
        self,
        name: str,
        version: int | None,
        values: dict[str, Any],
        actor: str,
        create_model: bool,
    ) -> VersionRecord:
        with self.database.begin() as connection:
            # Locks the model's row (PostgreSQL), so registrations of one model take numbers
            # one at a time; SQLite's writer lock already does.
            row = connection.execute(
                select(ModelRow.id).where(ModelRow.name == name).with_for_update()
            ).first()
            if row is not None:
                model_id = row.id
            elif create_model:
                model_id = self._insert_model(
                    connection,
                    {
                        "name": name,
                        "description": "",
                        "required_approvals": self.options.default_required_approvals,
                        "tags": {},
                        "created_by": actor,
                    },
                )
            else:
                raise NotFoundError(f"model {name!r} is not registered")
            latest = connection.execute(
                select(func.max(VersionRow.version)).where(VersionRow.model_id == model_id)
            ).scalar()
            number = version if version is not None else (latest or 0) + 1
            exists = connection.execute(
                select(VersionRow.id).where(
                    VersionRow.model_id == model_id, VersionRow.version == number
                )
            ).first()
            if exists is not None:
                raise ConflictError(f"version: {name!r} version {number} exists")
            parent = values["parent_version"]
            if (
                parent is not None
                and not connection.execute(
                    select(VersionRow.id).where(
                        VersionRow.model_id == model_id, VersionRow.version == parent
                    )
                ).first()
            ):
                raise InvalidInputError("parent_version", f"{name!r} has no version {parent}")
            now = self._now()
            connection.execute(
                insert(VersionRow).values(
                    model_id=model_id,
                    version=number,
                    stage=Stage.NONE.value,
                    created_at=now,
                    stage_changed_at=now,
                    **values,
                )
            )
            details = {
                "framework": values["framework"],
                "artifact_files": values["artifact_files"],
                "manifest_digest": values["manifest_digest"],
                "signed_by": values["signed_by"],
                "dataset_snapshot": values["dataset_snapshot"],
                "code_version": values["code_version"],
                "parent_version": parent,
            }
            self._event(connection, model_id, name, number, "model.register", actor, details)
            return self._version_record(connection, name, number)

    def _versions(self, connection: Connection, name: str) -> list[VersionRecord]:
        model = self._model_row(connection, name)
        numbers = connection.execute(
            select(VersionRow.version)
            .where(VersionRow.model_id == model.id)
            .order_by(VersionRow.version.desc())
        ).scalars()
        return [self._version_record(connection, name, n) for n in list(numbers)]

    def _version_record(self, connection: Connection, name: str, version: int) -> VersionRecord:
        model, row = self._version_row(connection, name, version)
        aliases = tuple(a for a, v in self._aliases(connection, model.id).items() if v == version)
        return VersionRecord(
            name=name,
            version=row.version,
            stage=Stage(row.stage),
            framework=row.framework,
            artifact=ArtifactInfo(
                kind=row.artifact_kind,
                files=dict(row.artifact_files),
                total_bytes=row.artifact_bytes,
                uri=row.artifact_uri,
                manifest_digest=row.manifest_digest,
                signed_by=row.signed_by,
            ),
            signature=None if row.signature is None else dict(row.signature),
            parameters=dict(row.parameters),
            metrics=dict(row.metrics),
            tags=dict(row.tags),
            dataset_snapshot=row.dataset_snapshot,
            code_version=row.code_version,
            parent_version=row.parent_version,
            description=row.description,
            author=row.author,
            created_at=row.created_at,
            stage_changed_at=row.stage_changed_at,
            aliases=aliases,
        )

    def _by_alias(self, connection: Connection, name: str, alias: str) -> VersionRecord:
        model = self._model_row(connection, name)
        version = self._aliases(connection, model.id).get(alias)
        if version is None:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        return self._version_record(connection, name, version)

    # ---------------------------------------------------------------- aliases

    def _set_alias(self, name: str, alias: str, version: int, actor: str) -> AliasRecord:
        with self.database.begin() as connection:
            model, row = self._version_row(connection, name, version)
            return self._point(connection, model.id, name, alias, version, row.stage, actor)

    def _point(
        self,
        connection: Connection,
        model_id: int,
        name: str,
        alias: str,
        version: int,
        stage: str,
        actor: str,
    ) -> AliasRecord:
        if alias in self.options.protected_aliases and stage != Stage.PRODUCTION:
            raise ConflictError(
                f"alias: {alias!r} is protected and points only at a version in production; "
                f"version {version} is in {stage}"
            )
        previous = self._aliases(connection, model_id).get(alias)
        now = self._now()
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
        self._event(connection, model_id, name, version, "model.alias", actor, details)
        return AliasRecord(name, alias, version, now, actor)

    def _delete_alias(self, name: str, alias: str, actor: str) -> AliasRecord:
        with self.database.begin() as connection:
            model = self._model_row(connection, name)
            row = connection.execute(
                select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.alias == alias)
            ).first()
            if row is None:
                raise NotFoundError(f"model {name!r} has no alias {alias!r}")
            connection.execute(delete(AliasRow).where(AliasRow.id == row.id))
            details = {"alias": alias, "from": row.version, "to": None}
            self._event(connection, model.id, name, row.version, "model.alias", actor, details)
            return AliasRecord(name, alias, row.version, row.updated_at, row.updated_by)

    # -------------------------------------------------------------- approvals

    def _decide(
        self, name: str, version: int, decision: str, actor: str, comment: str
    ) -> ApprovalRecord:
        with self.database.begin() as connection:
            model, row = self._version_row(connection, name, version)
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
            now = self._now()
            expires = (
                now + timedelta(seconds=self.options.approval_ttl_s)
                if decision == "approve"
                else None
            )
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
            self._event(connection, model.id, name, version, f"model.{decision}", actor, details)
            return ApprovalRecord(
                approval_id, name, version, decision, actor, comment, now, expires
            )

    def _approval_status(self, connection: Connection, name: str, version: int) -> ApprovalStatus:
        model, row = self._version_row(connection, name, version)
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
        latest: dict[str, ApprovalRecord] = {}
        for d in decisions:
            if d.approver != row.author:  # never counts, whatever got it into the table
                latest[d.approver] = d
        now = self._now()
        approved, expired, rejected = [], [], []
        for approver, d in sorted(latest.items()):
            if d.decision == "reject":
                rejected.append(approver)
            elif d.expires_at is not None and d.expires_at <= now:
                expired.append(approver)
            else:
                approved.append(approver)
        return ApprovalStatus(
            name=name,
            version=version,
            required=model.required_approvals,
            approved_by=tuple(approved),
            expired=tuple(expired),
            rejected_by=tuple(rejected),
            decisions=decisions,
        )

    # ----------------------------------------------------------------- stages

    def _transition(
        self,
        name: str,
        version: int,
        target: Stage,
        actor: str,
        comment: str,
        alias: str | None,
        archive_previous: bool,
    ) -> VersionRecord:
        with self.database.begin() as connection:
            model, row = self._version_row(connection, name, version)
            current = Stage(row.stage)
            why = check_transition(current, target)
            if why is not None:
                raise ConflictError(f"stage: {why}")
            if alias is not None and target is not Stage.PRODUCTION:
                raise InvalidInputError("alias", "an alias is moved with a promotion to production")
            aliases = self._aliases(connection, model.id)
            if current is Stage.PRODUCTION:
                self._check_unprotected(name, version, aliases)
            details: dict[str, Any] = {
                "from": current.value,
                "to": target.value,
                "comment": comment,
            }
            if target is Stage.PRODUCTION and self.options.require_signed and not row.signed_by:
                raise ConflictError(
                    f"signature: {name!r} version {version} was registered unsigned, and only "
                    "signed versions enter production (registry.require_signed)"
                )
            if target is Stage.PRODUCTION:
                status = self._approval_status(connection, name, version)
                if not status.satisfied:
                    raise ConflictError(_unapproved(status))
                details["approved_by"] = list(status.approved_by)
            self._set_stage(connection, model.id, version, target)
            self._event(connection, model.id, name, version, "model.stage", actor, details)
            if alias is not None:
                self._point(connection, model.id, name, alias, version, target.value, actor)
            if target is Stage.PRODUCTION and archive_previous:
                self._archive_others(connection, model.id, name, version, actor)
            return self._version_record(connection, name, version)

    def _check_unprotected(self, name: str, version: int, aliases: dict[str, int]) -> None:
        held = sorted(
            a for a, v in aliases.items() if v == version and a in self.options.protected_aliases
        )
        if held:
            raise ConflictError(
                f"stage: the protected alias {held[0]!r} points at {name!r} version {version}; "
                "move it to another production version first"
            )

    def _set_stage(self, connection: Connection, model_id: int, version: int, stage: Stage) -> None:
        connection.execute(
            update(VersionRow)
            .where(VersionRow.model_id == model_id, VersionRow.version == version)
            .values(stage=stage.value, stage_changed_at=self._now())
        )

    def _archive_others(
        self, connection: Connection, model_id: int, name: str, version: int, actor: str
    ) -> None:
        aliases = self._aliases(connection, model_id)
        held = {v for a, v in aliases.items() if a in self.options.protected_aliases}
        others = connection.execute(
            select(VersionRow.version).where(
                VersionRow.model_id == model_id,
                VersionRow.stage == Stage.PRODUCTION.value,
                VersionRow.version != version,
            )
        ).scalars()
        for other in sorted(set(others) - held):
            self._set_stage(connection, model_id, other, Stage.ARCHIVED)
            details = {
                "from": Stage.PRODUCTION.value,
                "to": Stage.ARCHIVED.value,
                "comment": f"replaced by version {version}",
            }
            self._event(connection, model_id, name, other, "model.stage", actor, details)

    # ------------------------------------------------------------ deployments

    def _deploy(
        self, name: str, version: int, target: str, share: float, actor: str
    ) -> DeploymentRecord | None:
        with self.database.begin() as connection:
            model, _ = self._version_row(connection, name, version)
            now = self._now()
            open_rows = connection.execute(
                select(DeploymentRow.id).where(
                    DeploymentRow.model_id == model.id,
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
            self._event(connection, model.id, name, version, "model.deploy", actor, details)
            wanted = new_id if new_id is not None else (max(ended) if ended else None)
            if wanted is None:
                return None
            row = connection.execute(select(DeploymentRow).where(DeploymentRow.id == wanted)).one()
            return _deployment(name, row)

    def _deployments(
        self, connection: Connection, name: str, target: str | None, open_only: bool
    ) -> list[DeploymentRecord]:
        model = self._model_row(connection, name)
        query = select(DeploymentRow).where(DeploymentRow.model_id == model.id)
        if target is not None:
            query = query.where(DeploymentRow.target == target)
        if open_only:
            query = query.where(DeploymentRow.ended_at.is_(None))
        rows = connection.execute(query.order_by(DeploymentRow.id.desc()))
        return [_deployment(name, row) for row in rows]

    # ---------------------------------------------------------- history, lineage

    def _history(self, connection: Connection, name: str, limit: int) -> list[EventRecord]:
        model = self._model_row(connection, name)
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

    def _lineage(self, connection: Connection, name: str, version: int) -> list[LineageNode]:
        chain: list[LineageNode] = []
        seen: set[int] = set()
        current: int | None = version
        while current is not None and current not in seen:
            seen.add(current)
            record = self._version_record(connection, name, current)
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


def _unapproved(status: ApprovalStatus) -> str:
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


def check_framework(framework: str) -> None:
    """Refuse a framework name that no version may have (before its artifact is stored)."""
    if not isinstance(framework, str) or not _FRAMEWORK.fullmatch(framework):
        raise InvalidInputError(
            "framework", f"a lower-case name (sklearn, onnx, ...), got {framework!r}"
        )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError("name", f"must match {MODEL_NAME_PATTERN}, got {name!r}")


def _check_alias(alias: str) -> None:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidInputError(
            "alias", f"a lower-case word (champion, challenger), not a number; got {alias!r}"
        )


def _check_required(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError("required_approvals", f"a whole number, got {value!r}")
    if not 0 <= value <= MAX_REQUIRED_APPROVALS:
        raise InvalidInputError("required_approvals", f"0 to {MAX_REQUIRED_APPROVALS}, got {value}")
    return value


def _text(field: str, value: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(field, f"text, got {type(value).__name__}")
    if len(value) > _MAX_TEXT:
        raise InvalidInputError(field, f"at most {_MAX_TEXT} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidInputError(field, "contains a NUL character")
    return value


def _optional_text(field: str, value: str | None) -> str | None:
    return None if value is None else _text(field, value)


def _object(field: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInputError(field, "a JSON object with text keys")
    _check_json(field, value, 0)
    return dict(value)


def _check_json(field: str, value: Any, depth: int) -> None:
    if depth > 20:
        raise InvalidInputError(field, "nested more than 20 levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(field, f"{value} is not a JSON number")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInputError(field, "contains a NUL character")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str) or "\x00" in k:
                raise InvalidInputError(field, f"key {k!r} is not text")
            _check_json(field, v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_json(field, v, depth + 1)
    elif not isinstance(value, str | int | float | bool) and value is not None:
        raise InvalidInputError(field, f"{type(value).__name__} is not JSON")


def _metrics(value: Mapping[str, Any] | None) -> dict[str, float]:
    metrics = _object("metrics", value)
    for key, number in metrics.items():
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise InvalidInputError(f"metrics.{key}", f"a number, got {number!r}")
    return {k: float(v) for k, v in metrics.items()}
