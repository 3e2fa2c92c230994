"""`seawall db upgrade | current | sql | spend`: the database behind spend (and the registry).

The database is the config file's `database_url` when `--config` is given, else
`SEAWALL_DATABASE_URL`, else `./seawall.db`; `--url` overrides both.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from seawall.assemble import open_database
from seawall.cli.configcmd import load_or_exit
from seawall.errors import ConfigError
from seawall.store import StoreError

if TYPE_CHECKING:
    from seawall.store import Database

__all__ = ["ConfigOption", "UrlOption", "database_or_exit", "db_app", "require_table"]

db_app = typer.Typer(help="Migrate and inspect the database.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Use this config file's database_url."),
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (sqlite:///path or postgresql://user@host/db)."),
]


def database_or_exit(config: Path | None, url: str | None) -> Database:
    """The database named by `--url`, else `--config`'s, else the environment's; exit 2 if bad."""
    from seawall.store import Database  # deferred: `seawall serve` does not need SQLAlchemy

    try:
        if url:
            return Database(url)
        if config is not None:
            return open_database(load_or_exit(config))
        return Database.from_env()
    except (ConfigError, StoreError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def require_table(database: Database, table: str, what: str) -> None:
    """`StoreError` naming the fix if `table` is missing: the CLI never migrates by surprise.

    A command that writes to a database that a newer or older seawall serves should not change
    its schema as a side effect; `seawall db upgrade` (or the gateway's start) does that.
    """
    from sqlalchemy import inspect

    with database.translated_errors(), database.begin(read_only=True) as connection:
        if not inspect(connection).has_table(table):
            raise StoreError(f"database {database.url}: no {what} (run `seawall db upgrade`)")


@db_app.command("upgrade")
def upgrade(
    config: ConfigOption = None,
    url: UrlOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Migrate the schema (idempotent; `seawall serve` also does it at start-up)."""
    database = database_or_exit(config, url)
    try:
        database.upgrade(revision)
        typer.echo(f"ok: {database.url} at revision {database.revision()}")
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()


@db_app.command("current")
def current(config: ConfigOption = None, url: UrlOption = None) -> None:
    """Print the schema revision the database is at, and the newest one this seawall knows."""
    database = database_or_exit(config, url)
    try:
        revision = database.revision()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()
    from seawall.store import migrate

    head = migrate.head()
    typer.echo(f"{database.url}: {revision or 'not migrated'} (head: {head})")
    if revision != head:
        raise typer.Exit(1)


@db_app.command("sql")
def sql(
    dialect: Annotated[
        str, typer.Option(help="sqlite or postgresql: the SQL dialect to write.")
    ] = "postgresql",
    start: Annotated[
        str | None, typer.Option("--from", help="Revision the database is at.")
    ] = None,
) -> None:
    """Print the migration script, for a DBA who applies schema changes by hand."""
    if dialect not in ("sqlite", "postgresql"):
        typer.echo(f"error: --dialect: sqlite or postgresql, got {dialect!r}", err=True)
        raise typer.Exit(2)
    from seawall.store import migrate

    try:
        typer.echo(migrate.upgrade_sql(dialect, start=start), nl=False)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@db_app.command("spend")
def spend(
    key: Annotated[str, typer.Argument(help="API key name (as in auth.keys).")],
    config: ConfigOption = None,
    url: UrlOption = None,
    period: Annotated[
        str | None,
        typer.Option(help="2026-11 (a month) or 2026-11-26 (a day); default: this month."),
    ] = None,
) -> None:
    """Print what `key` spent in a period, per model (written spend: up to ~1 s behind)."""
    label = period or datetime.now(UTC).strftime("%Y-%m")
    if _period_kind(label) is None:
        typer.echo(f"error: --period: YYYY-MM or YYYY-MM-DD, got {label!r}", err=True)
        raise typer.Exit(2)
    from seawall.store import SpendLedger

    database = database_or_exit(config, url)
    try:
        totals = asyncio.run(SpendLedger(database).totals(key, label))
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()
    if not totals:
        typer.echo(f"{key}: no spend in {label}")
        return
    typer.echo(f"{'model':<24} {'usd':>12} {'prompt':>10} {'completion':>10} {'requests':>9}")
    for row in totals:
        typer.echo(
            f"{row.model:<24} {row.usd:>12.6f} {row.prompt_tokens:>10} "
            f"{row.completion_tokens:>10} {row.requests:>9}"
        )
    typer.echo(f"{'total':<24} {sum(r.usd for r in totals):>12.6f}")


def _period_kind(label: str) -> Literal["day", "month"] | None:
    for kind, pattern in (("month", "%Y-%m"), ("day", "%Y-%m-%d")):
        try:
            datetime.strptime(label, pattern)
        except ValueError:
            continue
        return "month" if kind == "month" else "day"
    return None
