"""SIGHUP reloads a real gateway process under load: not one request fails, the new model serves.

One process, and `--workers 2` (the supervisor passes SIGHUP on to each worker).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import Launch

pytestmark = pytest.mark.e2e

BODY = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
BEFORE = """\
server: {{host: 127.0.0.1, port: 0, log_level: info, workers: {workers}}}
models:
  - {{name: echo, backend: {{kind: mock, latency_ms: 5}}}}
"""
AFTER = BEFORE + "  - {{name: added, backend: {{kind: mock}}}}\n"


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_swaps_the_config_without_failing_a_request(
    tmp_path: Path, launch: Launch, workers: int
) -> None:
    config = tmp_path / "seawall.yaml"
    config.write_text(BEFORE.format(workers=workers))
    gateway = launch(config)
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10.0) as client:
            while not stop.is_set():
                response = client.post(f"{gateway.url}/v2/models/echo/infer", json=BODY)
                statuses[response.status_code] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        config.write_text(AFTER.format(workers=workers))
        gateway.send(signal.SIGHUP)
        deadline = time.monotonic() + 20
        with httpx.Client(timeout=10.0) as client:
            added = 0
            while time.monotonic() < deadline and added < 10:  # every worker serves it
                response = client.post(f"{gateway.url}/v2/models/added/infer", json=BODY)
                added = added + 1 if response.status_code == 200 else 0
                time.sleep(0.02)
        assert added == 10, gateway.log()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) > 100
    assert "configuration reloaded" in gateway.log()
    assert gateway.process.poll() is None  # still running
    assert gateway.stop() == 0
