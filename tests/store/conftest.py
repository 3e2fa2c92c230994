"""Store fixtures (`database_url`, `database` and `migrated` are in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

Until = Callable[[Callable[[], bool]], Awaitable[None]]


@pytest.fixture
def until() -> Until:
    """Wait (really, up to 10 s) until a condition holds: for work on the database's threads."""

    async def wait(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10.0
        while not condition():
            assert time.monotonic() < deadline, "condition not met within 10 s"
            await asyncio.sleep(0.002)

    return wait
