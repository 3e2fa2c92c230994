"""`seawall`: serve, demo, config, db, audit, keys, models, data, backup, monitor, rollout,
version."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Annotated

import typer

from seawall import __version__
from seawall.cli.auditcmd import audit_app
from seawall.cli.backupcmd import backup_app
from seawall.cli.configcmd import config_app, load_or_exit
from seawall.cli.datacmd import data_app
from seawall.cli.dbcmd import db_app
from seawall.cli.demo import demo
from seawall.cli.keyscmd import keys_app
from seawall.cli.modelscmd import models_app
from seawall.cli.monitorcmd import monitor_app
from seawall.cli.rolloutcmd import rollout_app
from seawall.errors import ConfigError

__all__ = ["app", "main"]

app = typer.Typer(
    name="seawall",
    help="Keeps AI services answering through surges, outages, bad data and bad releases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(monitor_app, name="monitor")
app.add_typer(backup_app, name="backup")
app.add_typer(rollout_app, name="rollout")
app.command()(demo)


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML configuration file.")],
    host: Annotated[str | None, typer.Option(help="Listen address (overrides the file).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Listen port (overrides the file).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Gateway processes on the port (overrides the file)."),
    ] = None,
) -> None:
    """Start the gateway; SIGTERM drains in-flight requests and exits 0, SIGHUP reloads the file."""
    settings = load_or_exit(config)
    from seawall.gateway.server import serve as run_server  # deferred: pulls in uvicorn

    try:
        status = run_server(settings, host=host, port=port, workers=workers)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(status)


@app.command()
def version() -> None:
    """Print the versions of seawall and of Python."""
    typer.echo(f"seawall {__version__} (Python {platform.python_version()}, {sys.platform})")


def main() -> None:
    """Entry point of the `seawall` script."""
    app()
