"""Models, versions and aliases found by name in the registry's tables, and read as records.

Functions over a `Connection` in the caller's transaction; an unknown model, version or alias is
a `NotFoundError` naming it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, func, select

from seawall.errors import NotFoundError
from seawall.registry.records import ArtifactInfo, ModelRecord, VersionRecord
from seawall.registry.stages import Stage
from seawall.registry.tables import AliasRow, ModelRow, VersionRow

__all__ = [
    "alias_row",
    "aliases",
    "by_alias",
    "latest_version",
    "model_record",
    "model_row",
    "models",
    "version_record",
    "version_row",
    "versions",
]


def model_row(connection: Connection, name: str) -> Any:
    """The row of model `name` (NotFoundError if it is not registered)."""
    query = select(ModelRow).where(ModelRow.name == name)
    return _first(connection, query, f"model {name!r} is not registered")


def version_row(connection: Connection, name: str, version: int) -> tuple[Any, Any]:
    """The rows of model `name` and of its `version` (NotFoundError if either is missing)."""
    model = model_row(connection, name)
    query = select(VersionRow).where(VersionRow.model_id == model.id, VersionRow.version == version)
    return model, _first(connection, query, f"model {name!r} has no version {version}")


def alias_row(connection: Connection, name: str, alias: str) -> tuple[Any, Any]:
    """The rows of model `name` and of its `alias` (NotFoundError if either is missing)."""
    model = model_row(connection, name)
    query = select(AliasRow).where(AliasRow.model_id == model.id, AliasRow.alias == alias)
    return model, _first(connection, query, f"model {name!r} has no alias {alias!r}")


def aliases(connection: Connection, model_id: int) -> dict[str, int]:
    """A model's aliases → the versions they point at, by alias."""
    rows = connection.execute(
        select(AliasRow.alias, AliasRow.version)
        .where(AliasRow.model_id == model_id)
        .order_by(AliasRow.alias)
    )
    return {row.alias: row.version for row in rows}


def latest_version(connection: Connection, model_id: int) -> int | None:
    """A model's highest version number (None before its first)."""
    latest: int | None = connection.execute(
        select(func.max(VersionRow.version)).where(VersionRow.model_id == model_id)
    ).scalar()
    return latest


def model_record(connection: Connection, name: str) -> ModelRecord:
    """Model `name`, with its aliases and latest version."""
    row = model_row(connection, name)
    return ModelRecord(
        name=row.name,
        description=row.description,
        required_approvals=row.required_approvals,
        tags=dict(row.tags),
        created_at=row.created_at,
        created_by=row.created_by,
        aliases=aliases(connection, row.id),
        latest_version=latest_version(connection, row.id),
    )


def versions(connection: Connection, name: str) -> list[VersionRecord]:
    """Every version of `name`, newest first."""
    model = model_row(connection, name)
    numbers = connection.execute(
        select(VersionRow.version)
        .where(VersionRow.model_id == model.id)
        .order_by(VersionRow.version.desc())
    ).scalars()
    return [version_record(connection, name, n) for n in list(numbers)]


def version_record(connection: Connection, name: str, version: int) -> VersionRecord:
    """`version` of `name`, with the aliases that point at it."""
    model, row = version_row(connection, name, version)
    pointing = tuple(a for a, v in aliases(connection, model.id).items() if v == version)
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
        aliases=pointing,
    )


def by_alias(connection: Connection, name: str, alias: str) -> VersionRecord:
    """The version `alias` of `name` points at."""
    _, row = alias_row(connection, name, alias)
    return version_record(connection, name, row.version)


def models(connection: Connection) -> list[ModelRecord]:
    """Every registered model, by name."""
    names = connection.execute(select(ModelRow.name).order_by(ModelRow.name)).scalars()
    return [model_record(connection, n) for n in list(names)]


def _first(connection: Connection, query: Select[Any], missing: str) -> Any:
    row = connection.execute(query).first()
    if row is None:
        raise NotFoundError(missing)
    return row
