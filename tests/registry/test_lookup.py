"""Look-ups on SQLite and PostgreSQL: models, versions and aliases by name, read as records."""

from __future__ import annotations

import pytest

from seawall.errors import NotFoundError
from seawall.registry import Registry, lookup
from seawall.store import Database

from .conftest import ARTIFACT, AUTHOR, staged


async def test_unknown_models_and_versions_are_not_found(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="model 'nope' is not registered"):
        await registry.get_model("nope")
    await registry.register_version("iris", ARTIFACT, actor=AUTHOR, framework="sklearn")
    with pytest.raises(NotFoundError, match="model 'iris' has no version 7"):
        await registry.get_version("iris", 7)
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        await registry.resolve("iris", "@champion")
    with pytest.raises(NotFoundError, match="not registered"):
        await registry.register_version(
            "other", ARTIFACT, actor=AUTHOR, framework="sklearn", create_model=False
        )


async def test_records_read_back_what_was_registered(
    registry: Registry, migrated: Database
) -> None:
    await registry.create_model("adult", actor=AUTHOR)
    v1 = await staged(registry, "iris", code_version="abc")
    v2 = await staged(registry, "iris")
    await registry.set_alias("iris", "zeta", v1, actor="deployer")
    await registry.set_alias("iris", "alpha", v1, actor="deployer")
    await registry.set_alias("iris", "beta", v2, actor="deployer")
    with migrated.begin(read_only=True) as connection:
        iris = lookup.model_row(connection, "iris")
        adult = lookup.model_row(connection, "adult")
        assert list(lookup.aliases(connection, iris.id).items()) == [
            ("alpha", v1),
            ("beta", v2),
            ("zeta", v1),
        ]
        assert (
            lookup.latest_version(connection, iris.id),
            lookup.latest_version(connection, adult.id),
        ) == (2, None)
        assert [m.name for m in lookup.models(connection)] == ["adult", "iris"]
        model = lookup.model_record(connection, "iris")
        assert (model.latest_version, model.aliases) == (2, {"alpha": 1, "beta": 2, "zeta": 1})
        assert [v.version for v in lookup.versions(connection, "iris")] == [2, 1]
        assert lookup.versions(connection, "adult") == []
        first = lookup.version_record(connection, "iris", v1)
        assert (first.aliases, first.code_version, first.artifact) == (
            ("alpha", "zeta"),
            "abc",
            ARTIFACT,
        )
        assert lookup.by_alias(connection, "iris", "beta").version == v2
        model_row, version_row = lookup.version_row(connection, "iris", v2)
        assert (model_row.id, version_row.version, version_row.stage) == (iris.id, 2, "staging")
        _, zeta = lookup.alias_row(connection, "iris", "zeta")
        assert (zeta.version, zeta.updated_by) == (v1, "deployer")


async def test_lookups_name_what_is_missing(registry: Registry, migrated: Database) -> None:
    with migrated.begin(read_only=True) as connection:
        assert lookup.models(connection) == []
        with pytest.raises(NotFoundError, match=r"^model 'iris' is not registered$"):
            lookup.model_record(connection, "iris")
        with pytest.raises(NotFoundError, match=r"^model 'iris' is not registered$"):
            lookup.alias_row(connection, "iris", "alpha")
    await staged(registry, "iris")
    await registry.set_alias("iris", "alpha", 1, actor="deployer")
    await registry.create_model("adult", actor=AUTHOR)
    with migrated.begin(read_only=True) as connection:
        with pytest.raises(NotFoundError, match=r"^model 'iris' has no version 3$"):
            lookup.version_row(connection, "iris", 3)
        with pytest.raises(NotFoundError, match=r"^model 'iris' has no alias 'gamma'$"):
            lookup.alias_row(connection, "iris", "gamma")
        with pytest.raises(NotFoundError, match=r"^model 'adult' has no alias 'alpha'$"):
            lookup.by_alias(connection, "adult", "alpha")
