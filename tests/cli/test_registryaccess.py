"""`reported` (errors → one line and an exit status) and `run_registry` (config → registry)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import typer

from seawall.cli.registryaccess import reported, run_registry
from seawall.errors import (
    ConfigError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    SeawallError,
)
from seawall.registry import Registry
from seawall.security import ArtifactVerificationError, SecurityError, VerificationFailure
from seawall.store import BlobNotFoundError, Database, StoreError, StoreUnavailableError


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (ConflictError("stage: none → production is not allowed"), 1, "refused: stage: none"),
        (ForbiddenError("four eyes: no"), 1, "refused: four eyes: no"),
        (InvalidInputError("framework", "lower case"), 2, "error: framework: lower case"),
        (NotFoundError("model 'x' is not registered"), 2, "error: model 'x' is not registered"),
        (SecurityError("m.onnx: no such file or directory"), 2, "error: m.onnx: no such file"),
        (
            ArtifactVerificationError("m", VerificationFailure.UNSIGNED, "no manifest"),
            2,
            "error: m: unsigned: no manifest",
        ),
        (ConfigError("k.key: cannot read"), 2, "error: k.key: cannot read"),
        (StoreUnavailableError("database x: down"), 1, "error: database x: down"),
        (BlobNotFoundError("blob 00 not in /s"), 1, "error: blob 00 not in /s"),
        (StoreError("database x: no model registry"), 1, "error: database x: no model registry"),
        (SeawallError("something else"), 1, "error: something else"),
        (PermissionError(13, "Permission denied", "/store/tmp"), 2, "error: /store/tmp: Permis"),
    ],
)
def test_errors_become_one_line_and_a_status(
    error: Exception, status: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as caught, reported():
        raise error

    assert caught.value.exit_code == status
    err = capsys.readouterr().err
    assert err.startswith(line)
    assert err.count("\n") == 1
    assert caught.value.__suppress_context__  # no "during handling" chain to print


def test_other_exceptions_are_not_swallowed() -> None:
    with pytest.raises(KeyError), reported():
        raise KeyError("a bug is a traceback, not a message")


def _migrated(url: str) -> str:
    database = Database(url)
    try:
        database.upgrade()
    finally:
        database.close()
    return url


async def _settings(registry: Registry) -> tuple[str, int, frozenset[str], float]:
    assert registry.blobs is not None
    options = registry.options
    return (
        registry.blobs.root,
        options.default_required_approvals,
        options.protected_aliases,
        options.approval_ttl_s,
    )


def test_the_config_gives_the_rules_and_a_store_relative_to_its_directory(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "seawall.yaml"
    config.parent.mkdir()
    config.write_text(
        "database_url: sqlite:///r.db\n"
        "registry: {artifact_store: art, required_approvals: 3, protected_aliases: [live, gold],"
        " approval_ttl_s: 60}\n"
    )
    _migrated(f"sqlite:///{tmp_path / 'conf' / 'r.db'}")

    assert run_registry(config, None, _settings, blobs=True) == (
        str(tmp_path / "conf" / "art"),
        3,
        frozenset({"live", "gold"}),
        60.0,
    )
    assert (
        run_registry(config, None, _settings, blobs=True, artifact_store="memory://p")[0]
        == "memory://p"
    )


def test_without_a_config_the_defaults_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = _migrated(f"sqlite:///{tmp_path / 'r.db'}")

    root, required, protected, ttl = run_registry(None, url, _settings, blobs=True)

    assert root == os.fspath(tmp_path / "seawall-artifacts")
    assert (required, protected, ttl) == (1, frozenset({"champion"}), 7 * 24 * 3600.0)
    assert not (tmp_path / "seawall-artifacts").exists()  # nothing is made until it is needed


def test_the_database_is_closed_after_the_work_even_if_it_fails(tmp_path: Path) -> None:
    url = _migrated(f"sqlite:///{tmp_path / 'r.db'}")
    seen: list[Registry] = []

    async def fail(registry: Registry) -> None:
        seen.append(registry)
        raise NotFoundError("model 'x' is not registered")

    with pytest.raises(NotFoundError):
        run_registry(None, url, fail)

    with pytest.raises(StoreError, match="closed"):
        asyncio.run(seen[0].list_models())


def test_only_registration_needs_the_artifact_store(tmp_path: Path) -> None:
    """A store whose fsspec driver is missing does not stop `list` or `show`."""
    url = _migrated(f"sqlite:///{tmp_path / 'r.db'}")

    async def blobs(registry: Registry) -> object:
        return registry.blobs

    store = "nosuchfs://bucket/models"

    assert run_registry(None, url, blobs, artifact_store=store) is None
    with pytest.raises(StoreError, match="blob store nosuchfs://bucket/models: Protocol not known"):
        run_registry(None, url, blobs, blobs=True, artifact_store=store)
