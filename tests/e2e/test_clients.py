"""Standard OIP v2 clients (Triton's and KServe's), unmodified, against a real gateway process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import joblib
import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

import seawall

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch

pytestmark = pytest.mark.e2e

DEMO_MODELS = ["iris", "iris-onnx", "diabetes", "iris-rules"]
WRONG_SHAPE_ERROR = (
    "inputs[0].shape: input 'input-0' of model 'iris' takes shape [-1, 4], got [1, 3]"
)
#: Seconds any client call may take.
CLIENT_TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def gateway(demo_dir: Path, launch_shared: Launch) -> GatewayProcess:
    gateway = launch_shared(demo_dir / "seawall.yaml")
    gateway.assert_all_ready()
    return gateway


@pytest.fixture(scope="module")
def iris_x() -> npt.NDArray[np.float64]:
    x: npt.NDArray[np.float64] = load_iris().data
    return x


@pytest.fixture(scope="module")
def expected(demo_dir: Path, iris_x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[Any]]:
    """The demo's iris estimator run here, on the same rows the clients send."""
    estimator = joblib.load(demo_dir / "iris.joblib")
    return {"predict": estimator.predict(iris_x), "predict_proba": estimator.predict_proba(iris_x)}


@pytest.fixture(scope="module")
def triton_client(gateway: GatewayProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(
        f"127.0.0.1:{gateway.port}",
        connection_timeout=CLIENT_TIMEOUT_S,
        network_timeout=CLIENT_TIMEOUT_S,
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def kserve_client() -> AsyncIterator[InferenceRESTClient]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=CLIENT_TIMEOUT_S))
    try:
        yield client
    finally:
        await client.close()


def assert_iris_outputs(
    got: dict[str, npt.NDArray[Any] | None], expected: dict[str, npt.NDArray[Any]]
) -> None:
    for name, value in got.items():
        assert value is not None, f"output {name!r} missing"
        assert value.shape == expected[name].shape, name
        if name == "predict":
            np.testing.assert_array_equal(value, expected[name])
        else:
            np.testing.assert_allclose(value, expected[name], rtol=1e-9)


# Triton's client (tritonclient.http)


def test_triton_health_and_server_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live() is True
    assert triton_client.is_server_ready() is True
    metadata = triton_client.get_server_metadata()
    assert metadata["name"] == "seawall"
    assert metadata["version"] == seawall.__version__
    assert "binary_tensor_data" in metadata["extensions"]


def test_triton_model_metadata_readiness_and_index(
    triton_client: triton.InferenceServerClient,
) -> None:
    metadata = triton_client.get_model_metadata("iris")
    assert metadata["name"] == "iris"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert triton_client.is_model_ready("iris") is True
    assert triton_client.is_model_ready("iris", model_version="1") is True
    assert triton_client.is_model_ready("no-such-model") is False

    index = triton_client.get_model_repository_index()
    assert [(m["name"], m["version"], m["state"]) for m in index] == [
        (name, "1", "READY") for name in DEMO_MODELS
    ]


@pytest.mark.parametrize("binary_input", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize(
    "requested",
    [
        None,
        {"predict": True, "predict_proba": True},
        {"predict": False, "predict_proba": False},
        {"predict": True, "predict_proba": False},
        {"predict": False},
    ],
    ids=["no-outputs", "binary-out", "json-out", "mixed-out", "only-predict"],
)
def test_triton_infer_matches_the_estimator(
    triton_client: triton.InferenceServerClient,
    iris_x: npt.NDArray[np.float64],
    expected: dict[str, npt.NDArray[Any]],
    binary_input: bool,
    requested: dict[str, bool] | None,
) -> None:
    inputs = [triton.InferInput("input-0", list(iris_x.shape), "FP64")]
    inputs[0].set_data_from_numpy(iris_x, binary_data=binary_input)
    outputs = (
        None
        if requested is None
        else [triton.InferRequestedOutput(n, binary_data=b) for n, b in requested.items()]
    )

    result = triton_client.infer("iris", inputs, outputs=outputs, request_id="req-7")

    names = ["predict", "predict_proba"] if requested is None else list(requested)
    response = result.get_response()
    assert response["id"] == "req-7"
    assert [o["name"] for o in response["outputs"]] == names
    for output in response["outputs"]:
        # No outputs named: the client asks for binary_data_output, so all come back binary.
        binary = True if requested is None else requested[output["name"]]
        assert ("binary_data_size" in output.get("parameters", {})) is binary
        assert ("data" in output) is not binary
    assert_iris_outputs({name: result.as_numpy(name) for name in names}, expected)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_triton_compressed_request(
    triton_client: triton.InferenceServerClient,
    iris_x: npt.NDArray[np.float64],
    expected: dict[str, npt.NDArray[Any]],
    algorithm: str,
) -> None:
    inputs = [triton.InferInput("input-0", list(iris_x.shape), "FP64")]
    inputs[0].set_data_from_numpy(iris_x, binary_data=True)

    result = triton_client.infer("iris", inputs, request_compression_algorithm=algorithm)

    assert_iris_outputs({"predict": result.as_numpy("predict")}, expected)


def test_triton_infer_on_the_onnx_model_in_fp32(
    triton_client: triton.InferenceServerClient,
    iris_x: npt.NDArray[np.float64],
    expected: dict[str, npt.NDArray[Any]],
) -> None:
    inputs = [triton.InferInput("input-0", list(iris_x.shape), "FP32")]
    inputs[0].set_data_from_numpy(iris_x.astype(np.float32), binary_data=True)

    result = triton_client.infer("iris-onnx", inputs)

    proba = result.as_numpy("predict_proba")
    assert proba is not None
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, expected["predict_proba"], atol=1e-4)
    np.testing.assert_array_equal(result.as_numpy("predict"), expected["predict"])


