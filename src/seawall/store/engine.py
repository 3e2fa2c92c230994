"""`Database`: one SQLAlchemy engine (SQLite by default, PostgreSQL at scale) and a thread pool.

The engine is SQLAlchemy's synchronous one. Blocking database work runs on the `Database`'s own
threads through `await database.run(fn, ...)`, so the event loop never waits on a disk or a
socket and a slow database cannot take the threads other work runs on (a bulkhead: there are as
many threads as pooled connections, so a thread never waits for a connection either).
`docs/decisions/0006-database-layer.md` says why this and not an async engine.

SQLite is tuned on every new connection: WAL journal (readers never block the writer),
`synchronous=NORMAL` (by default; durable against a process crash, may lose the last commits on
power loss), foreign keys on, and a busy timeout. Write transactions start with
`BEGIN IMMEDIATE`, so two writers queue on the lock instead of one failing half-way through.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from seawall.errors import ConfigError
from seawall.store import migrate
from seawall.store.errors import StoreError, StoreUnavailableError
from seawall.store.url import database_url_from_env, is_memory, normalize_url, redact

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_POOL_SIZE",
    "Database",
]

P = ParamSpec("P")
T = TypeVar("T")

#: Connections kept open, and threads running database work (one per connection).
DEFAULT_POOL_SIZE = 4
#: Seconds an SQLite statement waits for another writer's lock before failing.
DEFAULT_BUSY_TIMEOUT_S = 5.0
#: Seconds to wait for a PostgreSQL server to accept a connection.
DEFAULT_CONNECT_TIMEOUT_S = 5.0

SqliteSynchronous = Literal["NORMAL", "FULL"]

# Execution option read by the `begin` listener: how an SQLite transaction starts.
_SQLITE_BEGIN = "seawall_sqlite_begin"
# Seconds between two attempts to switch a new SQLite file to WAL while another holds it.
_WAL_RETRY_S = 0.01


class Database:
    """A database reached through a URL; see the module docstring for what is tuned and why."""

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        sqlite_synchronous: SqliteSynchronous = "NORMAL",
        cwd: Path | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size: at least 1 connection, got {pool_size}")
        if not busy_timeout_s >= 0:
            raise ValueError(f"busy_timeout_s: must be >= 0, got {busy_timeout_s}")
        if not connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s: must be > 0, got {connect_timeout_s}")
        self._url = normalize_url(url, cwd=cwd)
        self.dialect = self._url.get_backend_name()
        if self.dialect == "sqlite":
            _check_sqlite_directory(self._url)
            self.engine = _sqlite_engine(self._url, pool_size, busy_timeout_s, sqlite_synchronous)
        else:
            self.engine = _postgres_engine(self._url, pool_size, connect_timeout_s)
        # An in-memory database is one shared connection: all its work must be serialized.
        workers = 1 if is_memory(self._url) else pool_size
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="seawall-db")
        self._writer = self.engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        self._closed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Database:
        """The database named by `SEAWALL_DATABASE_URL` or `SEAWALL_DATABASE_URL_FILE`."""
        return cls(database_url_from_env(os.environ if environ is None else environ), **options)

    @property
    def url(self) -> str:
        """The canonical URL with the password hidden (safe to log)."""
        return redact(self._url)

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    @contextmanager
    def begin(self, *, read_only: bool = False) -> Iterator[Connection]:
        """A Core connection in a transaction: committed on success, rolled back on error.

        Blocking: call it inside `run`. `read_only=True` lets SQLite readers start without taking
        the write lock; a transaction that writes must leave it False.
        """
        with (self.engine if read_only else self._writer).begin() as connection:
            yield connection

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """An ORM session in a transaction: committed on success, rolled back on error."""
        bind = self.engine if read_only else self._writer
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking database work on the database's threads and await its result.

        Connection failures come out as `StoreUnavailableError`. A cancelled caller stops
        waiting, but work already started runs to its end (a thread cannot be interrupted).
        """
        if self._closed:
            raise StoreError(f"database {self.url}: closed")
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        with self.translated_errors():
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    @contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Turn SQLAlchemy's connection-level errors into `StoreUnavailableError`."""
        try:
            yield
        except (OperationalError, InterfaceError, PoolTimeoutError) as exc:
            raise StoreUnavailableError(f"database {self.url}: {_first_line(exc)}") from exc

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to `revision` (blocking; idempotent, safe with concurrent callers)."""
        with self.translated_errors():
            migrate.upgrade(self, revision)

    def revision(self) -> str | None:
        """The schema revision the database is at (None: never migrated). Blocking."""
        with self.translated_errors():
            return migrate.current_revision(self)

    def close(self) -> None:
        """Wait for running work, then close every pooled connection. Blocking; idempotent."""
        self._closed = True
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    async def aclose(self) -> None:
        """`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_sqlite_directory(url: URL) -> None:
    if is_memory(url) or url.query.get("uri") == "true":
        return
    directory = Path(url.database or "").parent
    if not directory.is_dir():
        raise ConfigError(f"database URL {redact(url)}: the directory {directory} does not exist")


def _sqlite_engine(
    url: URL, pool_size: int, busy_timeout_s: float, synchronous: SqliteSynchronous
) -> Engine:
    memory = is_memory(url)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
        **({"poolclass": StaticPool} if memory else {"pool_size": pool_size, "max_overflow": 0}),
    )
    busy_ms = round(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def tune(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        # SQLAlchemy, not the sqlite3 module, decides when transactions begin (see `begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        _enable_wal(cursor, busy_timeout_s)
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))

    return engine


def _enable_wal(cursor: DBAPICursor, timeout_s: float) -> None:
    """Put the file in WAL mode (it stays so), waiting up to `timeout_s` for the lock it needs."""
    deadline = time.monotonic() + timeout_s
    while True:
        cursor.execute("PRAGMA journal_mode")
        row = cursor.fetchone()
        if row is not None and row[0] in ("wal", "memory"):
            return
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            # The switch needs an exclusive lock and SQLite answers "locked" at once instead of
            # calling the busy handler, so two processes opening a new file at once collide.
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_S)


def _postgres_engine(url: URL, pool_size: int, connect_timeout_s: float) -> Engine:
    return create_engine(
        url,
        connect_args={"connect_timeout": max(1, round(connect_timeout_s))},
        pool_size=pool_size,
        max_overflow=0,
        # A server restart leaves dead connections in the pool; test each before use.
        pool_pre_ping=True,
    )
