"""ControlPlane: the database opened and migrated once, on first use, shared by keys and audit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from seawall.assemble.control import ControlPlane, RolloutsUnavailableError
from seawall.clock import FakeClock
from seawall.errors import ConfigError
from seawall.store import Database, StoreUnavailableError
from seawall.store import migrate as migrations


class Opener:
    """Opens the database at `url`, counting calls."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls = 0

    def __call__(self) -> Database:
        self.calls += 1
        return Database(self.url)


async def test_nothing_is_opened_until_first_use(tmp_path: Path) -> None:
    opener = Opener(f"sqlite:///{tmp_path / 'control.db'}")
    control = ControlPlane(opener, clock=FakeClock())
    assert opener.calls == 0
    assert repr(control) == "ControlPlane(not opened)"
    await control.aclose()  # closing what was never opened is fine
    assert not (tmp_path / "control.db").exists()


async def test_first_use_opens_and_migrates_once_for_concurrent_callers(
    database_url: str,
) -> None:
    opener = Opener(database_url)
    clock = FakeClock()
    control = ControlPlane(opener, clock=clock)
    try:
        databases = await asyncio.gather(*(control.database() for _ in range(5)))
        assert opener.calls == 1
        assert len({id(d) for d in databases}) == 1
        assert databases[0].revision() == migrations.head()
        keys, audit = await control.keys(), await control.audit()
        assert keys.database is audit.database is databases[0]
        # The key store appends to the same audit log, on the same clock.
        await keys.create("app", ["consumer"], actor="cli:alice")
        (record,) = await audit.records()
        assert (record.actor, record.action, record.target) == ("cli:alice", "key.create", "app")
        assert record.at.timestamp() == clock.time()
        assert repr(control) == f"ControlPlane({databases[0].url})"
    finally:
        await control.aclose()
    assert repr(control) == "ControlPlane(not opened)"


async def test_a_failed_open_is_retried_by_the_next_call(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory"
    opener = Opener(f"sqlite:///{missing / 'control.db'}")
    control = ControlPlane(opener, clock=FakeClock())
    with pytest.raises((ConfigError, StoreUnavailableError)):
        await control.database()
    assert repr(control) == "ControlPlane(not opened)"
    missing.mkdir()
    try:
        database = await control.database()
        assert database.revision() == migrations.head()
        assert opener.calls == 2
    finally:
        await control.aclose()


async def test_rollouts_come_from_the_provider_given_and_none_is_an_error(
    tmp_path: Path,
) -> None:
    control = ControlPlane(Opener(f"sqlite:///{tmp_path / 'c.db'}"), clock=FakeClock())
    with pytest.raises(RolloutsUnavailableError, match="runs no rollout controller"):
        await control.rollouts()
    service = object()
    calls = []

    async def provide() -> Any:
        calls.append(1)
        return service

    control.provide_rollouts(provide)
    assert await control.rollouts() is service
    assert await control.rollouts() is service
    assert calls == [1, 1]  # asked each time: the provider decides what is current
    control.provide_rollouts(None)
    with pytest.raises(RolloutsUnavailableError):
        await control.rollouts()
    assert not (tmp_path / "c.db").exists()  # the database is not opened for it
