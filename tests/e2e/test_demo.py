"""A new user's first minutes: `seawall demo`, `seawall serve`, the README's requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import numpy.typing as npt
import pytest
from sklearn.datasets import load_diabetes, load_iris

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch, RunSeawall

pytestmark = pytest.mark.e2e

#: The README's first request, byte for byte.
README_BODY = (
    b'{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}'
)
#: The README's example of a bad request, and the error it documents.
README_BAD_BODY = b'{"inputs":[{"name":"input-0","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}'
README_BAD_ERROR = (
    "inputs[0].shape: input 'input-0' of model 'iris' takes shape [-1, 4], got [1, 3]"
)
#: Rows sent one request at a time (the whole dataset goes in one request elsewhere).
SAMPLE_ROWS = (0, 1, 49, 50, 70, 77, 83, 99, 100, 119, 133, 149)


@pytest.fixture(scope="module")
def user_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `seawall demo --dir DIR` (the installed script) writes."""
    script = Path(sys.executable).with_name("seawall")
    assert script.is_file(), f"the `seawall` script is not installed next to {sys.executable}"
    directory = tmp_path_factory.mktemp("user") / "demo"
    done = subprocess.run(
        [str(script), "demo", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"start it with: seawall serve --config {directory / 'seawall.yaml'}" in done.stdout
    return directory


@pytest.fixture(scope="module")
def gateway(user_demo: Path, launch_shared: Launch) -> GatewayProcess:
    gateway = launch_shared(user_demo / "seawall.yaml")
    gateway.assert_all_ready()
    return gateway


@pytest.fixture(scope="module")
def iris_x() -> npt.NDArray[np.float32]:
    x: npt.NDArray[np.float32] = load_iris().data.astype(np.float32)
    return x


def infer(gateway: GatewayProcess, model: str, x: npt.NDArray[Any], datatype: str) -> Any:
    """POST one JSON request with `x` as input-0; the decoded response (status checked)."""
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(x.shape),
                "datatype": datatype,
                "data": x.reshape(-1).tolist(),
            }
        ]
    }
    with gateway.client() as http:
        response = http.post(f"/v2/models/{model}/infer", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def outputs(document: Any) -> dict[str, npt.NDArray[Any]]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in document["outputs"]}


def test_readme_request_returns_class_0(gateway: GatewayProcess) -> None:
    with gateway.client() as http:
        response = http.post(
            "/v2/models/iris/infer",
            content=README_BODY,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]
    document = response.json()
    assert (document["model_name"], document["model_version"]) == ("iris", "1")
    by_name = {o["name"]: o for o in document["outputs"]}
    assert by_name["predict"] == {"name": "predict", "datatype": "INT64", "shape": [1], "data": [0]}
    proba = by_name["predict_proba"]
    assert (proba["datatype"], proba["shape"]) == ("FP64", [1, 3])
    assert proba["data"][0] > 0.9
    assert sum(proba["data"]) == pytest.approx(1.0)


def test_onnx_and_joblib_agree_on_every_iris_row_in_one_request(
    gateway: GatewayProcess, user_demo: Path, iris_x: npt.NDArray[np.float32]
) -> None:
    joblib_out = outputs(infer(gateway, "iris", iris_x, "FP32"))
    onnx_out = outputs(infer(gateway, "iris-onnx", iris_x, "FP32"))

    assert joblib_out["predict"].shape == onnx_out["predict"].shape == (150,)
    np.testing.assert_array_equal(onnx_out["predict"], joblib_out["predict"])
    np.testing.assert_allclose(onnx_out["predict_proba"], joblib_out["predict_proba"], atol=1e-4)
    # And both are the estimator the demo wrote, run here on the same (FP32) values.
    estimator = joblib.load(user_demo / "iris.joblib")
    np.testing.assert_array_equal(
        joblib_out["predict"], estimator.predict(iris_x.astype(np.float64))
    )
    assert np.mean(joblib_out["predict"] == load_iris().target) > 0.9


