"""`ControlPlane`: the gateway's database (`database_url`), with its API keys and audit log.

One per assembly, so the key lookup, the admin API's key and audit routes (and the registry
routes) share one connection pool. The database is opened and migrated on first use: a gateway
that never touches it pays nothing for it (SQLAlchemy and the drivers cost ~30 MB), and one whose
database is down still serves inference, answering the admin calls that need it with 503. With
`auth.database_keys` the gateway starts it at start-up instead (`start`), so a database that
cannot be reached fails the start, not the first call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from seawall.clock import Clock
from seawall.errors import SeawallError

if TYPE_CHECKING:  # imported on first use: SQLAlchemy only where a database is used
    from seawall.data import SnapshotStore
    from seawall.registry import Registry
    from seawall.release.service import RolloutService
    from seawall.security.apikeys import ApiKeyStore
    from seawall.store import AuditLog, Database

__all__ = ["ControlPlane", "RolloutsProvider", "RolloutsUnavailableError"]

#: Gives the gateway's rollout service (`ControlPlane.provide_rollouts`).
RolloutsProvider = Callable[[], Awaitable["RolloutService"]]


class RolloutsUnavailableError(SeawallError):
    """The gateway runs no rollout service (the admin API answers 503)."""

    code = "rollouts_unavailable"


@dataclass(frozen=True, slots=True)
class _Opened:
    database: Database
    keys: ApiKeyStore
    audit: AuditLog


class ControlPlane:
    """The database `open_database` returns, opened and migrated once, on first use."""

    def __init__(
        self,
        open_database: Callable[[], Database],
        *,
        clock: Clock,
        make_registry: Callable[[Database, AuditLog], Registry] | None = None,
    ) -> None:
        """`make_registry`: builds the model registry on the opened database (its artifact
        store and rules come from config)."""
        self._open_database = open_database
        self._clock = clock
        self._make_registry = make_registry
        self._registry: Registry | None = None
        self._lock = asyncio.Lock()
        self._database: Database | None = None
        self._opened: _Opened | None = None
        self._rollouts: RolloutsProvider | None = None

    async def database(self) -> Database:
        """The database, migrated to the newest revision."""
        return (await self._open()).database

    async def keys(self) -> ApiKeyStore:
        """The API keys issued at run time (`seawall keys`, `/admin/keys`)."""
        return (await self._open()).keys

    async def audit(self) -> AuditLog:
        """The audit log (the key store appends to the same one)."""
        return (await self._open()).audit

    async def registry(self) -> Registry:
        """The model registry (the admin API's registry routes, `models:/` models)."""
        if self._registry is None:
            opened = await self._open()
            if self._make_registry is None:
                from seawall.registry import Registry

                self._registry = Registry(opened.database, clock=self._clock, audit=opened.audit)
            else:
                self._registry = self._make_registry(opened.database, opened.audit)
        return self._registry

    async def snapshots(self) -> SnapshotStore:
        """The data guard's snapshots (training profiles), in the registry's artifact store."""
        from seawall.data import SnapshotStore
        from seawall.store import BlobStore

        registry = await self.registry()
        blobs = registry.blobs or BlobStore("./seawall-artifacts")
        return SnapshotStore(await self.database(), blobs)

    def provide_rollouts(self, provider: RolloutsProvider | None) -> None:
        """Where `rollouts()` gets the rollout service from (None: the gateway runs none)."""
        self._rollouts = provider

    async def rollouts(self) -> RolloutService:
        """The rollout service; `RolloutsUnavailableError` if the gateway runs none."""
        if self._rollouts is None:
            raise RolloutsUnavailableError("this gateway runs no rollout controller")
        return await self._rollouts()

    async def start(self) -> None:
        """Open and migrate the database now rather than on first use."""
        await self._open()

    async def aclose(self) -> None:
        """Close the database's connections, if it was opened."""
        database, self._database, self._opened = self._database, None, None
        self._registry = None
        if database is not None:
            await database.aclose()

    async def _open(self) -> _Opened:
        opened = self._opened
        if opened is not None:
            return opened
        async with self._lock:
            if self._opened is None:
                from seawall.security.apikeys import ApiKeyStore
                from seawall.store import AuditLog

                if self._database is None:
                    self._database = self._open_database()
                database = self._database
                # Idempotent and safe in parallel; a failure is retried by the next call.
                await asyncio.to_thread(database.upgrade)
                audit = AuditLog(database, clock=self._clock)
                keys = ApiKeyStore(database, clock=self._clock, audit=audit)
                self._opened = _Opened(database, keys, audit)
            return self._opened

    def __repr__(self) -> str:
        where = "not opened" if self._database is None else self._database.url
        return f"ControlPlane({where})"
