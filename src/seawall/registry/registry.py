"""`Registry`: registered models, versions, aliases, stages, approvals, deployments, lineage.

A facade over the package's modules: `fields` checks input before anything is written,
`registration` numbers versions, `approvals` holds the rules of stages, approvals and protected
aliases, `history` records events and deployments and reads lineage, `lookup` reads the rest.
Every change is one transaction that also appends its audit record (`AuditLog.append_in`) and a
row of the model's history (`model_events`): the change, the record and the history entry are
committed together or not at all. Reads run on a read-only connection. The rules hold whoever
calls (admin API, CLI, rollout controller), so what a gateway serves by `models:/name@champion`
has always been approved.

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
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from seawall.clock import Clock, SystemClock
from seawall.errors import ConflictError, InvalidInputError
from seawall.registry import lookup
from seawall.registry.approvals import Approvals
from seawall.registry.fields import (
    ALIAS_PATTERN,
    MAX_REQUIRED_APPROVALS,
    check_alias,
    check_name,
    check_object,
    check_optional_text,
    check_required,
    check_text,
    new_version_columns,
    parse_model_uri,
)
from seawall.registry.history import History
from seawall.registry.history import deployments as read_deployments
from seawall.registry.history import events as read_events
from seawall.registry.history import lineage as read_lineage
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
from seawall.registry.registration import create_model, register_version, update_model
from seawall.registry.stages import Stage
from seawall.store.audit import AuditLog
from seawall.store.blobs import BlobStore
from seawall.store.engine import Database

__all__ = [
    "DEFAULT_APPROVAL_TTL_S",
    "DEFAULT_PROTECTED_ALIASES",
    "DEFAULT_REQUIRED_APPROVALS",
    "Registry",
    "RegistryOptions",
]

#: Approvals count for a week unless configured otherwise.
DEFAULT_APPROVAL_TTL_S = 7 * 24 * 3600.0
#: Aliases that may only point at a version in production.
DEFAULT_PROTECTED_ALIASES = frozenset({"champion"})
#: Approvals a new model's versions need before production, unless given when it is created.
DEFAULT_REQUIRED_APPROVALS = 1

_VERSION_ATTEMPTS = 5
T = TypeVar("T")


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
            if not re.fullmatch(ALIAS_PATTERN, alias):
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
        self._history = History(self._audit, self._clock)
        self._approvals = Approvals(
            self._history,
            approval_ttl_s=self.options.approval_ttl_s,
            protected_aliases=self.options.protected_aliases,
            require_signed=self.options.require_signed,
        )

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
        check_name(name)
        required = (
            self.options.default_required_approvals
            if required_approvals is None
            else check_required(required_approvals)
        )
        values = {
            "name": name,
            "description": check_text("description", description),
            "required_approvals": required,
            "tags": check_object("tags", tags),
            "created_by": actor,
        }
        try:
            return await self.database.run(
                self._write, lambda c: create_model(c, self._history, values)
            )
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
            changes["description"] = check_text("description", description)
        if required_approvals is not None:
            changes["required_approvals"] = check_required(required_approvals)
        if not changes:
            raise InvalidInputError("body", "nothing to change (description, required_approvals)")
        return await self.database.run(
            self._write, lambda c: update_model(c, self._history, name, changes, actor)
        )

    async def list_models(self) -> list[ModelRecord]:
        """Every registered model, by name."""
        return await self.database.run(self._read, lookup.models)

    async def get_model(self, name: str) -> ModelRecord:
        """One model, with its aliases and latest version."""
        return await self.database.run(self._read, lambda c: lookup.model_record(c, name))

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

        `version`: the number to take (a signed manifest names its own); default the next one.
        The author is `actor` (four eyes). The artifact's blobs must be in `blobs`, if set.
        """
        values = new_version_columns(
            name,
            version,
            artifact,
            self.blobs,
            framework=framework,
            signature=signature,
            parameters=parameters,
            metrics=metrics,
            tags=tags,
            dataset_snapshot=dataset_snapshot,
            code_version=code_version,
            parent_version=parent_version,
            description=description,
            author=actor,
        )
        return await self._register(name, version, values, create_model)

    async def list_versions(self, name: str) -> list[VersionRecord]:
        """Every version of `name`, newest first."""
        return await self.database.run(self._read, lambda c: lookup.versions(c, name))

    async def get_version(self, name: str, version: int) -> VersionRecord:
        """One version."""
        return await self.database.run(
            self._read, lambda c: lookup.version_record(c, name, version)
        )

    async def resolve(self, name: str, ref: str | int) -> VersionRecord:
        """The version `ref` names: a number, `@alias` or `alias`; or a `models:/` URI's target."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return await self.get_version(name, int(ref))
        alias = ref.removeprefix("@")
        check_alias(alias)
        return await self.database.run(self._read, lambda c: lookup.by_alias(c, name, alias))

    async def resolve_uri(self, uri: str) -> VersionRecord:
        """The version a `models:/name/3` or `models:/name@alias` URI names now."""
        name, version, alias = parse_model_uri(uri)
        return await self.resolve(name, version if version is not None else f"@{alias}")

    # ---------------------------------------------------------------- aliases

    async def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> AliasRecord:
        """Point `alias` at `version` (creating it); a protected alias needs production."""
        check_alias(alias)
        return await self.database.run(
            self._write, lambda c: self._approvals.set_alias(c, name, alias, version, actor)
        )

    async def delete_alias(self, name: str, alias: str, *, actor: str) -> AliasRecord:
        """Remove `alias`; the record of where it pointed."""
        check_alias(alias)
        return await self.database.run(
            self._write, lambda c: self._approvals.delete_alias(c, name, alias, actor)
        )

    # -------------------------------------------------------------- approvals

    async def approve(
        self, name: str, version: int, *, actor: str, comment: str = ""
    ) -> ApprovalRecord:
        """Approve `version` for production (not by its author); expires after the TTL."""
        return await self._decide(name, version, "approve", actor, comment)

    async def reject(self, name: str, version: int, *, actor: str, comment: str) -> ApprovalRecord:
        """Reject `version`: it cannot enter production while this is the actor's last word."""
        if not comment or not comment.strip():
            raise InvalidInputError("comment", "a rejection says why")
        return await self._decide(name, version, "reject", actor, comment)

    async def approval_status(self, name: str, version: int) -> ApprovalStatus:
        """Who approved or rejected `version`, and whether it may enter production now."""
        return await self.database.run(
            self._read, lambda c: self._approvals.status(c, name, version)
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
            check_alias(alias)
        comment = check_text("comment", comment)
        return await self.database.run(
            self._write,
            lambda c: self._approvals.transition(
                c, name, version, target, actor, comment, alias, archive_previous
            ),
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
        check_optional_text("target", target)
        if not target:
            raise InvalidInputError("target", "where the version serves (a gateway, a variant)")
        share = float(traffic_share)
        return await self.database.run(
            self._write, lambda c: self._history.deploy(c, name, version, target, share, actor)
        )

    async def deployments(
        self, name: str, *, target: str | None = None, open_only: bool = False
    ) -> list[DeploymentRecord]:
        """Deployments of `name` (at `target`), newest first."""
        return await self.database.run(
            self._read, lambda c: read_deployments(c, name, target, open_only)
        )

    # ---------------------------------------------------------- history, lineage

    async def history(self, name: str, *, limit: int = 1000) -> list[EventRecord]:
        """What happened to `name` and its versions, oldest first (the last `limit` events)."""
        if not 1 <= limit <= 100_000:
            raise InvalidInputError("limit", f"1 to 100000, got {limit}")
        return await self.database.run(self._read, lambda c: read_events(c, name, limit))

    async def lineage(self, name: str, version: int) -> list[LineageNode]:
        """`version`, then the version it came from, and so on (parent links, cycle-safe)."""
        return await self.database.run(self._read, lambda c: read_lineage(c, name, version))

    # ============================================================ internals

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.database.begin(read_only=True) as connection:
            return fn(connection)

    def _write(self, fn: Callable[[Connection], T]) -> T:
        with self.database.begin() as connection:
            return fn(connection)

    async def _register(
        self, name: str, version: int | None, values: dict[str, Any], create_model: bool
    ) -> VersionRecord:
        """Register in a transaction of its own, again if a concurrent writer got in first."""
        required = self.options.default_required_approvals
        for attempt in range(_VERSION_ATTEMPTS):
            try:
                return await self.database.run(
                    self._write,
                    lambda c: register_version(
                        c,
                        self._history,
                        name,
                        version,
                        values,
                        create_model=create_model,
                        required_approvals=required,
                    ),
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

    async def _decide(
        self, name: str, version: int, decision: str, actor: str, comment: str
    ) -> ApprovalRecord:
        comment = check_text("comment", comment)
        return await self.database.run(
            self._write,
            lambda c: self._approvals.decide(c, name, version, decision, actor, comment),
        )