def test_onnx_and_joblib_agree_row_by_row(
    gateway: GatewayProcess, iris_x: npt.NDArray[np.float32]
) -> None:
    whole = outputs(infer(gateway, "iris", iris_x, "FP32"))["predict"]
    for row in SAMPLE_ROWS:
        x = iris_x[row : row + 1]
        from_joblib = outputs(infer(gateway, "iris", x, "FP32"))["predict"]
        from_onnx = outputs(infer(gateway, "iris-onnx", x, "FP32"))["predict"]
        assert from_joblib.tolist() == from_onnx.tolist() == [whole[row]], f"row {row}"


def test_diabetes_returns_a_plausible_float_per_row(
    gateway: GatewayProcess, user_demo: Path
) -> None:
    x, y = load_diabetes(return_X_y=True)
    x, y = x[:150], y[:150]
    document = infer(gateway, "diabetes", x, "FP64")
    (predict,) = document["outputs"]
    assert (predict["name"], predict["datatype"], predict["shape"]) == ("predict", "FP64", [150])
    values = np.asarray(predict["data"])
    assert np.all(np.isfinite(values))
    assert values.min() > 0.5 * y.min()
    assert values.max() < 1.5 * y.max()
    assert np.corrcoef(values, y)[0, 1] > 0.7  # a fitted model, not noise
    np.testing.assert_allclose(values, joblib.load(user_demo / "diabetes.joblib").predict(x))


def test_iris_rules_answers_with_its_petal_rule(
    gateway: GatewayProcess, iris_x: npt.NDArray[np.float32]
) -> None:
    x = iris_x.astype(np.float64)
    document = infer(gateway, "iris-rules", x, "FP64")
    predict = outputs(document)["predict"]
    expected = np.where(x[:, 2] < 2.5, 0, np.where(x[:, 3] < 1.75, 1, 2))
    np.testing.assert_array_equal(predict, expected)
    assert np.mean(predict == load_iris().target) > 0.9


def test_metrics_count_the_iris_requests(
    gateway: GatewayProcess, iris_x: npt.NDArray[np.float32]
) -> None:
    labels = {"model": "iris", "version": "1", "status": "200"}
    before = gateway.metric("seawall_requests_total", **labels)
    for _ in range(3):
        infer(gateway, "iris", iris_x[:2], "FP32")
    assert gateway.metric("seawall_requests_total", **labels) == before + 3
    assert gateway.metric("seawall_model_ready", model="iris", version="1", state="READY") == 1.0


def test_wrong_shape_gets_400_naming_the_field(gateway: GatewayProcess) -> None:
    with gateway.client() as http:
        response = http.post(
            "/v2/models/iris/infer",
            content=README_BAD_BODY,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json() == {"error": README_BAD_ERROR}
    labels = {"model": "iris", "version": "1", "status": "400"}
    assert gateway.metric("seawall_requests_total", **labels) >= 1


def test_config_check_accepts_the_generated_file(user_demo: Path, seawall_cli: RunSeawall) -> None:
    done = seawall_cli("config", "check", str(user_demo / "seawall.yaml"))
    assert done.returncode == 0, done.stderr
    assert "4 model(s): iris:1, iris-onnx:1, diabetes:1, iris-rules:1" in done.stdout
    assert "warning" not in done.stderr


def test_config_check_refuses_an_unknown_field_with_its_path(
    user_demo: Path, tmp_path: Path, seawall_cli: RunSeawall
) -> None:
    text = (user_demo / "seawall.yaml").read_text(encoding="utf-8")
    broken = text.replace("  shutdown_grace_s: 30\n", "  shutdown_grace_s: 30\n  colour: blue\n")
    assert broken != text
    path = tmp_path / "broken.yaml"
    path.write_text(broken, encoding="utf-8")

    done = seawall_cli("config", "check", str(path))

    assert done.returncode == 2
    assert "server.colour: unknown field" in done.stderr
    assert done.stdout == ""
