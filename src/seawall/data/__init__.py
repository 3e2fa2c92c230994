"""The data guard: contracts, validated ingestion with quarantine, immutable snapshots.

A `Contract` (YAML) says what a batch must look like; `Ingestor` reads a batch from a
`Source` (CSV, Parquet, SQL), validates it, and stores the valid rows as a content-addressed
snapshot (Parquet in the blob store, metadata and profile in the database) and the invalid ones
in quarantine, each with its reasons, audited in the same transaction. `SnapshotStore` reads
snapshots back (digest-checked, audited) and walks their lineage; `Quarantine` lists and
exports what was refused. `create_backup`, `verify_backup` and `restore_backup` save and
restore the database and the store together, checksummed. Uses `seawall.store`; never the
gateway. Imported on first use (PEP 562): pandas, pandera and pyarrow load only when the data
guard is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from seawall.data.errors import (
    BackupCorruptError,
    BackupError,
    ContractError,
    DataError,
    SnapshotCorruptError,
    SourceError,
    SourceUnavailableError,
)

if TYPE_CHECKING:
    from seawall.data.backup import (
        RestoreResult,
        VerifyReport,
        create_backup,
        restore_backup,
        verify_backup,
    )
    from seawall.data.backup_manifest import BackupManifest
    from seawall.data.contract import Contract, load_contract, parse_contract
    from seawall.data.dump import PgTools
    from seawall.data.ingest import IngestOptions, Ingestor, IngestResult, SourceRetried
    from seawall.data.quarantine import Quarantine
    from seawall.data.records import FailureRecord, IngestionRecord, SnapshotRecord
    from seawall.data.snapshots import SnapshotStore
    from seawall.data.sources import (
        CsvSource,
        FrameSource,
        ParquetSource,
        Source,
        SqlSource,
        source_for,
    )
    from seawall.data.validation import Validator, Verdict

__all__ = [
    "BackupCorruptError",
    "BackupError",
    "BackupManifest",
    "Contract",
    "ContractError",
    "CsvSource",
    "DataError",
    "FailureRecord",
    "FrameSource",
    "IngestOptions",
    "IngestResult",
    "IngestionRecord",
    "Ingestor",
    "ParquetSource",
    "PgTools",
    "Quarantine",
    "RestoreResult",
    "SnapshotCorruptError",
    "SnapshotRecord",
    "SnapshotStore",
    "Source",
    "SourceError",
    "SourceRetried",
    "SourceUnavailableError",
    "SqlSource",
    "Validator",
    "Verdict",
    "VerifyReport",
    "create_backup",
    "load_contract",
    "parse_contract",
    "restore_backup",
    "source_for",
    "verify_backup",
]

_LAZY = {
    "RestoreResult": "backup",
    "VerifyReport": "backup",
    "create_backup": "backup",
    "restore_backup": "backup",
    "verify_backup": "backup",
    "BackupManifest": "backup_manifest",
    "PgTools": "dump",
    "Contract": "contract",
    "load_contract": "contract",
    "parse_contract": "contract",
    "IngestOptions": "ingest",
    "IngestResult": "ingest",
    "Ingestor": "ingest",
    "SourceRetried": "ingest",
    "Quarantine": "quarantine",
    "FailureRecord": "records",
    "IngestionRecord": "records",
    "SnapshotRecord": "records",
    "SnapshotStore": "snapshots",
    "CsvSource": "sources",
    "FrameSource": "sources",
    "ParquetSource": "sources",
    "Source": "sources",
    "SqlSource": "sources",
    "source_for": "sources",
    "Validator": "validation",
    "Verdict": "validation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
