"""Start-up and graceful shutdown of a real `seawall serve` process."""

from __future__ import annotations

import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch, RunSeawall

pytestmark = pytest.mark.e2e

CONCURRENT = 20
#: Longest wait for something the gateway should do within a fraction of a second.
POLL_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 15.0


def write_config(directory: Path, text: str) -> Path:
    path = directory / "seawall.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def mock_config(directory: Path, *, latency_ms: float, grace_s: float, delay_s: float = 0) -> Path:
    return write_config(
        directory,
        f"""\
server:
  shutdown_grace_s: {grace_s}
  shutdown_delay_s: {delay_s}
models:
  - name: echo
    backend: {{kind: mock, latency_ms: {latency_ms}}}
""",
    )


def echo_body(i: int) -> dict[str, Any]:
    return {
        "id": f"req-{i}",
        "inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [i, i + 0.5]}],
    }


def post_echo(url: str, i: int) -> httpx.Response:
    """One inference on a connection of its own."""
    return httpx.post(f"{url}/v2/models/echo/infer", json=echo_body(i), timeout=HTTP_TIMEOUT_S)


def assert_echoed(response: httpx.Response, i: int) -> None:
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["id"] == f"req-{i}"
    assert document["outputs"] == [
        {"name": "output-0", "datatype": "FP32", "shape": [1, 2], "data": [i, i + 0.5]}
    ]


def wait_in_flight(gateway: GatewayProcess, count: int) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while gateway.metric("seawall_requests_in_flight", model="echo") < count:
        assert time.monotonic() < deadline, f"fewer than {count} requests in flight"
        time.sleep(0.05)


def wait_logged(gateway: GatewayProcess, line: str) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while line not in gateway.log():
        assert time.monotonic() < deadline, f"not logged: {line}"
        time.sleep(0.05)


def assert_refused(url: str) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v2/health/live", timeout=HTTP_TIMEOUT_S)


def test_sigterm_lets_every_request_in_flight_finish_then_exits_0(
    tmp_path: Path, launch: Launch
) -> None:
    gateway = launch(mock_config(tmp_path, latency_ms=1500, grace_s=10))

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        futures = [pool.submit(post_echo, gateway.url, i) for i in range(CONCURRENT)]
        wait_in_flight(gateway, CONCURRENT)
        gateway.send(signal.SIGTERM)
        responses = [f.result(timeout=HTTP_TIMEOUT_S) for f in futures]

    for i, response in enumerate(responses):
        assert_echoed(response, i)
    assert gateway.wait(timeout_s=10) == 0
    assert_refused(gateway.url)
    log = gateway.log()
    assert '"msg":"signal received: draining","signal":"SIGTERM"' in log
    assert '"msg":"gateway stopped"' in log  # the models were closed


def test_shutdown_delay_keeps_serving_while_reporting_not_ready(
    tmp_path: Path, launch: Launch
) -> None:
    gateway = launch(mock_config(tmp_path, latency_ms=0, grace_s=5, delay_s=2))

    signalled = time.monotonic()
    gateway.send(signal.SIGTERM)
    deadline = signalled + POLL_TIMEOUT_S
    with gateway.client() as http:
        while (ready := http.get("/v2/health/ready")).status_code == 200:
            assert time.monotonic() < deadline, "readiness never turned false"
            time.sleep(0.02)
    assert ready.status_code == 503
    assert ready.json() == {"ready": False, "reason": "shutting down"}
    # The listener is still open during the delay: new connections are served.
    for i in range(3):
        assert_echoed(post_echo(gateway.url, i), i)
    assert gateway.process.poll() is None

    assert gateway.wait(timeout_s=2 + POLL_TIMEOUT_S) == 0
    assert time.monotonic() - signalled >= 2.0
    assert_refused(gateway.url)


def test_grace_period_bounds_shutdown_and_cuts_slower_requests(
    tmp_path: Path, launch: Launch
) -> None:
    # The request would take 30 s; with 1 s of grace the process must not wait for it.
    gateway = launch(mock_config(tmp_path, latency_ms=30_000, grace_s=1))

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(post_echo, gateway.url, 0)
        wait_in_flight(gateway, 1)
        signalled = time.monotonic()
        gateway.send(signal.SIGTERM)
        status = gateway.wait(timeout_s=POLL_TIMEOUT_S)
        elapsed = time.monotonic() - signalled
        cut = future.result(timeout=HTTP_TIMEOUT_S)

    assert status == 0
    assert 1.0 <= elapsed < POLL_TIMEOUT_S
    # A cut request is answered, not dropped: 503 JSON telling the client to retry elsewhere.
    assert cut.status_code == 503, cut.text
    assert cut.headers["retry-after"] == "1"
    assert "shut down before this request finished" in cut.json()["error"]
    assert "timeout graceful shutdown exceeded" in gateway.log()
    assert "Exception in ASGI application" not in gateway.log()


def test_second_sigint_forces_exit(tmp_path: Path, launch: Launch) -> None:
    gateway = launch(mock_config(tmp_path, latency_ms=30_000, grace_s=30))

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(post_echo, gateway.url, 0)
        wait_in_flight(gateway, 1)
        gateway.send(signal.SIGINT)
        wait_logged(gateway, '"msg":"signal received: draining","signal":"SIGINT"')
        time.sleep(0.3)
        assert gateway.process.poll() is None  # the request in flight holds the exit
        gateway.send(signal.SIGINT)
        status = gateway.wait(timeout_s=POLL_TIMEOUT_S)
        with contextlib.suppress(httpx.TransportError):  # the request is cut; either way
            future.result(timeout=HTTP_TIMEOUT_S)

    assert status == 0


def test_invalid_config_stops_serve_with_status_2(tmp_path: Path, seawall_cli: RunSeawall) -> None:
    config = write_config(
        tmp_path,
        """\
server:
  prot: 8000
models:
  - name: echo
    backend: {kind: mock, latency_ms: -5}
""",
    )

    done = seawall_cli("serve", "--config", str(config), "--port", "0", timeout_s=30)

    assert done.returncode == 2
    assert "server.prot: unknown field" in done.stderr
    assert "models[0].backend.latency_ms: Input should be greater than or equal to 0" in (
        done.stderr
    )
    assert "Uvicorn running" not in done.stderr + done.stdout


def test_a_model_that_fails_to_load_is_not_ready_while_the_others_serve(
    tmp_path: Path, launch: Launch
) -> None:
    config = write_config(
        tmp_path,
        """\
models:
  - name: lost
    backend: {kind: sklearn, path: missing.joblib}
  - name: echo
    backend: {kind: mock}
""",
    )
    gateway = launch(config)

    with gateway.client() as http:
        lost = http.get("/v2/models/lost/ready")
        infer_lost = http.post("/v2/models/lost/infer", json=echo_body(0))
        index = http.get("/v2/repository/index").json()
    assert lost.status_code == 503
    missing = tmp_path / "missing.joblib"
    assert lost.json() == {
        "name": "lost",
        "version": "1",
        "ready": False,
        "reason": f"FileNotFoundError: model file not found: {missing}",
    }
    assert infer_lost.status_code == 503
    assert "model 'lost' version '1' is failed" in infer_lost.json()["error"]
    assert [(m["name"], m["state"]) for m in index] == [("lost", "FAILED"), ("echo", "READY")]
    assert_echoed(post_echo(gateway.url, 4), 4)
    assert gateway.stop() == 0
