"""The audit log survives SIGKILL: 200 writers killed at random points on SQLite, 200 on PostgreSQL.

Each writer is a real process appending in a loop and printing each acknowledged seq (flushed)
the moment `append` returns. It is killed with SIGKILL 20 to 150 ms after it starts: inside a
transaction, during a commit, or between a commit and its acknowledgement. After every kill the
database must open, `verify` must pass, and every acknowledged record must be there, holding
what was written, with at most one record committed after the last acknowledgement.

Writers are forked from a zygote that imported everything once (`zygote.py`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.e2e.zygote import Child, Zygote

from seawall.store import AuditLog, AuditRecord, Database

pytestmark = pytest.mark.e2e

#: Writers killed per database.
RUNS = 200
#: How long a writer lives before SIGKILL, in seconds.
LIFETIME_S = (0.020, 0.150)

_PRELUDE = """
    import os
    import psycopg, sqlalchemy.dialects.postgresql.psycopg  # imported once, before any fork
    from seawall.store import AuditLog, Database

    async def child(url: str, run: str) -> None:
        log = AuditLog(Database(url))
        i = 0
        while True:
            record = await log.append("crash-writer", "test.crash", "", {"run": int(run), "i": i})
            # One write(2) of under PIPE_BUF bytes: the test sees a whole line or nothing.
            os.write(1, f"ack {record.seq} {run} {i}\\n".encode())
            i += 1
    """


@dataclass
class Run:
    """What one writer acknowledged before it was killed."""

    number: int
    acked: dict[int, int] = field(default_factory=dict)  # seq -> i
    stray: list[str] = field(default_factory=list)  # lines that are neither acks nor ours
    child: Child = field(default_factory=Child)

    def take(self, line: str) -> None:
        kind, *values = line.split() or [""]
        if kind == "ack" and len(values) == 3 and int(values[1]) == self.number:
            self.acked[int(values[0])] = int(values[2])
        else:
            self.stray.append(line)


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    parent = Zygote(_PRELUDE, timeout_s=30)
    try:
        yield parent
    finally:
        parent.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


async def _verified(url: str) -> list[AuditRecord]:
    """Open the database afresh, check the chain is intact, and read every record."""
    database = Database(url)
    try:
        log = AuditLog(database)
        result = await log.verify()
        assert result.ok, result
        records: list[AuditRecord] = []
        while page := await log.records(after_seq=len(records), limit=10_000):
            records += page
        assert len(records) == result.head_seq
        return records
    finally:
        await database.aclose()


def _written(records: list[AuditRecord], number: int) -> dict[int, int]:
    return {r.seq: r.details["i"] for r in records if r.details["run"] == number}


def _check(run: Run, written: dict[int, int]) -> None:
    """Every acknowledged record is there as written; at most one more, committed unacked."""
    missing = {seq: i for seq, i in run.acked.items() if written.get(seq) != i}
    assert missing == {}, f"run {run.number}: acknowledged but not in the log: {missing}"
    assert sorted(written.values()) == list(range(len(written))), run.number
    assert len(written) - len(run.acked) in (0, 1), (run.number, written, run.acked)


def test_killed_writers_never_lose_an_acknowledged_record(url: str, zygote: Zygote) -> None:
    seed = random.randrange(2**32)
    print(f"kill times drawn with random.Random({seed})")  # shown if the test fails
    rng = random.Random(seed)
    database = Database(url)
    database.upgrade()
    database.close()
    runs = []
    for number in range(RUNS):
        run = Run(number)
        run.child = zygote.run([url, str(number)], run.take, rng.uniform(*LIFETIME_S))
        runs.append(run)
        assert run.stray == [], f"seed {seed}, run {number}: writer said {run.stray}"
        assert run.child.killed, f"seed {seed}, run {number}: writer failed ({run.child.status})"
        _check(run, _written(asyncio.run(_verified(url)), number))
    # A killed client's COMMIT may still be in flight in PostgreSQL when the next writer
    # starts, so a run's unacknowledged record can land later: check every run once more.
    records = asyncio.run(_verified(url))
    for run in runs:
        _check(run, _written(records, run.number))
    acked = sum(len(run.acked) for run in runs)
    assert acked > RUNS  # the writers really wrote between start and kill
    print(f"{url.split(':')[0]}: {RUNS} kills, {acked} acknowledged, {len(records) - acked} not")
