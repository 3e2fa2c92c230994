"""How a `seawall models` registry command opens the registry, and reports what went wrong.

`run_registry` builds the `Registry` of `--config`/`--url`: the database chosen as for
`seawall db` (its registry tables must exist: the CLI never migrates by surprise), with the
approval rules and artifact store of the config's `registry:` section, or the defaults.
`reported` turns seawall's errors into one line on standard error and an exit status: 2 for
bad input (a malformed option, an unknown model or version, an unreadable file or key), 1 for
a refusal (a stage rule, missing approvals, four eyes) or a failure of the database or store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from seawall.cli.configcmd import load_or_exit
from seawall.cli.dbcmd import database_or_exit, require_table
from seawall.config import RegistrySettings
from seawall.errors import (
    ConfigError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    SeawallError,
)

if TYPE_CHECKING:
    from seawall.registry import Registry

__all__ = ["reported", "run_registry"]

T = TypeVar("T")


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Exit 2 on bad input, 1 on a refusal or a failure, with the reason in one line."""
    from seawall.security import SecurityError

    try:
        yield
    except (ConflictError, ForbiddenError) as exc:
        _exit(1, f"refused: {exc}")
    except (InvalidInputError, NotFoundError, SecurityError, ConfigError) as exc:
        _exit(2, f"error: {exc}")
    except SeawallError as exc:  # the database or the artifact store failed
        _exit(1, f"error: {exc}")
    except OSError as exc:  # a file that exists but cannot be read, a store that cannot be written
        where = f"{exc.filename}: " if exc.filename else ""
        _exit(2, f"error: {where}{exc.strerror or exc}")


def run_registry(
    config: Path | None,
    url: str | None,
    work: Callable[[Registry], Coroutine[Any, Any, T]],
    *,
    blobs: bool = False,
    artifact_store: str | None = None,
) -> T:
    """Run `work` on the registry, then close it.

    `blobs`: give it the artifact store (`artifact_store`, else the config's), which only
    registration needs; other commands work where the store's fsspec driver is not installed.
    """
    from seawall.registry import Registry
    from seawall.store import BlobStore

    loaded = None if config is None else load_or_exit(config)
    settings = RegistrySettings() if loaded is None else loaded.registry
    if artifact_store is None:  # the config's, relative to the config file's directory
        artifact_store = settings.artifact_store
        if loaded is not None and "://" not in artifact_store:
            artifact_store = os.fspath(loaded.resolve_path(artifact_store))
    options = settings.options()
    database = database_or_exit(config, url)
    try:
        require_table(database, "model_versions", "model registry")
        store = BlobStore(artifact_store) if blobs else None
        registry = Registry(database, blobs=store, options=options)
        return asyncio.run(work(registry))
    finally:
        database.close()


def _exit(status: int, message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(status) from None
