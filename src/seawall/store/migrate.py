"""Alembic, driven from code: no `alembic.ini` at run time, migrations shipped inside the package.

There is one linear history for every seawall table, in `seawall/store/migrations/versions/`
(`vNNNN_<what>.py`, revision id `NNNN`). The packages that own tables (spend ledger, registry,
audit log, keys) add revisions there; a migration never imports their models, so it keeps
describing the schema as it was when it was written.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import MetaData, text

from seawall.store.errors import StoreError

if TYPE_CHECKING:
    from seawall.store.engine import Database

__all__ = ["MIGRATIONS", "alembic_config", "current_revision", "head", "upgrade", "upgrade_sql"]

#: The alembic script directory inside the installed package.
MIGRATIONS = Path(__file__).with_name("migrations")

# Serializes concurrent upgrades on PostgreSQL (two replicas starting together); an arbitrary
# constant that other applications sharing the database are unlikely to pick.
_PG_MIGRATION_LOCK = 0x5EA3A11_0001

# alembic's `context` and `op` are module-level proxies to the running migration: two alembic
# commands in one process at once would drive each other's migration. One at a time.
_ALEMBIC = threading.Lock()


def alembic_config(
    *, target_metadata: MetaData | None = None, output: io.StringIO | None = None
) -> Config:
    """An alembic `Config` for seawall's migrations, built in code.

    `target_metadata` is only needed to autogenerate or compare (`alembic.autogenerate`); the
    migrations themselves never use it.
    """
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["target_metadata"] = target_metadata
    return config


def head() -> str:
    """The newest revision this version of seawall knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:  # pragma: no cover - the package always ships revisions
        raise StoreError("no migrations found in the seawall package")
    return revision


def upgrade(database: Database, revision: str = "head") -> None:
    """Migrate `database` to `revision` in one transaction that holds the migration lock.

    SQLite: the transaction starts with `BEGIN IMMEDIATE`, so a second upgrader waits for the
    first and then finds nothing to do. PostgreSQL: a transaction-scoped advisory lock does the
    same (its DDL is transactional, so a failed migration leaves no half-made schema).
    """
    config = alembic_config()
    try:
        with database.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            with _ALEMBIC:
                command.upgrade(config, revision)
    except CommandError as exc:
        raise StoreError(f"database {database.url}: cannot migrate to {revision!r}: {exc}") from exc


def current_revision(database: Database) -> str | None:
    """The revision `database` is at; None for a database never migrated."""
    with database.begin(read_only=True) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_sql(dialect: str, revision: str = "head", start: str | None = None) -> str:
    """The SQL script that migrates a `dialect` database from `start` to `revision`.

    For a DBA who applies changes by hand (alembic's offline mode); nothing is connected to.
    """
    output = io.StringIO()
    config = alembic_config(output=output)
    config.attributes["dialect_name"] = dialect
    span = f"{start}:{revision}" if start else revision
    try:
        with _ALEMBIC:
            command.upgrade(config, span, sql=True)
    except CommandError as exc:
        raise StoreError(f"cannot write the migration script to {revision!r}: {exc}") from exc
    return output.getvalue()
