"""GatewayServer's signal handling and `serve()`'s set-up, without real signals or sockets."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn

from seawall.backends import ModelRepository
from seawall.config import parse_config
from seawall.gateway import Gateway
from seawall.gateway import server as server_module
from seawall.gateway.server import GatewayServer, serve


class FakeMonotonic:
    """Stands in for `time.monotonic` inside the server module only."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    # Replace the module's `time` name, not time.monotonic itself: the event loop uses that.
    monkeypatch.setattr(server_module, "time", SimpleNamespace(monotonic=fake))
    return fake


def make_server(delay_s: float = 0.0) -> tuple[GatewayServer, Gateway]:
    gateway = Gateway(ModelRepository())
    gateway.started = True
    config = uvicorn.Config(gateway, host="127.0.0.1", port=0, log_config=None)
    return GatewayServer(config, gateway, delay_s=delay_s), gateway


def exit_flags(server: GatewayServer) -> tuple[bool, bool]:
    """uvicorn's (should_exit, force_exit)."""
    return server.should_exit, server.force_exit


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_first_signal_drains_and_exits_at_once_without_delay(sig: signal.Signals) -> None:
    server, gateway = make_server()
    assert gateway.readiness() == (True, "")

    server.handle_exit(sig, None)

    assert gateway.draining
    assert gateway.readiness() == (False, "shutting down")
    assert exit_flags(server) == (True, False)
    # Recorded signals are re-raised by uvicorn after shutdown: the process would die with -15.
    assert server._captured_signals == []


async def test_first_signal_with_a_delay_exits_only_after_it(monotonic: FakeMonotonic) -> None:
    server, gateway = make_server(delay_s=2.0)

    server.handle_exit(signal.SIGTERM, None)

    assert gateway.draining
    assert exit_flags(server) == (False, False)
    monotonic.now += 1.999
    assert await server.on_tick(1) is False
    assert exit_flags(server) == (False, False)
    monotonic.now += 0.001
    assert await server.on_tick(2) is True
    assert exit_flags(server) == (True, False)
    assert server._captured_signals == []


async def test_on_tick_without_a_signal_keeps_serving(monotonic: FakeMonotonic) -> None:
    server, gateway = make_server(delay_s=2.0)
    monotonic.now += 3600

    assert await server.on_tick(1) is False
    assert exit_flags(server) == (False, False)
    assert not gateway.draining


def test_second_sigint_forces_exit() -> None:
    server, _ = make_server()
    server.handle_exit(signal.SIGTERM, None)

    server.handle_exit(signal.SIGINT, None)

    assert exit_flags(server) == (True, True)
    assert server._captured_signals == []


def test_second_sigterm_does_not_force_exit() -> None:
    server, _ = make_server()
    server.handle_exit(signal.SIGTERM, None)

    server.handle_exit(signal.SIGTERM, None)

    assert exit_flags(server) == (True, False)


def test_second_signal_during_the_delay_cuts_it_short(monotonic: FakeMonotonic) -> None:
    server, _ = make_server(delay_s=30.0)
    server.handle_exit(signal.SIGTERM, None)
    assert exit_flags(server) == (False, False)

    server.handle_exit(signal.SIGTERM, None)

    assert exit_flags(server) == (True, False)
    assert server._captured_signals == []


CONFIG = """\
server:
  host: 127.0.0.2
  port: 8123
  shutdown_grace_s: 2.5
  shutdown_delay_s: 1.5
  log_format: text
models:
  - name: echo
    backend: {kind: mock}
"""


@pytest.fixture
def captured_run(monkeypatch: pytest.MonkeyPatch) -> list[GatewayServer]:
    """Replaces `GatewayServer.run` (which would bind a socket) by a recorder."""
    runs: list[GatewayServer] = []

    def run(self: GatewayServer, sockets: object = None) -> None:
        runs.append(self)
        self.started = True

    monkeypatch.setattr(GatewayServer, "run", run)
    monkeypatch.setattr(server_module, "configure_logging", lambda level, fmt: None)
    return runs


def test_serve_configures_uvicorn_from_the_server_settings(
    captured_run: list[GatewayServer],
) -> None:
    config = parse_config(CONFIG, base_dir=Path.cwd(), environ={})

    status = serve(config)

    assert status == 0
    (server,) = captured_run
    assert (server.config.host, server.config.port) == ("127.0.0.2", 8123)
    assert server.config.timeout_graceful_shutdown == 3  # whole seconds, rounded up
    assert server._delay_s == 1.5
    gateway = server.config.app
    assert isinstance(gateway, Gateway)
    assert [m.name for m in gateway.repository] == ["echo"]


def test_serve_host_and_port_arguments_override_the_file(
    captured_run: list[GatewayServer],
) -> None:
    config = parse_config(CONFIG, base_dir=Path.cwd(), environ={})

    serve(config, host="127.0.0.3", port=0)

    (server,) = captured_run
    assert (server.config.host, server.config.port) == ("127.0.0.3", 0)


def test_serve_returns_1_if_the_server_never_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GatewayServer, "run", lambda self, sockets=None: None)
    monkeypatch.setattr(server_module, "configure_logging", lambda level, fmt: None)
    config = parse_config(CONFIG, base_dir=Path.cwd(), environ={})

    assert serve(config) == 1
