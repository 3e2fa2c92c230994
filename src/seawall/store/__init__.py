"""Persistence shared by the control plane: database, migrations, spend ledger, blob store.

SQLite (WAL) by default, PostgreSQL at scale, through one SQLAlchemy engine and one alembic
history. Imports only the core (`errors`, `clock`, `types`, `context`).

Everything but the errors is imported on first use (PEP 562): SQLAlchemy, alembic and psycopg
cost ~30 MB of memory, which a gateway that keeps nothing in a database does not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from seawall.store.errors import StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from seawall.store.audit import AuditHead, AuditLog, AuditRecord
    from seawall.store.audit_chain import VerifyResult
    from seawall.store.blobs import BlobCorruptError, BlobNotFoundError, BlobStore
    from seawall.store.engine import Database
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
    "AuditHead",
    "AuditLog",
    "AuditRecord",
    "Base",
    "BlobCorruptError",
    "BlobNotFoundError",
    "BlobStore",
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
    "VerifyResult",
    "database_url_from_env",
]

_LAZY = {
    "AuditHead": "audit",
    "AuditLog": "audit",
    "AuditRecord": "audit",
    "VerifyResult": "audit_chain",
    "BlobStore": "blobs",
    "BlobCorruptError": "blobs",
    "BlobNotFoundError": "blobs",
    "Database": "engine",
    "Base": "schema",
    "UtcDateTime": "schema",
    "SpendDelta": "spend",
    "SpendKey": "spend",
    "SpendLedger": "spend",
    "SpendTotal": "spend",
    "SpendBuffer": "spend_buffer",
    "SpendBufferOptions": "spend_buffer",
    "SpendFlushed": "spend_buffer",
    "SpendFlushFailed": "spend_buffer",
    "SpendWriter": "spend_buffer",
    "DEFAULT_DATABASE_URL": "url",
    "database_url_from_env": "url",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
