"""Store fixtures: every database test runs on SQLite (a temporary file) and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from seawall.store import Database

Until = Callable[[Callable[[], bool]], Awaitable[None]]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'seawall.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """An empty, unmigrated database, closed after the test."""
    db = Database(database_url)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def migrated(database: Database) -> Database:
    """The database, migrated to the newest revision."""
    database.upgrade()
    return database


@pytest.fixture
def until() -> Until:
    """Wait (really, up to 10 s) until a condition holds: for work on the database's threads."""

    async def wait(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10.0
        while not condition():
            assert time.monotonic() < deadline, "condition not met within 10 s"
            await asyncio.sleep(0.002)

    return wait
