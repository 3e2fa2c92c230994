"""Backup cost: `seawall backup create | verify | restore` against a bare copy of the same state.

The state is a database (an SQLite file, or a new PostgreSQL database) holding `--rows`
hash-chained audit records, and a store of `--blobs` blobs of `--blob-kib` KiB of random bytes.
The reference, measured in the same run on the same state, is what a script with no checks
does: the database's own dump (SQLite's backup API, or `pg_dump -Fc`) and `shutil.copytree` of
the store; to restore, `shutil.copytree` back and the backup API (or `pg_restore`) into an
empty database. seawall also hashes and fsyncs every file, writes the manifest, re-reads the
whole backup and the dump before restoring, re-hashes each blob on the way in, and counts every
table's rows afterwards. `verify` alone has no reference: it is reported per MiB.

Usage: ``.venv/bin/python benchmarks/backup.py [--dialect sqlite|postgresql|both] [--rows 100000]
[--blobs 1000] [--blob-kib 64] [--repeats 3]``; writes ``benchmarks/results/backup.md``. About
four minutes for both. PostgreSQL needs ``--postgres URL`` (default: the test server) and the
right to create databases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from seawall.data.backup import create_backup, restore_backup, verify_backup
from seawall.data.dump import libpq_target
from seawall.store import AuditLog, BlobStore, Database

HERE = Path(__file__).resolve().parent
POSTGRES = os.environ.get("SEAWALL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MIB = 1 << 20


class Places:
    """Fresh databases of one kind: SQLite files in `directory`, or new PostgreSQL databases."""

    def __init__(self, dialect: str, directory: Path, server: str, stack: ExitStack) -> None:
        self.dialect, self.directory, self.server, self.stack = dialect, directory, server, stack

    def new(self) -> str:
        name = f"bench_backup_{uuid.uuid4().hex[:10]}"
        if self.dialect == "sqlite":
            return f"sqlite:///{self.directory / name}.db"
        self.stack.enter_context(_postgres_database(self.server, name))
        return make_url(self.server).set(database=name).render_as_string(hide_password=False)


@contextmanager
def _postgres_database(server: str, name: str) -> Iterator[None]:
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            drop = sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            connection.execute(drop)


def fill(database: Database, store: BlobStore, rows: int, blobs: int, blob_kib: int) -> None:
    """`rows` audit records (5,000 a transaction) and `blobs` random blobs."""
    audit = AuditLog(database)
    for start in range(0, rows, 5000):
        with database.begin() as connection:
            for i in range(start, min(rows, start + 5000)):
                details = {"version": i, "note": "promoted after review " * 4}
                audit.append_in(connection, "cli:bench", "model.promote", f"iris/{i}", details)
    for _ in range(blobs):
        store.put(os.urandom(blob_kib * 1024))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_create(database: Database, store: Path, out: Path) -> None:
    """The reference backup: the database's own dump and a plain copy of the store."""
    out.mkdir()
    if database.dialect == "sqlite":
        source = sqlite3.connect(make_url(database.url).database or "")
        copy = sqlite3.connect(out / "db.sqlite3")
        source.backup(copy)
        copy.close()
        source.close()
    else:
        conninfo, env = libpq_target(database.engine.url)
        dump = ["pg_dump", "-Fc", f"--file={out / 'db.pgdump'}", f"--dbname={conninfo}"]
        subprocess.run(dump, env=env, check=True)
    shutil.copytree(store, out / "store")


def bare_restore(backup: Path, url: str, store: Path) -> None:
    """The reference restore: the store copied back, the dump loaded into an empty database."""
    shutil.copytree(backup / "store", store)
    if url.startswith("sqlite"):
        source = sqlite3.connect(backup / "db.sqlite3")
        target = sqlite3.connect(make_url(url).database or "")
        source.backup(target)
        target.close()
        source.close()
    else:
        conninfo, env = libpq_target(make_url(url))
        load = ["pg_restore", "--no-owner", f"--dbname={conninfo}", str(backup / "db.pgdump")]
        subprocess.run(load, env=env, check=True)


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(args: argparse.Namespace, directory: Path, places: Places) -> dict[str, list[float]]:
    """Seconds of each operation, seawall's and the reference's, `args.repeats` times each."""
    source, store = Database(places.new()), BlobStore(directory / "store")
    times: dict[str, list[float]] = {k: [] for k in ("bare", "create", "verify", "restore", "back")}
    try:
        source.upgrade()
        fill(source, store, args.rows, args.blobs, args.blob_kib)
        for number in range(args.repeats):
            for name, seconds in one_run(source, store, directory, places, number).items():
                times[name].append(seconds)
        times["size"] = [size(directory / "backup-0"), size(directory / "bare-0")]
    finally:
        source.close()
    return times


def one_run(
    source: Database, store: BlobStore, directory: Path, places: Places, number: int
) -> dict[str, float]:
    ref, dest = directory / f"bare-{number}", directory / f"backup-{number}"
    times = {
        "bare": timed(lambda: bare_create(source, Path(store.root), ref)),
        "create": timed(lambda: asyncio.run(create_backup(source, store, dest, actor="cli:b"))),
        "verify": timed(lambda: asyncio.run(verify_backup(dest))),
    }
    bare_url, url = places.new(), places.new()
    times["back"] = timed(lambda: bare_restore(ref, bare_url, directory / f"bare-s-{number}"))
    target, restored = Database(url), BlobStore(directory / f"restored-{number}")
    try:
        run = restore_backup(dest, target, restored, actor="cli:bench")
        times["restore"] = timed(lambda: asyncio.run(run))
    finally:
        target.close()
    return times


def report(args: argparse.Namespace, dialect: str, times: dict[str, list[float]]) -> str:
    med = {k: statistics.median(v) for k, v in times.items() if k != "size"}
    backup_bytes, bare_bytes = times["size"]
    mib = backup_bytes / MIB
    return "\n".join(
        [
            f"# Backup cost ({dialect})",
            "",
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
            f"{platform.machine()}; median of {args.repeats} runs; {args.rows:,} audit records, "
            f"{args.blobs:,} blobs of {args.blob_kib} KiB.",
            "",
            f"Backup: {mib:.1f} MiB ({backup_bytes:,} bytes); the bare copy {bare_bytes:,} bytes.",
            "",
            "| operation | seawall s | MiB/s | bare copy s | ratio |",
            "|---|---:|---:|---:|---:|",
            f"| create | {med['create']:.2f} | {mib / med['create']:.0f} | {med['bare']:.2f} | "
            f"{med['create'] / med['bare']:.2f} |",
            f"| verify | {med['verify']:.2f} | {mib / med['verify']:.0f} | - | - |",
            f"| restore | {med['restore']:.2f} | {mib / med['restore']:.0f} | {med['back']:.2f} | "
            f"{med['restore'] / med['back']:.2f} |",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--blobs", type=int, default=1000)
    parser.add_argument("--blob-kib", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    dialects = ["sqlite", "postgresql"] if args.dialect == "both" else [args.dialect]
    sections = []
    for dialect in dialects:
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            places = Places(dialect, Path(tmp), args.postgres, stack)
            sections.append(report(args, dialect, measure(args, Path(tmp), places)))
    text = "\n".join(sections)
    out = args.out or HERE / "results" / "backup.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
