"""AdvisoryLease: on PostgreSQL one process holds it at a time, and a lost session frees it;
on SQLite (one host) it is always held."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from seawall.release.lease import DEFAULT_LEASE_NAME, AdvisoryLease, lease_key
from seawall.store import Database

#: The server `postgres_url` (tests/conftest.py) makes its schemas in.
SERVER = os.environ.get("SEAWALL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
async def leases(postgres_url: str) -> AsyncIterator[tuple[AdvisoryLease, AdvisoryLease]]:
    """Two processes' leases of one name (unique per test: advisory locks span the server)."""
    name = f"test-{uuid.uuid4().hex}"
    databases = [Database(postgres_url), Database(postgres_url)]
    pair = (AdvisoryLease(databases[0], name=name), AdvisoryLease(databases[1], name=name))
    try:
        yield pair
    finally:
        for lease, db in zip(pair, databases, strict=True):
            await lease.aclose()
            db.close()


def holders(key: int) -> list[int]:
    """Backend pids holding the advisory lock `key` (a bigint key: classid high, objid low)."""
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    with psycopg.connect(SERVER, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (high, low),
        ).fetchall()
    return [r[0] for r in rows]


def test_keys_are_stable_64_bit_numbers_per_name() -> None:
    assert lease_key(DEFAULT_LEASE_NAME) == lease_key("seawall.release")
    assert lease_key("a") != lease_key("b")
    assert -(2**63) <= lease_key("a") < 2**63
    with pytest.raises(ValueError, match="name: a lease needs a name"):
        AdvisoryLease(Database("sqlite://"), name="")


async def test_only_one_process_holds_the_lease(
    leases: tuple[AdvisoryLease, AdvisoryLease],
) -> None:
    first, second = leases
    assert await first()
    assert not await second()
    assert await first()  # still held: checking does not take it twice
    assert (first.held, second.held) == (True, False)
    assert len(holders(first.key)) == 1
    await first.release()
    assert holders(first.key) == []
    assert await second()
    assert not await first()
    assert (first.held, second.held) == (False, True)


async def test_a_lost_session_frees_the_lease_for_another_process(
    leases: tuple[AdvisoryLease, AdvisoryLease],
) -> None:
    first, second = leases
    assert await first()
    (pid,) = holders(first.key)
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert await second()  # the lock went with the session
    assert not await first()  # it notices the session is gone and finds the lease taken
    assert not first.held
    await second.release()
    assert await first()  # and takes it again once free


async def test_on_sqlite_the_lease_is_always_held(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        first, second = AdvisoryLease(db), AdvisoryLease(db)
        assert await first()
        assert await second()
        assert first.held
        await first.aclose()
    finally:
        db.close()
