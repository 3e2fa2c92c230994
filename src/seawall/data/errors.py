"""Errors of the data guard, under `SeawallError`.

```
SeawallError
├── ConfigError
│   └── ContractError             the contract is invalid (YAML path and reason)
├── RejectedError
│   └── InvalidInputError
│       └── SourceError           the source is no batch: missing, empty, corrupt, not UTF-8,
│                                 too large, a query that fails (permanent: never retried)
└── DataError                     the data guard failed an operation
    ├── SourceUnavailableError    the source could not be reached (connection refused, timeout):
    │                             retried with backoff, raised when the attempts run out
    ├── SnapshotCorruptError      a stored snapshot or quarantine no longer matches its digest
    └── BackupError               a backup or restore failed (pg_dump failed, a file unwritable)
        └── BackupCorruptError    a backup does not verify: `problems` names each bad file
```

A batch that breaks its contract is not an error: `Ingestor.ingest` records it and returns it
as rejected. Unknown snapshots and ingestions are seawall's `NotFoundError`.
"""

from __future__ import annotations

from seawall.errors import ConfigError, InvalidInputError, SeawallError

__all__ = [
    "BackupCorruptError",
    "BackupError",
    "ContractError",
    "DataError",
    "SnapshotCorruptError",
    "SourceError",
    "SourceUnavailableError",
]


class ContractError(ConfigError):
    """The contract file is invalid; `problems` holds each bad field's YAML path and reason."""

    code = "contract_error"


class SourceError(InvalidInputError):
    """The source cannot be read as a batch; retrying the same source will not help."""

    code = "source_error"

    def __init__(self, reason: str) -> None:
        super().__init__("source", reason)


class DataError(SeawallError):
    """The data guard failed an operation."""

    code = "data_error"


class SourceUnavailableError(DataError):
    """The source could not be reached; another attempt later may succeed."""

    code = "source_unavailable"


class SnapshotCorruptError(DataError):
    """A stored snapshot (or quarantined batch) does not hash to its recorded digest."""

    code = "snapshot_corrupt"


class BackupError(DataError):
    """A backup or a restore failed."""

    code = "backup_error"


class BackupCorruptError(BackupError):
    """A backup does not verify; `problems` holds each one, `file: reason`."""

    code = "backup_corrupt"

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems
