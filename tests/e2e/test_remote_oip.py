"""A front gateway whose models are remote (`kind: oip`) on a real upstream seawall process."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import joblib
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch

pytestmark = pytest.mark.e2e

#: Seconds any client call may take.
CLIENT_TIMEOUT_S = 15.0
#: Longest wait for the front to notice an upstream died or came back (its checks run every
#: 0.2 s: this is 50 rounds).
NOTICE_S = 10.0
WRONG_SHAPE_ERROR = (
    "inputs[0].shape: input 'input-0' of model 'iris' takes shape [-1, 4], got [1, 3]"
)
ROW = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1] * 4}]}

FRONT = """
server: {{host: 127.0.0.1, port: 8000, shutdown_grace_s: 1}}
models:
  - name: iris
    backend:
      kind: oip
      endpoints: [{endpoints}]
      health_check: {{interval_s: 0.2, timeout_ms: 1000, unhealthy_threshold: 1,
                      healthy_threshold: 1}}
      outlier: {{consecutive_5xx: 1, base_ejection_s: 30, max_ejection_percent: 50}}
{policies}
  - name: iris-onnx
    backend:
      kind: oip
      binary: true
      endpoints: [{{url: "{first}"}}]
"""


def write_front(directory: Path, urls: list[str], policies: str = "") -> Path:
    path = directory / "front.yaml"
    endpoints = ", ".join(f'{{url: "{url}"}}' for url in urls)
    path.write_text(FRONT.format(endpoints=endpoints, first=urls[0], policies=policies))
    return path


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def upstream(demo_dir: Path, launch_shared: Launch) -> GatewayProcess:
    gateway = launch_shared(demo_dir / "seawall.yaml")
    gateway.assert_all_ready()
    return gateway


@pytest.fixture(scope="module")
def front(
    upstream: GatewayProcess, launch_shared: Launch, tmp_path_factory: pytest.TempPathFactory
) -> GatewayProcess:
    """iris on the upstream and on a port where nothing listens; iris-onnx in binary."""
    config = write_front(tmp_path_factory.mktemp("front"), [upstream.url, closed_port_url()])
    gateway = launch_shared(config)
    gateway.assert_all_ready()
    return gateway


@pytest.fixture(scope="module")
def iris_x() -> npt.NDArray[np.float64]:
    x: npt.NDArray[np.float64] = load_iris().data
    return x


@pytest.fixture(scope="module")
def expected(demo_dir: Path, iris_x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
    estimator = joblib.load(demo_dir / "iris.joblib")
    return {"predict": estimator.predict(iris_x), "predict_proba": estimator.predict_proba(iris_x)}


def triton_client(gateway: GatewayProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(
        f"127.0.0.1:{gateway.port}",
        connection_timeout=CLIENT_TIMEOUT_S,
        network_timeout=CLIENT_TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def clients(
    upstream: GatewayProcess, front: GatewayProcess
) -> Iterator[tuple[triton.InferenceServerClient, triton.InferenceServerClient]]:
    """Triton's client for the upstream and for the front."""
    up, fr = triton_client(upstream), triton_client(front)
    try:
        yield up, fr
    finally:
        up.close()
        fr.close()


@pytest.fixture
async def kserve_client() -> AsyncIterator[InferenceRESTClient]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=CLIENT_TIMEOUT_S))
    try:
        yield client
    finally:
        await client.close()


Clients = tuple[triton.InferenceServerClient, triton.InferenceServerClient]


# --- the front answers like the upstream -----------------------------------------------------


@pytest.mark.parametrize("model", ["iris", "iris-onnx"])
def test_triton_metadata_and_readiness_equal_the_upstreams(clients: Clients, model: str) -> None:
    up, fr = clients
    assert fr.get_model_metadata(model) == up.get_model_metadata(model)
    assert fr.is_model_ready(model) is True
    assert fr.is_server_ready() is True
    assert fr.is_model_ready("diabetes") is False  # not configured on the front


@pytest.mark.parametrize("binary_input", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_output", [True, False], ids=["binary-out", "json-out"])
def test_triton_infer_through_the_front_equals_the_upstream(
    clients: Clients,
    iris_x: npt.NDArray[np.float64],
    expected: dict[str, npt.NDArray[Any]],
    binary_input: bool,
    binary_output: bool,
) -> None:
    results = []
    for client in clients:
        inputs = [triton.InferInput("input-0", list(iris_x.shape), "FP64")]
        inputs[0].set_data_from_numpy(iris_x, binary_data=binary_input)
        outputs = [
            triton.InferRequestedOutput(name, binary_data=binary_output)
            for name in ("predict", "predict_proba")
        ]
        results.append(client.infer("iris", inputs, outputs=outputs, request_id="req-3"))
    upstream_result, front_result = results
    response = front_result.get_response()
    assert response["id"] == "req-3"
    assert (response["model_name"], response["model_version"]) == ("iris", "1")
    for output in response["outputs"]:
        assert ("binary_data_size" in output.get("parameters", {})) is binary_output
    for name in ("predict", "predict_proba"):
        np.testing.assert_array_equal(front_result.as_numpy(name), upstream_result.as_numpy(name))
    np.testing.assert_array_equal(front_result.as_numpy("predict"), expected["predict"])
    np.testing.assert_allclose(
        front_result.as_numpy("predict_proba"), expected["predict_proba"], rtol=1e-9
    )


def test_triton_infer_on_the_binary_remote_onnx_model(
    clients: Clients, iris_x: npt.NDArray[np.float64], expected: dict[str, npt.NDArray[Any]]
) -> None:
    inputs = [triton.InferInput("input-0", list(iris_x.shape), "FP32")]
    inputs[0].set_data_from_numpy(iris_x.astype(np.float32), binary_data=False)
    result = clients[1].infer("iris-onnx", inputs)
    proba = result.as_numpy("predict_proba")
    assert proba is not None
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, expected["predict_proba"], atol=1e-4)
    np.testing.assert_array_equal(result.as_numpy("predict"), expected["predict"])


