"""Registry fixtures: every test runs on SQLite and PostgreSQL (`migrated`, tests/conftest.py)."""

from __future__ import annotations

import pytest

from seawall.clock import FakeClock
from seawall.registry import ArtifactInfo, Registry, Stage
from seawall.store import Database

#: A one-file artifact (its digest need not exist: these registries have no blob store).
ARTIFACT = ArtifactInfo(kind="file", files={"model.joblib": "a" * 64}, total_bytes=10, uri="mem")
#: Who registers versions in these tests; the approvers are others (four eyes).
AUTHOR = "cli:alice"
APPROVER = "bob"
APPROVER2 = "carol"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(migrated: Database, clock: FakeClock) -> Registry:
    return Registry(migrated, clock=clock)


async def staged(registry: Registry, name: str = "iris", **kwargs: object) -> int:
    """A new version of `name`, registered by AUTHOR and moved to staging; its number."""
    record = await registry.register_version(
        name,
        ARTIFACT,
        actor=AUTHOR,
        framework="sklearn",
        **kwargs,  # type: ignore[arg-type]
    )
    await registry.transition(name, record.version, "staging", actor=AUTHOR)
    return record.version


async def in_production(registry: Registry, name: str = "iris") -> int:
    """A new version of `name`, approved by APPROVER and in production; its number."""
    version = await staged(registry, name)
    await registry.approve(name, version, actor=APPROVER, comment="looks good")
    await registry.transition(name, version, Stage.PRODUCTION, actor="deployer")
    return version
