"""`seawall keys generate-signing | create | list | revoke | rotate`: signing and API keys.

`generate-signing` writes the ed25519 key pair that signs model artifacts. The private key is
encrypted when `SEAWALL_SIGNING_KEY_PASSPHRASE` (or the file `SEAWALL_SIGNING_KEY_PASSPHRASE_FILE`
names) is set. Exit 2 on bad input (an existing key, an unwritable directory); a key is never
overwritten.

`create`, `list`, `revoke` and `rotate` manage the API keys kept in the database (chosen as for
`seawall db`: `--url`, else `--config`'s `database_url`, else `SEAWALL_DATABASE_URL`). A new
secret is printed once, alone on standard output, and never again; `list` shows prefixes only.
Each change is audited as `cli:<user>`. Exit 2 on bad input, 1 on a database error.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from seawall.cli.actor import cli_actor
from seawall.cli.dbcmd import ConfigOption, UrlOption, database_or_exit, require_table
from seawall.cli.output import when
from seawall.errors import ConfigError
from seawall.store import StoreError

if TYPE_CHECKING:
    from seawall.security.apikeys import ApiKeyRecord, ApiKeyStore

__all__ = ["keys_app"]

keys_app = typer.Typer(help="Create and manage keys.", no_args_is_help=True)


@keys_app.command("generate-signing")
def generate_signing(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for signing.key and signing.pub.")
    ],
    name: Annotated[str, typer.Option(help="File name stem of the pair.")] = "signing",
) -> None:
    """Write a new ed25519 pair: NAME.key (private, mode 0600) and NAME.pub (to trust)."""
    from seawall.security import generate_signing_key, passphrase_from_env

    private, public = out / f"{name}.key", out / f"{name}.pub"
    try:
        passphrase = passphrase_from_env(os.environ)
        out.mkdir(parents=True, exist_ok=True)
        kid = generate_signing_key(private, public, passphrase=passphrase)
    except (ConfigError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    encrypted = "encrypted, " if passphrase else ""
    typer.echo(f"wrote {private} (private key, {encrypted}mode 0600: keep it secret)")
    typer.echo(f"wrote {public} (public key: list it in security.trusted_keys)")
    typer.echo(f"key id: {kid}")


T = TypeVar("T")

NameArgument = Annotated[str, typer.Argument(help="The key's name (who it belongs to).")]


@keys_app.command("create")
def create(
    name: NameArgument,
    role: Annotated[list[str], typer.Option("--role", "-r", help="A role (repeat for several).")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="A model name pattern it may call (default: all)."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="When it stops working (ISO 8601 with a time zone).")
    ] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Issue an API key and print its secret, once."""
    expires_at = _expiry_or_exit(expires)
    record, secret = _run_or_exit(
        config,
        url,
        lambda store: store.create(name, role, model or None, expires_at, actor=cli_actor()),
    )
    _print_secret(record, secret)


@keys_app.command("list")
def list_keys(
    config: ConfigOption = None,
    url: UrlOption = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """Show the API keys (prefixes only, never secrets)."""
    records = _run_or_exit(config, url, lambda store: store.list(include_revoked=all_keys))
    if not records:
        typer.echo("no API keys")
        return
    typer.echo(f"{'name':<20} {'prefix':<9} {'roles':<24} {'models':<16} {'expires':<26} revoked")
    for r in records:
        models = ",".join(r.models) if r.models is not None else "*"
        typer.echo(
            f"{r.name:<20} {r.prefix:<9} {','.join(r.roles):<24} {models:<16} "
            f"{when(r.expires_at):<26} {when(r.revoked_at)}"
        )


@keys_app.command("revoke")
def revoke(name: NameArgument, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Stop the key NAME now (and a rotated predecessor still in its overlap)."""
    revoked = _run_or_exit(config, url, lambda store: store.revoke(name, actor=cli_actor()))
    typer.echo(f"revoked {name} ({', '.join(r.prefix for r in revoked)})")


@keys_app.command("rotate")
def rotate(
    name: NameArgument,
    overlap: Annotated[
        float, typer.Option(help="Seconds the old secret keeps working.", min=0)
    ] = 0.0,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Give the key NAME a new secret (same roles and scopes) and print it, once."""
    record, secret = _run_or_exit(
        config, url, lambda store: store.rotate(name, actor=cli_actor(), overlap_s=overlap)
    )
    _print_secret(record, secret)


def _run_or_exit(
    config: Path | None, url: str | None, work: Callable[[ApiKeyStore], Awaitable[T]]
) -> T:
    from seawall.security.apikeys import ApiKeyStore  # deferred: SQLAlchemy is heavy

    database = database_or_exit(config, url)

    async def run() -> T:
        return await work(ApiKeyStore(database))

    try:
        require_table(database, "api_keys", "api_keys table")
        return asyncio.run(run())
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()


def _expiry_or_exit(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        typer.echo(f"error: --expires: an ISO 8601 time with a time zone, got {text!r}", err=True)
        raise typer.Exit(2)
    return when


def _print_secret(record: ApiKeyRecord, secret: str) -> None:
    typer.echo(
        f"API key {record.name!r} ({record.prefix}); store the secret now, it is not shown again:",
        err=True,
    )
    typer.echo(secret)