def test_the_front_refuses_a_wrong_shape_with_the_upstreams_words(clients: Clients) -> None:
    inputs = [triton.InferInput("input-0", [1, 3], "FP64")]
    inputs[0].set_data_from_numpy(np.ones((1, 3)), binary_data=True)
    for client in clients:
        with pytest.raises(InferenceServerException) as caught:
            client.infer("iris", inputs)
        assert caught.value.status() == "400"
        assert caught.value.message() == WRONG_SHAPE_ERROR


async def test_kserve_client_through_the_front(
    front: GatewayProcess,
    kserve_client: InferenceRESTClient,
    iris_x: npt.NDArray[np.float64],
    expected: dict[str, npt.NDArray[Any]],
) -> None:
    assert await kserve_client.is_server_live(front.url) is True
    assert await kserve_client.is_server_ready(front.url) is True
    assert await kserve_client.is_model_ready(front.url, "iris") is True
    assert await kserve_client.is_model_ready(front.url, "no-such-model") is False

    as_json = InferInput("input-0", list(iris_x.shape), "FP64", data=iris_x.ravel().tolist())
    as_binary = InferInput("input-0", list(iris_x.shape), "FP64")
    as_binary.set_data_from_numpy(iris_x, binary_data=True)
    for i, infer_input in enumerate([as_json, as_binary]):
        request = InferRequest("iris", [infer_input], request_id=f"k-{i}")
        response = await kserve_client.infer(front.url, request, model_name="iris")
        assert response.id == f"k-{i}"
        assert [o.name for o in response.outputs] == ["predict", "predict_proba"]
        np.testing.assert_array_equal(response.outputs[0].as_numpy(), expected["predict"])
        np.testing.assert_allclose(
            response.outputs[1].as_numpy(), expected["predict_proba"], rtol=1e-9
        )


def test_every_call_succeeds_around_the_endpoint_that_is_down(front: GatewayProcess) -> None:
    with front.client() as http:
        statuses = [http.post("/v2/models/iris/infer", json=ROW).status_code for _ in range(20)]
    assert statuses == [200] * 20
    failed = front.metric(
        "seawall_policy_events_total", target="iris:1", event="EndpointLoadFailed"
    )
    assert failed == 1.0


# --- upstreams die and come back -------------------------------------------------------------


def answers(gateway: GatewayProcess, calls: int) -> list[tuple[int, str | None, str | None]]:
    """Status, Retry-After and x-seawall-attempts of `calls` infer calls in a row."""
    with gateway.client() as http:
        responses = [http.post("/v2/models/iris/infer", json=ROW) for _ in range(calls)]
    return [
        (r.status_code, r.headers.get("retry-after"), r.headers.get("x-seawall-attempts"))
        for r in responses
    ]


def wait_for(condition: Callable[[], bool], what: str, gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + NOTICE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {NOTICE_S} s; front log:\n{gateway.log()}")
        time.sleep(0.05)


def events(gateway: GatewayProcess, event: str) -> float:
    return gateway.metric("seawall_policy_events_total", target="iris:1", event=event)


def restart_on_its_port(gateway: GatewayProcess) -> None:
    """Start a stopped gateway again on the port it had (the front's config names that port);
    `GatewayProcess.start()` would pick a new one."""
    gateway._spawn()
    if not gateway._wait_ready():
        pytest.fail(f"upstream did not restart on port {gateway.port}; log:\n{gateway.log()}")


def test_upstreams_die_and_come_back(demo_dir: Path, launch: Launch, tmp_path: Path) -> None:
    first, second = launch(demo_dir / "seawall.yaml"), launch(demo_dir / "seawall.yaml")
    retry = "    policies: {retry: {attempts: 2, base_delay_ms: 1, budget: null}}"
    front = launch(write_front(tmp_path, [first.url, second.url], retry))
    served_first_time = [(200, None, "1")]
    assert answers(front, 10) == served_first_time * 10

    # One upstream dies: its calls are retried on the other until it is out of rotation...
    second.kill()
    assert {status for status, _, _ in answers(front, 20)} == {200}
    wait_for(lambda: events(front, "EndpointUnhealthy") >= 1, "unhealthy", front)
    # ...and then every call goes to the live one at once.
    assert answers(front, 20) == served_first_time * 20

    # Both are dead: an immediate 503 that says when to retry, never a 500 or a hang.
    first.kill()
    assert answers(front, 10) == [(503, "1", "2")] * 10
    with front.client() as http:
        error = http.post("/v2/models/iris/infer", json=ROW).json()["error"]
    assert error.startswith("http://127.0.0.1:")
    assert "cannot connect" in error or "connection lost" in error

    # The first comes back on its port: the health checks put it back in rotation (and out of
    # its ejection), so every call is answered by it on the first attempt.
    healthy = events(front, "EndpointHealthy")
    restart_on_its_port(first)
    wait_for(lambda: events(front, "EndpointHealthy") > healthy, "healthy again", front)
    assert answers(front, 20) == served_first_time * 20
    with httpx.Client(base_url=front.url, timeout=CLIENT_TIMEOUT_S) as http:
        assert http.get("/v2/models/iris/ready").status_code == 200
