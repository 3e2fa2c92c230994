"""`seawall demo`: trains the demo models and writes a config that validates and serves."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_diabetes, load_iris
from typer.testing import CliRunner

from seawall.cli.demo import DEMO_CONFIG
from seawall.cli.main import app
from seawall.config import (
    CallableBackendSettings,
    OnnxBackendSettings,
    SklearnBackendSettings,
    load_config,
)
from seawall.gateway import Gateway
from seawall.types import InferenceRequest, Tensor

runner = CliRunner()

FILES = [
    "iris.joblib",
    "iris.onnx",
    "diabetes.joblib",
    "iris.profile.json",
    "iris_rules.py",
    "seawall.yaml",
]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A directory written by `seawall demo --dir`, and what the command printed."""
    directory = tmp_path_factory.mktemp("cli") / "demo"
    result = runner.invoke(app, ["demo", "--dir", str(directory)])
    assert result.exit_code == 0, result.stderr
    return directory, result.stdout


def test_demo_writes_every_file_and_says_how_to_start(written: tuple[Path, str]) -> None:
    directory, stdout = written

    assert stdout.splitlines() == [
        *(f"wrote {directory / name}" for name in FILES),
        f"start it with: seawall serve --config {directory / 'seawall.yaml'}",
    ]
    # Nothing else, in particular no temporary file left behind.
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILES)


def test_written_config_validates_and_points_at_the_written_files(
    written: tuple[Path, str],
) -> None:
    directory, _ = written
    config = load_config(directory / "seawall.yaml", environ={})

    assert [(m.name, m.version, m.backend.kind) for m in config.models] == [
        ("iris", "1", "sklearn"),
        ("iris-onnx", "1", "onnx"),
        ("diabetes", "1", "sklearn"),
        ("iris-rules", "1", "python"),
    ]
    for model in config.models:
        backend = model.backend
        if isinstance(backend, SklearnBackendSettings | OnnxBackendSettings):
            assert config.resolve_path(backend.path).is_file(), model.name
        else:
            assert isinstance(backend, CallableBackendSettings)
            assert backend.search_path is not None
            assert config.resolve_path(backend.search_path).resolve() == directory.resolve()

    check = runner.invoke(app, ["config", "check", "--strict", str(directory / "seawall.yaml")])
    assert check.exit_code == 0, check.stderr
    assert check.stderr == ""


def test_iris_joblib_and_onnx_are_the_same_classifier(written: tuple[Path, str]) -> None:
    directory, _ = written
    x, y = load_iris(return_X_y=True)
    x32 = x.astype(np.float32)
    estimator = joblib.load(directory / "iris.joblib")
    session = ort.InferenceSession(str(directory / "iris.onnx"), providers=["CPUExecutionProvider"])

    assert [i.name for i in session.get_inputs()] == ["input-0"]
    assert [o.name for o in session.get_outputs()] == ["predict", "predict_proba"]
    predict, proba = session.run(None, {"input-0": x32})
    np.testing.assert_array_equal(predict, estimator.predict(x32.astype(np.float64)))
    np.testing.assert_allclose(proba, estimator.predict_proba(x32.astype(np.float64)), atol=1e-4)
    assert np.mean(predict == y) > 0.9


def test_iris_rules_is_a_working_classifier(written: tuple[Path, str]) -> None:
    directory, _ = written
    spec = importlib.util.spec_from_file_location("demo_iris_rules", directory / "iris_rules.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x, y = load_iris(return_X_y=True)

    outputs: dict[str, Any] = module.predict({"input-0": x})

    assert list(outputs) == ["predict"]
    assert outputs["predict"].dtype == np.int64
    assert np.mean(outputs["predict"] == y) > 0.9


def test_diabetes_regressor_fits_its_data(written: tuple[Path, str]) -> None:
    directory, _ = written
    x, y = load_diabetes(return_X_y=True)

    assert joblib.load(directory / "diabetes.joblib").score(x, y) > 0.5


def test_rerun_overwrites_every_file(written: tuple[Path, str], tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    shutil.copytree(written[0], directory)
    (directory / "seawall.yaml").write_text("garbage: [", encoding="utf-8")
    (directory / "iris.joblib").write_bytes(b"not a pickle")

    result = runner.invoke(app, ["demo", "--dir", str(directory)])

    assert result.exit_code == 0, result.stderr
    text = (directory / "seawall.yaml").read_text(encoding="utf-8")
    assert text == DEMO_CONFIG.format(prefix="", search_path=".")
    assert joblib.load(directory / "iris.joblib").predict(load_iris().data[:1]).tolist() == [0]
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILES)


def test_a_failed_rerun_leaves_the_previous_files_whole(
    written: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "demo"
    shutil.copytree(written[0], directory)
    before = {name: (directory / name).read_bytes() for name in FILES}

    def dump_half(value: object, path: Path) -> None:
        Path(path).write_bytes(b"half a pickle")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(joblib, "dump", dump_half)
    result = runner.invoke(app, ["demo", "--dir", str(directory)])

    assert isinstance(result.exception, OSError)
    # Each file is written under a temporary name and renamed: never seen half-written.
    assert {name: (directory / name).read_bytes() for name in FILES} == before
    assert joblib.load(directory / "iris.joblib").predict(load_iris().data[:1]).tolist() == [0]
    # ...and the temporary file does not outlive the failure.
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILES)


async def test_the_demo_iris_is_checked_and_monitored_against_its_training_profile(
    client: httpx.AsyncClient, demo_gateway: Gateway
) -> None:
    odd = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 99.0, 0.2]}
        ]
    }
    response = await client.post("/v2/models/iris/infer", json=odd)
    assert response.status_code == 200  # flag mode: served, counted
    reference = demo_gateway.assembly.references["iris:1"]
    current = reference.current()
    assert current is not None
    assert [r.name for r in current[1].rules] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert current[1].violations(request_of(odd))[0].rule == "above_max"
    assert "iris:1" in demo_gateway.assembly.monitors


def request_of(body: dict[str, Any]) -> InferenceRequest:
    tensor = body["inputs"][0]
    data = np.array(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    return InferenceRequest("iris", [Tensor.from_numpy("input-0", data)])
