"""A real Prometheus server for the e2e tests: scrapes given targets on 127.0.0.1 every second.

`Prometheus.start(targets, tmp_path)` writes a config and starts `prometheus` (the Debian
package) on a free port with its data in `tmp_path`; `query(promql)` asks its HTTP API. Tests
that need it call `require_prometheus()`: a skip on a developer machine without it, a failure
on CI (where `.ci/run` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Prometheus", "require_prometheus"]

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_prometheus() -> str:
    """The `prometheus` binary; skips the test without it, fails it on CI."""
    binary = shutil.which("prometheus")
    if binary is None:
        reason = "prometheus is not installed (apt-get install prometheus)"
        if ON_CI:
            pytest.fail(f"{reason}; CI must run the Prometheus test")
        pytest.skip(reason)
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Prometheus:
    """One Prometheus process; stop it with `stop()`."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        targets: list[str],
        directory: Path,
        *,
        interval_s: float = 1.0,
        port: int | None = None,
    ) -> Prometheus:
        """Scrape `targets` (`host:port`) every `interval_s`; wait until it is ready.

        `port`: where it listens (chosen beforehand when a gateway's config must name it);
        None: a free one."""
        binary = require_prometheus()
        port = port or _free_port()
        config = directory / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": f"{interval_s:g}s"},
                    "scrape_configs": [
                        {"job_name": "seawall", "static_configs": [{"targets": targets}]}
                    ],
                }
            )
        )
        log = directory / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = cls(process, port, log)
        server._wait_ready()
        return server

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("prometheus did not become ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for_series(self, promql: str, timeout_s: float = 30.0) -> None:
        """Until `promql` returns at least one sample (the first scrapes have landed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.query(promql):
                return
            time.sleep(0.25)
        raise AssertionError(f"no samples for {promql} after {timeout_s} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
