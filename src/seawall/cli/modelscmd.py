"""`seawall models sign | verify`: signed manifests of model artifacts (a file or a directory).

`sign` writes `<artifact>.manifest.json` (or `--manifest`); `verify` checks it against the
`--trusted` public keys exactly as the gateway does before loading, and exits 0 if it holds,
1 naming the reason if not, and 2 on bad input (an unreadable key, a missing artifact).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from seawall.errors import ConfigError

__all__ = ["models_app"]

models_app = typer.Typer(help="Sign and verify model artifacts.", no_args_is_help=True)

ManifestOption = Annotated[
    Path | None,
    typer.Option("--manifest", "-m", help="Manifest file (default: <PATH>.manifest.json)."),
]


@models_app.command("sign")
def sign(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Private signing key (PEM).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    version: Annotated[str, typer.Option("--version", "-v", help="Model version.")],
    manifest: ManifestOption = None,
) -> None:
    """Hash every file of PATH and write its signed manifest."""
    from seawall.security import (
        SecurityError,
        load_private_key,
        manifest_path,
        passphrase_from_env,
        sign_artifact,
    )

    try:
        private = load_private_key(key, passphrase_from_env(os.environ))
        signed = sign_artifact(path, private, name=name, version=version, manifest=manifest)
    except (ConfigError, SecurityError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    written = manifest or manifest_path(path)
    typer.echo(
        f"signed {path}: {signed.name} version {signed.version}, {len(signed.files)} file(s), "
        f"{signed.total_bytes} bytes, key {signed.key_id}"
    )
    typer.echo(f"wrote {written}")


@models_app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    trusted: Annotated[
        list[Path],
        typer.Option("--trusted", "-t", help="Trusted public key (PEM); repeat for several."),
    ],
    manifest: ManifestOption = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Expected model name.")] = None,
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Expected model version.")
    ] = None,
) -> None:
    """Check PATH against its manifest and the trusted keys; exit 1 with the reason if it fails."""
    from seawall.security import ArtifactVerificationError, read_public_key, verify_artifact

    try:
        keys = [read_public_key(p) for p in trusted]
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        signed = verify_artifact(path, keys, manifest=manifest, name=name, version=version)
    except ArtifactVerificationError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # unreadable despite existing: permissions, I/O errors
        typer.echo(f"error: {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"ok: {path}: {signed.name} version {signed.version}, {len(signed.files)} file(s) "
        f"match, signed by key {signed.key_id} at {signed.created_at}"
    )
