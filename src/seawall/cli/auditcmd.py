"""`seawall audit verify | export`: check and copy out the hash-chained audit log.

The database is chosen as for `seawall db`: `--url`, else the `--config` file's `database_url`,
else `SEAWALL_DATABASE_URL`, else `./seawall.db`. `verify` exits 0 when the chain is intact and
1 naming the first bad record; both commands exit 1 on a database error and 2 on bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from seawall.cli.dbcmd import ConfigOption, UrlOption, database_or_exit, require_table
from seawall.store import StoreError

if TYPE_CHECKING:
    from seawall.store import Database

__all__ = ["audit_app"]

audit_app = typer.Typer(
    help="Verify and export the tamper-evident audit log.", no_args_is_help=True
)

OutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Write to this file (default: standard output)."),
]


@audit_app.command("verify")
def verify(config: ConfigOption = None, url: UrlOption = None) -> None:
    """Check every record's hash and link and the chain's head; exit 1 naming the first bad one."""
    from seawall.store import AuditLog  # deferred: `seawall serve` does not need SQLAlchemy

    database = database_or_exit(config, url)
    try:
        require_table(database, "audit_log", "audit log")
        result = asyncio.run(AuditLog(database).verify())
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()
    if result.ok:
        typer.echo(
            f"ok: {result.checked} records intact; "
            f"head: seq {result.head_seq}, hash {result.head_hash}"
        )
        return
    where = "" if result.first_bad_seq is None else f"record {result.first_bad_seq}: "
    typer.echo(f"tampered: {where}{result.reason} ({result.checked} records before it are intact)")
    raise typer.Exit(1)


@audit_app.command("export")
def export(config: ConfigOption = None, url: UrlOption = None, out: OutOption = None) -> None:
    """Write every record as JSONL, oldest first, one per line with its hashes."""
    database = database_or_exit(config, url)
    try:
        require_table(database, "audit_log", "audit log")
        count = _export(database, out)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot write {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()
    typer.echo(f"exported {count} records" + (f" to {out}" if out else ""), err=True)


def _export(database: Database, out: Path | None) -> int:
    from seawall.store import AuditLog

    if out is None:
        return asyncio.run(AuditLog(database).export(sys.stdout))
    # Written beside the target and renamed over it, so the file is never half an export.
    partial = out.with_name(f".{out.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as file:
            count = asyncio.run(AuditLog(database).export(file))
        os.replace(partial, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return count
