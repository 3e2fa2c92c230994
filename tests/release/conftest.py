"""Release fixtures: a FakeClock, an audit log on it (`migrated` is in tests/conftest.py)."""

from __future__ import annotations

import pytest

from seawall.clock import FakeClock
from seawall.store import AuditLog, Database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def audit(migrated: Database, clock: FakeClock) -> AuditLog:
    return AuditLog(migrated, clock=clock)
