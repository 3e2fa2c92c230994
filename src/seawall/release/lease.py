"""`AdvisoryLease`: which of the processes sharing a database runs the control loops.

On PostgreSQL the leader is the process holding a session-level advisory lock
(`pg_try_advisory_lock`) on a connection of its own, outside the database's pool, kept open
while it leads: the lock goes when that session ends (a crash, a lost network, `release`), and
another process's next call takes it. Each call checks that the held connection is still alive
(TCP keepalives bound how long a dead network takes to notice), and tries to take the lock when
it is not held. On SQLite the database is a file on one host, so the lease is always held.

Call it as the `leader` of a `RolloutService`: `await lease()` is True while this process leads.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from seawall.store.engine import DEFAULT_CONNECT_TIMEOUT_S, Database

__all__ = ["DEFAULT_LEASE_NAME", "AdvisoryLease", "lease_key"]

#: The lease the rollout controllers run under.
DEFAULT_LEASE_NAME = "seawall.release"

# A dead peer is noticed within about idle + interval x count seconds.
_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
_ALIVE = text("SELECT 1")


def lease_key(name: str) -> int:
    """The advisory lock's 64-bit key for a lease name (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class AdvisoryLease:
    """Leadership among the processes using `database`; see the module docstring."""

    def __init__(self, database: Database, *, name: str = DEFAULT_LEASE_NAME) -> None:
        if not name:
            raise ValueError("name: a lease needs a name")
        self.database = database
        self.name = name
        self.key = lease_key(name)
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._lock = threading.Lock()  # calls run on the database's threads

    @property
    def held(self) -> bool:
        """Whether this process held the lease at the last call (SQLite: always)."""
        return self.database.dialect != "postgresql" or self._connection is not None

    async def __call__(self) -> bool:
        """True if this process holds the lease (taking it if it is free)."""
        if self.database.dialect != "postgresql":
            return True
        return await self.database.run(self._hold)

    async def release(self) -> None:
        """Give the lease up (another process's next call may take it)."""
        if self.database.dialect == "postgresql":
            await self.database.run(self._release)

    async def aclose(self) -> None:
        """Release the lease and close its connection for good."""
        await self.release()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def _hold(self) -> bool:
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.execute(_ALIVE)
                    return True
                except DBAPIError:  # the session ended, and the lock with it
                    self._drop()
            connection = self._connect()
            try:
                acquired = bool(connection.execute(_TRY_LOCK, {"key": self.key}).scalar())
            except BaseException:
                connection.close()
                raise
            if acquired:
                self._connection = connection
            else:
                connection.close()
            return acquired

    def _release(self) -> None:
        with self._lock:
            connection = self._connection
            if connection is None:
                return
            with contextlib.suppress(DBAPIError):  # the session is gone: so is the lock
                connection.execute(_UNLOCK, {"key": self.key})
            self._drop()

    def _connect(self) -> Connection:
        if self._engine is None:
            timeout = max(1, round(DEFAULT_CONNECT_TIMEOUT_S))
            self._engine = create_engine(
                self.database.engine.url,
                poolclass=NullPool,
                connect_args={"connect_timeout": timeout, **_KEEPALIVE},
            )
        return self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(DBAPIError):  # a dead connection has nothing to close
                connection.close()
