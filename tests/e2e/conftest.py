"""Whole-process fixtures: start `python -m seawall serve` on a free port and stop it by signal."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol
from unittest import mock

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

# kserve parses sys.argv when imported (kserve/model_server.py: `parser.parse_known_args()`), so
# a pytest option that abbreviates one of its own (`--co` for `--configure_logging`) would make
# it exit the whole pytest run. Import it once here, with pytest's arguments out of its sight.
with mock.patch.object(sys, "argv", sys.argv[:1]):
    importlib.import_module("kserve")

#: Longest wait for a gateway to answer /v2/health/ready after it is started.
READY_TIMEOUT_S = 30.0
# kserve parses sys.argv when imported (kserve/model_server.py: `parser.parse_known_args()`), so
# a pytest option that abbreviates one of its own (`--co` for `--configure_logging`) would make
# it exit the whole pytest run. Import it once here, with pytest's arguments out of its sight.
with mock.patch.object(sys, "argv", sys.argv[:1]):
    importlib.import_module("kserve")

#: Longest wait for a gateway to exit after a signal (its grace period comes on top).
EXIT_TIMEOUT_S = 20.0
#: Longest any single HTTP call of the e2e tests may take.
HTTP_TIMEOUT_S = 15.0
#: The Redis that gateways share in the shared-limit tests (written into their config files).
#: Every Redis key the gateway's rate limiter writes starts with this (it is not configurable).
RATELIMIT_PREFIX = "seawall:rl:"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_seawall(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`python -m seawall ARGS` in a subprocess, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "seawall", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env=_child_env(),
    )


def _child_env() -> dict[str, str]:
    # No SEAWALL_* override from the developer's shell may change what a test starts.
    return {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}


class GatewayProcess:
    """One `python -m seawall serve --config FILE --port P` process, its output in a log file.

    Start-up is detected from uvicorn's "Uvicorn running on" line: configs must log at info.
    """

    def __init__(self, config: Path, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        #: Variables added to the process's environment (after the `SEAWALL_*` ones are dropped).
        self.env = dict(env or {})
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, "the gateway was never started"
        return self._process

    def start(self, *, attempts: int = 3) -> GatewayProcess:
        """Start on a free port (another one if it was taken meanwhile); wait until ready."""
        for _ in range(attempts):
            self.port = free_port()
            self._spawn()
            if self._wait_ready():
                return self
            # Exited during start-up: only a port taken between free_port() and bind is retried.
            if "address already in use" not in self.log().lower():
                break
        pytest.fail(f"gateway did not become ready; exit {self.process.poll()}; log:\n{self.log()}")

    def _spawn(self) -> None:
        self.close_log()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seawall",
                "serve",
                "--config",
                str(self.config),
                "--port",
                str(self.port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**_child_env(), **self.env},
            cwd=self.log_path.parent,  # files a config leaves to the default place stay there
        )

    def _wait_ready(self) -> bool:
        """True once /v2/health/ready answers 200; False if the process exits first."""
        # The port is bound only after the models load: until our process says it listens,
        # whatever answers on the port may be another test run's gateway that took it meanwhile.
        listening = f"Uvicorn running on {self.url} "
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                if listening in self.log():
                    with contextlib.suppress(httpx.TransportError):
                        if http.get("/v2/health/ready").status_code == 200:
                            return True
                time.sleep(0.05)
        self.kill()
        pytest.fail(f"gateway not ready after {READY_TIMEOUT_S} s; log:\n{self.log()}")

    def client(self) -> httpx.Client:
        """A new HTTP client for this gateway (use it in a `with` block)."""
        return httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of GET /metrics, 0.0 if it is not there (yet)."""
        with self.client() as http:
            response = http.get("/metrics")
        response.raise_for_status()
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def assert_all_ready(self) -> None:
        """Every model READY (the gateway is ready as soon as one is); else fail with the log."""
        with self.client() as http:
            index = http.get("/v2/repository/index").json()
        failed = [m for m in index if m["state"] != "READY"]
        assert not failed, f"models not ready: {failed}; log:\n{self.log()}"

    def send(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """The exit status; fails the test (log attached) if the process is still running."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"gateway still running {timeout_s} s later; log:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        """Send `sig` and return the exit status."""
        self.send(sig)
        return self.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL if still running, and reap it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def log(self) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Launch(Protocol):
    """`launch(config_file, env=None)`: a `GatewayProcess` started and ready."""

    def __call__(self, config: Path, env: Mapping[str, str] | None = None) -> GatewayProcess: ...


#: `run(*args)`: `python -m seawall ARGS` run to completion.
RunSeawall = Callable[..., subprocess.CompletedProcess[str]]


@contextmanager
def _launcher(directory: Path) -> Iterator[Launch]:
    started: list[GatewayProcess] = []

    def launch(config: Path, env: Mapping[str, str] | None = None) -> GatewayProcess:
        gateway = GatewayProcess(config, directory / f"gateway-{len(started)}.log", env)
        started.append(gateway)
        return gateway.start()

    try:
        yield launch
    finally:
        for gateway in started:
            gateway.kill()
            gateway.close_log()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start gateways for one test: `launch(config_file) -> GatewayProcess`; killed afterwards."""
    with _launcher(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def launch_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    """Like `launch`, for gateways shared by the tests of one module."""
    with _launcher(tmp_path_factory.mktemp("gateway")) as start:
        yield start


@pytest.fixture
def seawall_cli() -> RunSeawall:
    """`seawall_cli("config", "check", FILE)` runs `python -m seawall ...` in a subprocess."""
    return run_seawall


@pytest.fixture(scope="session")
def redis_url(redis_server: str) -> str:
    """Database 0: what the gateways' configs point at; see `redis_server` in tests/conftest.py."""
    return f"{redis_server}/0"


@pytest.fixture
def redis_model(redis_url: str) -> Iterator[str]:
    """A model name of this test's own (`m-<hex>`), so its rate-limit keys are its own too.

    The gateway's key prefix is fixed, so the name is what keeps concurrent runs apart; the
    keys that contain it are deleted after the test.
    """
    token = uuid.uuid4().hex
    try:
        yield f"m-{token}"
    finally:
        client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        try:
            keys = list(client.scan_iter(match=f"{RATELIMIT_PREFIX}*{token}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
