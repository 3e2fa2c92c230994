"""Errors of the database layer, under `SeawallError`.

```
SeawallError
└── StoreError                    the database refused or failed an operation
    └── StoreUnavailableError     could not connect, the connection dropped, or a lock wait ran out
```

`Database.run` translates SQLAlchemy's connection-level errors (`OperationalError`,
`InterfaceError`, a pool checkout timeout) into `StoreUnavailableError`, once. Errors that carry
meaning for the caller (an `IntegrityError` on a duplicate name) pass through unchanged for the
caller to translate, because only it knows what the constraint means.
"""

from __future__ import annotations

from seawall.errors import SeawallError

__all__ = ["StoreError", "StoreUnavailableError"]


class StoreError(SeawallError):
    """The database refused or failed an operation (migrations included)."""

    code = "store_error"


class StoreUnavailableError(StoreError):
    """The database could not be reached, dropped the connection, or stayed locked too long."""

    code = "store_unavailable"
    #: Clients answered 503 for it are told to retry after this long (`Retry-After`).
    retry_after_s: float | None = 1.0
