"""`seawall backup create | verify | restore`: the database and the artifact store, with checksums.

The database is chosen as for `seawall db` (`--url`, else `--config`'s `database_url`, else
`SEAWALL_DATABASE_URL`, else `./seawall.db`); the store as for `seawall data` (`--store`, else
the config's `registry.artifact_store`, else `./seawall-artifacts`). Creating and restoring are
audited (`backup.create` in the database backed up, `backup.restore` in the one restored) as
`cli:<login name>`.

Exit status: 0 done; 1 a backup that does not verify (each bad file named), a restore refused (a
database that holds tables, a store that holds other blobs), blobs left out of a backup because
they were corrupt in the store, or a failure of the database, the store or pg_dump; 2 bad input
(no backup at PATH, DEST not empty, a bad URL).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from seawall.cli.actor import cli_actor
from seawall.cli.configcmd import load_or_exit
from seawall.cli.dbcmd import UrlOption, database_or_exit
from seawall.cli.registryaccess import reported
from seawall.config import RegistrySettings

if TYPE_CHECKING:
    from seawall.data.backup_manifest import BackupManifest
    from seawall.store import BlobStore, Database

__all__ = ["backup_app"]

backup_app = typer.Typer(
    help="Back up, verify and restore the database and the artifact store.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Use this config's database_url and artifact store."),
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Directory or fsspec URL of the store (default: the config's)."),
]
T = TypeVar("T")


def _run(
    config: Path | None,
    url: str | None,
    store: str | None,
    work: Callable[[Database, BlobStore], Coroutine[Any, Any, T]],
) -> T:
    """Run `work` on the database and store of `--config`/`--url`/`--store`, then close."""
    from seawall.store import BlobStore

    loaded = None if config is None else load_or_exit(config)
    if store is None:  # the config's, relative to the config file's directory
        store = (RegistrySettings() if loaded is None else loaded.registry).artifact_store
        if loaded is not None and "://" not in store:
            store = os.fspath(loaded.resolve_path(store))
    database = database_or_exit(config, url)
    try:
        return asyncio.run(work(database, BlobStore(store)))
    finally:
        database.close()


@backup_app.command("create")
def create(
    dest: Annotated[Path, typer.Argument(help="A new directory to write the backup into.")],
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Back up the database (one consistent snapshot) and every blob of the store into DEST."""
    from seawall.data.backup import create_backup

    with reported():
        manifest = _run(
            config, url, store, lambda db, blobs: create_backup(db, blobs, dest, actor=cli_actor())
        )
    typer.echo(f"backup written to {dest}")
    _print_contents(manifest)
    for digest, found in sorted(manifest.left_out.items()):
        typer.echo(f"corrupt in the store, left out: blob {digest} (hashes to {found})", err=True)
    if manifest.left_out:
        typer.echo(
            "run `seawall data verify` and restore those blobs from an older backup", err=True
        )
        raise typer.Exit(1)


@backup_app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="The backup directory.")],
) -> None:
    """Re-hash every file of the backup at PATH, look for missing and extra ones, read the dump."""
    from seawall.data.backup import verify_backup

    with reported():
        report = asyncio.run(verify_backup(path))
    for problem in report.problems:
        typer.echo(f"corrupt: {problem}", err=True)
    if not report.ok or report.manifest is None:
        typer.echo(f"backup {path}: {len(report.problems)} problem(s)", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"ok: {path}: {report.files_checked} files, {report.bytes_checked} bytes intact "
        f"(made {report.manifest.created_at.isoformat(timespec='seconds')} "
        f"by seawall {report.manifest.seawall_version})"
    )
    _print_contents(report.manifest)


@backup_app.command("restore")
def restore(
    path: Annotated[Path, typer.Argument(help="The backup directory.")],
    merge_store: Annotated[
        bool,
        typer.Option(
            "--merge-store", help="Restore into a store that holds other blobs (they are kept)."
        ),
    ] = False,
    store: StoreOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Verify the backup at PATH, then restore it into an empty database and store."""
    from seawall.data.backup import restore_backup

    with reported():
        result = _run(
            config,
            url,
            store,
            lambda db, blobs: restore_backup(
                path, db, blobs, actor=cli_actor(), merge_store=merge_store
            ),
        )
    typer.echo(f"restored {path}")
    _print_contents(result.manifest)
    typer.echo(
        f"  store     {result.blobs_written} blob(s) written, {result.blobs_present} present "
        f"already, {result.blobs_repaired} corrupt one(s) replaced, {result.blobs_other} other(s) "
        "kept"
    )


def _print_contents(manifest: BackupManifest) -> None:
    db = manifest.database
    where = "" if db.schema is None else f" schema {db.schema},"
    typer.echo(
        f"  database  {db.dialect}{where} revision {db.revision}: {len(db.tables)} tables, "
        f"{sum(db.tables.values())} rows ({db.file}, {manifest.files[db.file].size} bytes)"
    )
    typer.echo(f"  blobs     {len(manifest.blobs)} ({manifest.blob_bytes} bytes)")
    typer.echo(f"  checksum  {manifest.to_json()['checksum']}")
