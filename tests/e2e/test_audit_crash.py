"""The audit log survives SIGKILL: 200 writers killed at random points on SQLite, 200 on PostgreSQL.

Each writer is a real process appending in a loop and printing each acknowledged seq (flushed)
the moment `append` returns. It is killed with SIGKILL 20 to 150 ms after it starts: inside a
transaction, during a commit, or between a commit and its acknowledgement. After every kill the
database must open, `verify` must pass, and every acknowledged record must be there, holding
what was written, with at most one record committed after the last acknowledgement.

Starting Python with SQLAlchemy takes ~0.5 s on this machine, so writers are forked from a
"zygote" process that imported everything once (a single-threaded process, so fork is safe);
each writer then opens its own database connections, as a fresh process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from seawall.store import AuditLog, AuditRecord, Database

pytestmark = pytest.mark.e2e

#: Writers killed per database.
RUNS = 200
#: How long a writer lives before SIGKILL, in seconds.
LIFETIME_S = (0.020, 0.150)

_ZYGOTE = textwrap.dedent(
    """
    import asyncio, os, sys
    import psycopg, sqlalchemy.dialects.postgresql.psycopg  # imported once, before any fork
    from seawall.store import AuditLog, Database

    async def write(url: str, run: int) -> None:
        log = AuditLog(Database(url))
        i = 0
        while True:
            record = await log.append("crash-writer", "test.crash", "", {"run": run, "i": i})
            # One write(2) of under PIPE_BUF bytes: the test sees a whole line or nothing.
            os.write(1, f"ack {record.seq} {run} {i}\\n".encode())
            i += 1

    for line in sys.stdin:
        url, run = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(write(url, int(run)))
            finally:
                os._exit(1)  # only reached if the writer failed: the test sees the status
        print(f"child {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {status}", flush=True)
    """
)


@dataclass
class Run:
    """What one writer acknowledged before it was killed."""

    number: int
    acked: dict[int, int] = field(default_factory=dict)  # seq -> i
    stray: list[str] = field(default_factory=list)  # lines that are neither acks nor ours
    pid: int = 0
    status: int = -1


class Zygote:
    """The forking parent; `run` starts a writer, kills it after `delay_s` and collects its acks."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._stdin: IO[str] = self.process.stdin
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line.rstrip("\n"))

    def run(self, url: str, number: int, delay_s: float) -> Run:
        run = Run(number)
        self._stdin.write(f"{url} {number}\n")
        self._stdin.flush()
        while not run.pid:
            self._take(self._lines.get(timeout=30), run)
        try:
            time.sleep(delay_s)
        finally:  # never leave a writer running, whatever happens to the test
            os.kill(run.pid, signal.SIGKILL)
        while run.status < 0:
            self._take(self._lines.get(timeout=30), run)
        return run

    @staticmethod
    def _take(line: str, run: Run) -> None:
        kind, *values = line.split()
        if kind == "ack" and len(values) == 3 and int(values[1]) == run.number:
            run.acked[int(values[0])] = int(values[2])
        elif kind == "child" and len(values) == 1:
            run.pid = int(values[0])
        elif kind == "exit" and len(values) == 2 and int(values[0]) == run.pid:
            run.status = int(values[1])
        else:
            run.stray.append(line)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # the zygote died: the test says why
            self._stdin.close()
        try:
            self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    parent = Zygote()
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
        run = zygote.run(url, number, rng.uniform(*LIFETIME_S))
        runs.append(run)
        assert run.stray == [], f"seed {seed}, run {number}: writer said {run.stray}"
        assert os.WIFSIGNALED(run.status), f"seed {seed}, run {number}: writer failed"
        assert os.WTERMSIG(run.status) == signal.SIGKILL
        _check(run, _written(asyncio.run(_verified(url)), number))
    # A killed client's COMMIT may still be in flight in PostgreSQL when the next writer
    # starts, so a run's unacknowledged record can land later: check every run once more.
    records = asyncio.run(_verified(url))
    for run in runs:
        _check(run, _written(records, run.number))
    acked = sum(len(run.acked) for run in runs)
    assert acked > RUNS  # the writers really wrote between start and kill
    print(f"{url.split(':')[0]}: {RUNS} kills, {acked} acknowledged, {len(records) - acked} not")