def test_triton_surfaces_our_error_message(triton_client: triton.InferenceServerClient) -> None:
    inputs = [triton.InferInput("input-0", [1, 3], "FP64")]
    inputs[0].set_data_from_numpy(np.ones((1, 3)), binary_data=True)

    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer("iris", inputs)

    assert caught.value.status() == "400"
    assert caught.value.message() == WRONG_SHAPE_ERROR


def test_triton_unknown_model_is_an_error_with_our_message(
    triton_client: triton.InferenceServerClient,
) -> None:
    inputs = [triton.InferInput("input-0", [1, 4], "FP64")]
    inputs[0].set_data_from_numpy(np.ones((1, 4)), binary_data=True)

    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer("no-such-model", inputs)

    assert caught.value.status() == "404"
    assert caught.value.message() == "model 'no-such-model' not found"


# KServe's client (kserve.InferenceRESTClient, asynchronous)


async def test_kserve_health(gateway: GatewayProcess, kserve_client: InferenceRESTClient) -> None:
    assert await kserve_client.is_server_live(gateway.url) is True
    assert await kserve_client.is_server_ready(gateway.url) is True
    assert await kserve_client.is_model_ready(gateway.url, "iris") is True
    assert await kserve_client.is_model_ready(gateway.url, "no-such-model") is False


async def test_kserve_infer_with_json_data(
    gateway: GatewayProcess,
    kserve_client: InferenceRESTClient,
    iris_x: npt.NDArray[np.float64],
    expected: dict[str, npt.NDArray[Any]],
) -> None:
    data = iris_x.reshape(-1).tolist()
    request = InferRequest(
        "iris", [InferInput("input-0", list(iris_x.shape), "FP64", data=data)], request_id="k-1"
    )

    response = await kserve_client.infer(gateway.url, request, model_name="iris")

    assert response.id == "k-1"
    assert response.model_name == "iris"
    assert_iris_outputs({o.name: o.as_numpy() for o in response.outputs}, expected)
    assert [o.name for o in response.outputs] == ["predict", "predict_proba"]


@pytest.mark.parametrize("binary_output", [False, True], ids=["json-out", "binary-out"])
async def test_kserve_infer_with_binary_data(
    gateway: GatewayProcess,
    kserve_client: InferenceRESTClient,
    iris_x: npt.NDArray[np.float64],
    expected: dict[str, npt.NDArray[Any]],
    binary_output: bool,
) -> None:
    infer_input = InferInput("input-0", list(iris_x.shape), "FP64")
    infer_input.set_data_from_numpy(iris_x, binary_data=True)
    parameters = {"binary_data_output": True} if binary_output else None
    request = InferRequest("iris", [infer_input], parameters=parameters)

    response = await kserve_client.infer(gateway.url, request, model_name="iris")

    assert_iris_outputs({o.name: o.as_numpy() for o in response.outputs}, expected)
    assert [o.name for o in response.outputs] == ["predict", "predict_proba"]


async def test_kserve_requested_output_only(
    gateway: GatewayProcess,
    kserve_client: InferenceRESTClient,
    iris_x: npt.NDArray[np.float64],
    expected: dict[str, npt.NDArray[Any]],
) -> None:
    infer_input = InferInput("input-0", list(iris_x.shape), "FP64")
    infer_input.set_data_from_numpy(iris_x, binary_data=True)
    wanted = [RequestedOutput("predict", parameters={"binary_data": True})]
    request = InferRequest("iris", [infer_input], request_outputs=wanted)

    response = await kserve_client.infer(gateway.url, request, model_name="iris")

    assert [o.name for o in response.outputs] == ["predict"]
    assert_iris_outputs({"predict": response.outputs[0].as_numpy()}, expected)


async def test_kserve_unknown_model_raises_with_our_error(
    gateway: GatewayProcess, kserve_client: InferenceRESTClient
) -> None:
    request = InferRequest("no-such-model", [InferInput("input-0", [1, 4], "FP64", [1.0] * 4)])

    with pytest.raises(httpx.HTTPStatusError) as caught:
        await kserve_client.infer(gateway.url, request, model_name="no-such-model")

    assert caught.value.response.status_code == 404
    assert "model 'no-such-model' not found" in str(caught.value)


async def test_kserve_wrong_shape_raises_with_our_error(
    gateway: GatewayProcess, kserve_client: InferenceRESTClient
) -> None:
    request = InferRequest("iris", [InferInput("input-0", [1, 3], "FP64", [1.0, 2.0, 3.0])])

    with pytest.raises(httpx.HTTPStatusError) as caught:
        await kserve_client.infer(gateway.url, request, model_name="iris")

    assert caught.value.response.status_code == 400
    assert str(caught.value).startswith(WRONG_SHAPE_ERROR)
