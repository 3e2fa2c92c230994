"""The registry's tables are on the shared metadata, with the constraints the registry relies on."""

from __future__ import annotations

from sqlalchemy import UniqueConstraint

from seawall.registry import tables
from seawall.store import Base

ROWS = (
    tables.ModelRow,
    tables.VersionRow,
    tables.AliasRow,
    tables.ApprovalRow,
    tables.DeploymentRow,
    tables.EventRow,
)


def test_every_table_is_on_the_shared_metadata() -> None:
    for row in ROWS:
        assert Base.metadata.tables[row.__tablename__] is row.__table__


def _uniques(row: type[object]) -> set[tuple[str, ...]]:
    table = Base.metadata.tables[row.__tablename__]  # type: ignore[attr-defined]
    return {
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint)
    }


def test_names_versions_and_aliases_are_unique_where_the_registry_assumes() -> None:
    assert ("name",) in _uniques(tables.ModelRow)
    assert ("model_id", "version") in _uniques(tables.VersionRow)
    assert ("model_id", "alias") in _uniques(tables.AliasRow)
