"""`seawall keys generate-signing`: the ed25519 key pair that signs model artifacts.

The private key is encrypted when `SEAWALL_SIGNING_KEY_PASSPHRASE` (or the file
`SEAWALL_SIGNING_KEY_PASSPHRASE_FILE` names) is set. Exit 2 on bad input (an existing key, an
unwritable directory); a key is never overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from seawall.errors import ConfigError

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
