"""`seawall serve --workers N`: one port, N gateway processes, shared limits and summed metrics."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import Launch

BODY = {
    "inputs": [
        {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}


def workers_of(pid: int) -> set[int]:
    """The PIDs of `pid`'s child processes that are seawall workers."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:  # not the resource tracker
            found.add(int(entry.name))
    return found


def iris(demo_dir: Path) -> str:
    return f"{{kind: sklearn, path: {demo_dir / 'iris.joblib'}}}"


def wait_until(condition: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_two_workers_serve_one_port_sum_metrics_and_survive_a_crash(
    launch: Launch, demo_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text(
        "server: {workers: 2, log_level: info}\n"
        f"models:\n  - {{name: iris, backend: {iris(demo_dir)}}}\n"
    )
    gateway = launch(config)
    wait_until(lambda: len(workers_of(gateway.process.pid)) == 2)

    def infer(_: int) -> int:
        with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
            return http.post("/v2/models/iris/infer", json=BODY).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(infer, range(200)))
    assert statuses == {200: 200}
    # Whichever worker answers the scrape, the counter is the sum over both.
    assert gateway.metric("seawall_requests_total", model="iris", version="1", status="200") == 200

    victim = min(workers_of(gateway.process.pid))
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: (
            len(workers_of(gateway.process.pid)) == 2
            and victim not in workers_of(gateway.process.pid)
        )
    )
    wait_until(lambda: infer(0) == 200)
    with ThreadPoolExecutor(8) as pool:
        assert Counter(pool.map(infer, range(100))) == {200: 100}
    assert "restarting it" in gateway.log()

    assert gateway.stop(signal.SIGTERM) == 0, gateway.log()[-3000:]
    assert "Traceback" not in gateway.log()


def test_workers_share_a_rate_limit_through_redis(
    launch: Launch, demo_dir: Path, tmp_path: Path, redis_url: str, redis_model: str
) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text(
        "server: {workers: 2, log_level: info}\n"
        f"ratelimit: {{storage: redis, redis_url: '{redis_url}'}}\n"
        f"models:\n  - name: {redis_model}\n"
        f"    backend: {{kind: sklearn, path: {demo_dir / 'iris.joblib'}}}\n"
        "    policies: {ratelimit: {rate_per_s: 0.001, burst: 30}}\n"
    )
    gateway = launch(config)
    wait_until(lambda: len(workers_of(gateway.process.pid)) == 2)

    def infer(_: int) -> int:
        with httpx.Client(base_url=gateway.url, timeout=10.0) as http:
            return http.post(f"/v2/models/{redis_model}/infer", json=BODY).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(infer, range(80)))
    assert statuses == {200: 30, 429: 50}  # one bucket for both workers, not 30 each
    assert gateway.stop() == 0


def test_workers_with_in_memory_limits_are_refused(
    seawall_cli: object, demo_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text(
        "ratelimit: {per_key: {rate_per_s: 10, burst: 10}}\n"
        f"models:\n  - {{name: iris, backend: {iris(demo_dir)}}}\n"
    )
    result = seawall_cli("serve", "--config", str(config), "--port", "0", "--workers", "2")  # type: ignore[operator]
    assert result.returncode == 2
    assert "server.workers: 2 workers with ratelimit.storage: memory" in result.stderr
    assert "ratelimit.per_key" in result.stderr


@pytest.mark.parametrize("workers", ["0", "65"])
def test_a_bad_worker_count_is_named(seawall_cli: object, demo_dir: Path, workers: str) -> None:
    result = seawall_cli(  # type: ignore[operator]
        "serve", "--config", str(demo_dir / "seawall.yaml"), "--workers", workers
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr
