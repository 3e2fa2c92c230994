"""Registry fixtures: every test runs on SQLite and PostgreSQL (`migrated`, tests/conftest.py)."""

from __future__ import annotations

import pytest

from seawall.clock import FakeClock
from seawall.registry import ArtifactInfo, Registry
from seawall.store import Database

#: A one-file artifact (its digest need not exist: these registries have no blob store).
ARTIFACT = ArtifactInfo(kind="file", files={"model.joblib": "a" * 64}, total_bytes=10, uri="mem")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(migrated: Database, clock: FakeClock) -> Registry:
    return Registry(migrated, clock=clock)
