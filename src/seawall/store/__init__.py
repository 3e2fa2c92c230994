"""Persistence shared by the control plane: the database, its migrations, the spend ledger.

SQLite (WAL) by default, PostgreSQL at scale, through one SQLAlchemy engine and one alembic
history. Imports only the core (`errors`, `clock`, `types`, `context`).
"""

from seawall.store.engine import Database
from seawall.store.errors import StoreError, StoreUnavailableError
from seawall.store.schema import Base, UtcDateTime
from seawall.store.spend import SpendDelta, SpendKey, SpendLedger, SpendTotal
from seawall.store.spend_buffer import (
    SpendBuffer,
    SpendBufferOptions,
    SpendFlushed,
    SpendFlushFailed,
    SpendWriter,
)
from seawall.store.url import DEFAULT_DATABASE_URL, database_url_from_env

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Base",
    "Database",
    "SpendBuffer",
    "SpendBufferOptions",
    "SpendDelta",
    "SpendFlushFailed",
    "SpendFlushed",
    "SpendKey",
    "SpendLedger",
    "SpendTotal",
    "SpendWriter",
    "StoreError",
    "StoreUnavailableError",
    "UtcDateTime",
    "database_url_from_env",
]
