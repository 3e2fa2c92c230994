"""Registering models and their versions: a model's row, and a version's number, taken once.

Versions are numbered per model from 1 and never reused; a version's artifact, provenance and
author never change after registration. Functions over a `Connection` in the caller's
transaction, each change recorded in the model's `History`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from seawall.errors import ConflictError, InvalidInputError, NotFoundError
from seawall.registry.history import History
from seawall.registry.lookup import latest_version, model_record, model_row, version_record
from seawall.registry.records import ModelRecord, VersionRecord
from seawall.registry.stages import Stage
from seawall.registry.tables import ModelRow, VersionRow

__all__ = ["create_model", "insert_model", "register_version", "update_model"]

#: What a version's `model.register` event records of its columns.
_REGISTERED = (
    "framework",
    "artifact_files",
    "manifest_digest",
    "signed_by",
    "dataset_snapshot",
    "code_version",
    "parent_version",
)


def create_model(connection: Connection, history: History, values: dict[str, Any]) -> ModelRecord:
    """Add model `values["name"]` (ConflictError if it exists); its record."""
    insert_model(connection, history, values)
    return model_record(connection, values["name"])


def update_model(
    connection: Connection, history: History, name: str, changes: dict[str, Any], actor: str
) -> ModelRecord:
    """Change model `name`'s columns to `changes`; its record."""
    model = model_row(connection, name)
    connection.execute(update(ModelRow).where(ModelRow.id == model.id).values(**changes))
    history.event(connection, model.id, name, None, "model.update", actor, changes)
    return model_record(connection, name)


def insert_model(connection: Connection, history: History, values: dict[str, Any]) -> int:
    """Add model `values["name"]` (ConflictError if it exists); its id."""
    name = values["name"]
    if connection.execute(select(ModelRow.id).where(ModelRow.name == name)).first():
        raise ConflictError(f"name: model {name!r} is registered already")
    # A concurrent insert of the same name (PostgreSQL) raises IntegrityError here.
    model_id: int = connection.execute(
        insert(ModelRow).values(created_at=history.now(), **values).returning(ModelRow.id)
    ).scalar_one()
    details = {k: values[k] for k in ("description", "required_approvals", "tags")}
    history.event(connection, model_id, name, None, "model.create", values["created_by"], details)
    return model_id


def register_version(
    connection: Connection,
    history: History,
    name: str,
    version: int | None,
    values: dict[str, Any],
    *,
    create_model: bool,
    required_approvals: int,
) -> VersionRecord:
    """Add a version of `name` with columns `values`, numbered `version` or the next one.

    A missing model is created first (with `required_approvals`) if `create_model`.
    """
    actor = values["author"]
    model_id = _lock_model(connection, history, name, actor, create_model, required_approvals)
    number = version if version is not None else (latest_version(connection, model_id) or 0) + 1
    if _has_version(connection, model_id, number):
        raise ConflictError(f"version: {name!r} version {number} exists")
    parent = values["parent_version"]
    if parent is not None and not _has_version(connection, model_id, parent):
        raise InvalidInputError("parent_version", f"{name!r} has no version {parent}")
    now = history.now()
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
    details = {k: values[k] for k in _REGISTERED}
    history.event(connection, model_id, name, number, "model.register", actor, details)
    return version_record(connection, name, number)


def _lock_model(
    connection: Connection,
    history: History,
    name: str,
    actor: str,
    create_model: bool,
    required_approvals: int,
) -> int:
    """The id of model `name`, created if missing and `create_model`, its row locked."""
    # Locks the model's row (PostgreSQL), so registrations of one model take numbers
    # one at a time; SQLite's writer lock already does.
    row = connection.execute(
        select(ModelRow.id).where(ModelRow.name == name).with_for_update()
    ).first()
    if row is not None:
        model_id: int = row.id
        return model_id
    if not create_model:
        raise NotFoundError(f"model {name!r} is not registered")
    values = {
        "name": name,
        "description": "",
        "required_approvals": required_approvals,
        "tags": {},
        "created_by": actor,
    }
    return insert_model(connection, history, values)


def _has_version(connection: Connection, model_id: int, version: int) -> bool:
    row = connection.execute(
        select(VersionRow.id).where(VersionRow.model_id == model_id, VersionRow.version == version)
    ).first()
    return row is not None
