"""The `seawall` command: version, help, and `serve`'s start-up checks (the server is faked)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seawall import __version__
from seawall.cli.main import app
from seawall.config import SeawallConfig
from seawall.gateway import server as server_module

runner = CliRunner()

VALID = """\
server:
  port: 8123
models:
  - name: echo
    backend: {kind: mock}
"""


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[SeawallConfig, str | None, int | None]]:
    """Replaces the real server: records what `seawall serve` would start, returns 0."""
    calls: list[tuple[SeawallConfig, str | None, int | None]] = []
    workers_seen.clear()

    def fake_serve(
        config: SeawallConfig,
        *,
        host: str | None = None,
        port: int | None = None,
        workers: int | None = None,
    ) -> int:
        calls.append((config, host, port))
        workers_seen.append(workers)
        return 0

    monkeypatch.setattr(server_module, "serve", fake_serve)
    return calls


#: The `workers` each faked `serve` call got (None: the config's).
workers_seen: list[int | None] = []


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "seawall.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_version_prints_seawall_and_python_versions() -> None:
    result = runner.invoke(app, ["version"])

    assert result.exit_code == 0
    assert result.stdout == (
        f"seawall {__version__} (Python {platform.python_version()}, {sys.platform})\n"
    )


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])

    assert result.exit_code == 0
    assert "Usage: seawall" in result.stdout
    for command in ("serve", "demo", "config", "version"):
        assert f" {command} " in result.stdout, command


def test_no_arguments_shows_the_help() -> None:
    result = runner.invoke(app, [])

    assert "Usage: seawall" in result.stdout
    assert "serve" in result.stdout


def test_serve_starts_the_server_with_the_loaded_config(
    tmp_path: Path, served: list[tuple[SeawallConfig, str | None, int | None]]
) -> None:
    result = runner.invoke(app, ["serve", "--config", str(write(tmp_path, VALID))])

    assert result.exit_code == 0, result.stderr
    ((config, host, port),) = served
    assert [m.name for m in config.models] == ["echo"]
    assert config.server.port == 8123
    assert config.base_dir == tmp_path.resolve()
    assert (host, port) == (None, None)


def test_serve_passes_host_and_port_overrides(
    tmp_path: Path, served: list[tuple[SeawallConfig, str | None, int | None]]
) -> None:
    config = str(write(tmp_path, VALID))

    result = runner.invoke(app, ["serve", "-c", config, "--host", "0.0.0.0", "--port", "9000"])

    assert result.exit_code == 0, result.stderr
    assert [(host, port) for _, host, port in served] == [("0.0.0.0", 9000)]


def test_serve_passes_the_worker_count(
    tmp_path: Path, served: list[tuple[SeawallConfig, str | None, int | None]]
) -> None:
    config = str(write(tmp_path, VALID))
    assert runner.invoke(app, ["serve", "-c", config, "--workers", "3"]).exit_code == 0
    assert runner.invoke(app, ["serve", "-c", config]).exit_code == 0
    assert workers_seen == [3, None]


def test_serve_reads_environment_overrides(
    tmp_path: Path, served: list[tuple[SeawallConfig, str | None, int | None]]
) -> None:
    config = str(write(tmp_path, VALID))

    result = runner.invoke(app, ["serve", "-c", config], env={"SEAWALL_SERVER__PORT": "9100"})

    assert result.exit_code == 0, result.stderr
    assert served[0][0].server.port == 9100


def test_serve_exits_with_the_server_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "serve", lambda config, host=None, port=None: 1)

    result = runner.invoke(app, ["serve", "-c", str(write(tmp_path, VALID))])

    assert result.exit_code == 1


def test_serve_with_an_invalid_config_exits_2_without_starting(
    tmp_path: Path, served: list[tuple[SeawallConfig, str | None, int | None]]
) -> None:
    broken = VALID.replace("port: 8123", "port: 99999").replace("kind: mock", "kind: mock, x: 1")

    result = runner.invoke(app, ["serve", "--config", str(write(tmp_path, broken))])

    assert result.exit_code == 2
    assert "server.port: Input should be less than or equal to 65535" in result.stderr
    assert "models[0].backend.x: unknown field" in result.stderr
    assert served == []


def test_serve_with_a_missing_config_file_exits_2(
    tmp_path: Path, served: list[tuple[SeawallConfig, str | None, int | None]]
) -> None:
    missing = tmp_path / "nope.yaml"

    result = runner.invoke(app, ["serve", "--config", str(missing)])

    assert result.exit_code == 2
    assert f"error: {missing}: cannot read" in result.stderr
    assert served == []


def test_serve_refuses_a_port_out_of_range(
    tmp_path: Path, served: list[tuple[SeawallConfig, str | None, int | None]]
) -> None:
    result = runner.invoke(app, ["serve", "-c", str(write(tmp_path, VALID)), "--port", "70000"])

    assert result.exit_code == 2
    assert "--port" in result.stderr
    assert served == []
