"""`seawall data`: ingest batches under a contract; snapshots, lineage, quarantine.

The database is chosen as for `seawall db` (`--url`, else `--config`'s `database_url`, else
`SEAWALL_DATABASE_URL`, else `./seawall.db`), migrated beforehand by `seawall db upgrade`.
Snapshot and quarantine files go to the content-addressed store `--store`, else the config's
`registry.artifact_store` (models and data share it), else `./seawall-artifacts`. Commands act
as `cli:<login name>` in the audit log.

`ingest` exits 0 when the batch made a snapshot (some rows may be quarantined), 1 when it was
rejected (recorded, and its rows quarantined) or the source stayed unreachable, 2 on bad input
(an invalid contract, naming the YAML path; a missing, empty, corrupt, non-UTF-8 or oversized
file; a query the database refuses).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from seawall.cli.actor import cli_actor
from seawall.cli.configcmd import load_or_exit
from seawall.cli.dataview import (
    print_failures,
    print_ingestion,
    print_ingestions,
    print_lineage,
    print_snapshot,
    print_snapshots,
)
from seawall.cli.dbcmd import UrlOption, database_or_exit, require_table
from seawall.cli.output import echo_json
from seawall.cli.registryaccess import reported
from seawall.config import RegistrySettings
from seawall.errors import InvalidInputError

if TYPE_CHECKING:
    from seawall.data import IngestOptions, Ingestor, Quarantine, SnapshotStore, Source
    from seawall.store import Database

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Validate and ingest data under contracts; snapshots, lineage, quarantine.",
    no_args_is_help=True,
)
quarantine_app = typer.Typer(
    help="Rows a contract refused: list, show why, export to fix.", no_args_is_help=True
)
data_app.add_typer(quarantine_app, name="quarantine")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Use this config's database_url and artifact store."),
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Directory or fsspec URL of the store (default: the config's)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DatasetOption = Annotated[str | None, typer.Option("--dataset", help="Only this dataset.")]
LimitOption = Annotated[int, typer.Option(min=1, max=10_000, help="At most N, newest first.")]
T = TypeVar("T")


@dataclass(frozen=True)
class DataAccess:
    """The data guard on one database and store."""

    database: Database
    ingestor: Ingestor
    snapshots: SnapshotStore
    quarantine: Quarantine


def run_data(
    config: Path | None,
    url: str | None,
    store: str | None,
    work: Callable[[DataAccess], Coroutine[Any, Any, T]],
    *,
    options: IngestOptions | None = None,
) -> T:
    """Run `work` on the data guard of `--config`/`--url`/`--store`, then close the database."""
    from seawall.data import Ingestor, Quarantine, SnapshotStore
    from seawall.store import BlobStore

    loaded = None if config is None else load_or_exit(config)
    if store is None:
        store = (RegistrySettings() if loaded is None else loaded.registry).artifact_store
        if loaded is not None and "://" not in store:
            store = os.fspath(loaded.resolve_path(store))
    database = database_or_exit(config, url)
    try:
        require_table(database, "data_snapshots", "data guard")
        blobs = BlobStore(store)
        access = DataAccess(
            database,
            Ingestor(database, blobs, options=options),
            SnapshotStore(database, blobs),
            Quarantine(database, blobs),
        )
        return asyncio.run(work(access))
    finally:
        database.close()


@data_app.command("ingest")
def ingest(
    contract: Annotated[Path, typer.Option("--contract", help="The data contract (YAML).")],
    source: Annotated[
        Path | None, typer.Option("--source", help="A .csv or .parquet file.")
    ] = None,
    sql_url: Annotated[
        str | None, typer.Option("--sql-url", help="Read from this database (SQLAlchemy URL)...")
    ] = None,
    sql_query: Annotated[
        str | None, typer.Option("--sql-query", help="...the rows of this query.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Dataset name (default: the contract's).")
    ] = None,
    max_bytes: Annotated[
        int | None, typer.Option(min=1, help="Largest source read, in bytes (default 512 MiB).")
    ] = None,
    attempts: Annotated[
        int, typer.Option(min=1, max=20, help="Reads of a source that fails transiently.")
    ] = 4,
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a batch against CONTRACT; store the valid rows as a snapshot, quarantine the rest."""
    from seawall.data import load_contract

    with reported():
        parsed = load_contract(contract)
        reader = _source(source, sql_url, sql_query)
        result = run_data(
            config,
            url,
            store,
            lambda d: d.ingestor.ingest(parsed, reader, actor=cli_actor(), dataset=name),
            options=_options(max_bytes, attempts),
        )
    if as_json:
        snapshot = None if result.snapshot is None else result.snapshot.to_json()
        echo_json(
            {"ingestion": result.ingestion.to_json(), "snapshot": snapshot, "new": result.created}
        )
    else:
        print_ingestion(result.ingestion, result.created)
    if not result.accepted:
        typer.echo(f"refused: {result.ingestion.dataset}: {result.ingestion.reason}", err=True)
        raise typer.Exit(1)


