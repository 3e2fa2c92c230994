"""`seawall config check | schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from seawall.config import (
    CallableBackendSettings,
    OnnxBackendSettings,
    SeawallConfig,
    SklearnBackendSettings,
    load_config,
)
from seawall.errors import ConfigError

__all__ = ["config_app", "load_or_exit"]

config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)


def load_or_exit(path: Path) -> SeawallConfig:
    """Load `path`, or print every problem to stderr and exit with status 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@config_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="YAML configuration file.")],
    strict: Annotated[
        bool, typer.Option(help="Treat warnings (e.g. a missing model file) as errors.")
    ] = False,
) -> None:
    """Validate a configuration file exactly as `seawall serve` would, without starting."""
    config = load_or_exit(file)
    warnings = _warnings(config)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    names = ", ".join(f"{m.name}:{m.version}" for m in config.models) or "none"
    typer.echo(f"ok: {file}: {len(config.models)} model(s): {names}")
    if strict and warnings:
        raise typer.Exit(1)


@config_app.command("schema")
def schema() -> None:
    """Print the JSON schema of the configuration file (every field, with its description)."""
    typer.echo(json.dumps(SeawallConfig.model_json_schema(), indent=2))


def _warnings(config: SeawallConfig) -> list[str]:
    found = []
    for i, model in enumerate(config.models):
        backend = model.backend
        if isinstance(backend, SklearnBackendSettings | OnnxBackendSettings):
            path = config.resolve_path(backend.path)
            if not path.is_file():
                found.append(f"models[{i}].backend.path: file not found: {path}")
        elif isinstance(backend, CallableBackendSettings) and backend.search_path:
            path = config.resolve_path(backend.search_path)
            if not path.is_dir():
                found.append(f"models[{i}].backend.search_path: directory not found: {path}")
    return found