def _options(max_bytes: int | None, attempts: int) -> IngestOptions:
    from seawall.data import IngestOptions

    if max_bytes is None:
        return IngestOptions(attempts=attempts)
    return IngestOptions(max_bytes=max_bytes, attempts=attempts)


def _source(path: Path | None, sql_url: str | None, sql_query: str | None) -> Source:
    from seawall.data import SqlSource, source_for

    if path is not None and (sql_url or sql_query):
        raise InvalidInputError("--source", "a file, or --sql-url with --sql-query: not both")
    if path is not None:
        return source_for(path)
    if not sql_url or not sql_query:
        missing = "--sql-query" if sql_url else "--sql-url" if sql_query else "--source"
        raise InvalidInputError(missing, "required (--source FILE, or --sql-url and --sql-query)")
    return SqlSource(sql_url, sql_query)


@data_app.command("snapshots")
def snapshots(
    dataset: DatasetOption = None,
    limit: LimitOption = 100,
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List snapshots, newest first."""
    with reported():
        records = run_data(
            config, url, store, lambda d: d.snapshots.list_snapshots(dataset=dataset, limit=limit)
        )
    if as_json:
        echo_json([r.to_json() for r in records])
    else:
        print_snapshots(records)


@data_app.command("show")
def show(
    snapshot: Annotated[str, typer.Argument(help="Snapshot id (or its first 6+ hex digits).")],
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """A snapshot: contract, source, lineage, counts, and its columns' profile."""
    with reported():
        record = run_data(config, url, store, lambda d: d.snapshots.get(snapshot))
    if as_json:
        echo_json(record.to_json())
    else:
        print_snapshot(record)


@data_app.command("lineage")
def lineage(
    model: Annotated[str, typer.Argument(help="A registered model.")],
    version: Annotated[int, typer.Argument(min=1, help="Its version.")],
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Model version → the snapshot it was trained on → that snapshot's parents and sources."""
    with reported():
        chain = run_data(config, url, store, lambda d: _lineage(d, model, version))
    if as_json:
        echo_json(chain)
    else:
        print_lineage(chain)


async def _lineage(access: DataAccess, model: str, version: int) -> list[dict[str, Any]]:
    """Each version of the model's lineage, with the snapshots behind it (None: not known)."""
    from seawall.data import SnapshotCorruptError
    from seawall.errors import NotFoundError
    from seawall.registry import Registry

    await access.database.run(require_table, access.database, "model_versions", "model registry")
    registry = Registry(access.database)
    chain = []
    for node in await registry.lineage(model, version):
        entry: dict[str, Any] = {**node.to_json(), "snapshots": None, "problem": None}
        if node.dataset_snapshot is not None:
            try:
                found = await access.snapshots.lineage(node.dataset_snapshot)
                entry["snapshots"] = [record.to_json() for record in found]
            except (NotFoundError, InvalidInputError, SnapshotCorruptError) as exc:
                entry["problem"] = str(exc)
        chain.append(entry)
    return chain


@data_app.command("verify")
def verify(store: StoreOption = None, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Check every snapshot's and quarantine's file is in the store and intact (exit 1 if not)."""
    with reported():
        problems = run_data(config, url, store, lambda d: d.snapshots.check())
    for problem in problems:
        typer.echo(f"corrupt: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("ok: every snapshot and quarantine file is present and intact")


@quarantine_app.command("list")
def quarantine_list(
    dataset: DatasetOption = None,
    limit: LimitOption = 100,
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingestions that quarantined rows (every row of a rejected batch), newest first."""
    with reported():
        records = run_data(
            config,
            url,
            store,
            lambda d: d.quarantine.ingestions(dataset=dataset, quarantined_only=True, limit=limit),
        )
    if as_json:
        echo_json([r.to_json() for r in records])
    else:
        print_ingestions(records)


@quarantine_app.command("show")
def quarantine_show(
    ingestion: Annotated[int, typer.Argument(min=1, help="The ingestion's number.")],
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most N failures.")] = 100,
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which row broke which rule of an ingestion, and why (batch rules first)."""
    with reported():
        record, failures = run_data(
            config, url, store, lambda d: _ingestion_failures(d.quarantine, ingestion, limit)
        )
    if as_json:
        echo_json({**record.to_json(), "failures": [f.to_json() for f in failures]})
    else:
        print_failures(record, failures)


async def _ingestion_failures(quarantine: Quarantine, ingestion: int, limit: int) -> Any:
    return await quarantine.get(ingestion), await quarantine.failures(ingestion, limit=limit)


@quarantine_app.command("export")
def quarantine_export(
    ingestion: Annotated[int, typer.Argument(min=1, help="The ingestion's number.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write: .csv or .parquet.")],
    reasons: Annotated[
        bool,
        typer.Option(help="Add _seawall_row and _seawall_reasons (remove them to re-ingest)."),
    ] = False,
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Write an ingestion's quarantined rows, as read, to fix them and ingest them again."""
    with reported():
        count = run_data(
            config,
            url,
            store,
            lambda d: d.quarantine.export(ingestion, out, actor=cli_actor(), reasons=reasons),
        )
    typer.echo(f"wrote {count} quarantined row(s) of ingestion {ingestion} to {out}")
