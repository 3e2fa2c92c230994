"""assemble: configuration turned into backends, pipelines and a model repository."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

from seawall.assemble import assemble
from seawall.backends import (
    CallableBackend,
    MockBackend,
    ModelRepository,
    ModelState,
    OnnxBackend,
    SklearnBackend,
)
from seawall.clock import FakeClock
from seawall.config import SeawallConfig, parse_config
from seawall.context import CallContext
from seawall.errors import BackendUnavailableError, InvalidInputError
from seawall.policies import InputRejected
from seawall.types import InferenceRequest, InferenceResponse, Tensor

SETOSA = [[5.1, 3.5, 1.4, 0.2]]


def request(model: str, rows: list[list[float]], dtype: type = np.float32) -> InferenceRequest:
    return InferenceRequest(
        model=model, inputs=[Tensor.from_numpy("input-0", np.asarray(rows, dtype=dtype))]
    )


async def call(repository: ModelRepository, req: InferenceRequest) -> InferenceResponse:
    return await repository.get(req.model).handler(req, CallContext.new())


def config(text: str, base_dir: Path) -> SeawallConfig:
    return parse_config(text, base_dir=base_dir, environ={})


def test_demo_config_assembles_four_models_with_their_backends(
    demo_config: SeawallConfig, demo_dir: Path
) -> None:
    repository = assemble(demo_config)

    assert len(repository) == 4
    kinds = {m.name: type(m.backend) for m in repository}
    assert kinds == {
        "iris": SklearnBackend,
        "iris-onnx": OnnxBackend,
        "diabetes": SklearnBackend,
        "iris-rules": CallableBackend,
    }
    assert all(m.version == "1" and m.state is ModelState.LOADING for m in repository)
    for name, file in [("iris", "iris.joblib"), ("iris-onnx", "iris.onnx")]:
        backend = repository.get(name).backend
        assert isinstance(backend, SklearnBackend | OnnxBackend)
        assert backend.path.is_absolute()
        assert backend.path == demo_dir.resolve() / file


def test_each_pipeline_shows_validation_then_the_backend(demo_config: SeawallConfig) -> None:
    repository = assemble(demo_config)

    assert {m.name: repr(m.handler) for m in repository} == {
        "iris": "Pipeline(iris:1: validation → sklearn:iris.joblib)",
        "iris-onnx": "Pipeline(iris-onnx:1: validation → onnx:iris.onnx)",
        "diabetes": "Pipeline(diabetes:1: validation → sklearn:diabetes.joblib)",
        "iris-rules": "Pipeline(iris-rules:1: validation → python:iris_rules:predict)",
    }


async def test_demo_models_load_and_answer_through_their_pipelines(
    demo_config: SeawallConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rules module must be found through the resolved search_path, not an earlier import.
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "iris_rules", raising=False)
    repository = assemble(demo_config)
    await repository.load_all()
    try:
        names = ("iris", "iris-onnx", "diabetes", "iris-rules")
        ready = (ModelState.READY, "")
        assert {m.name: (m.state, m.reason) for m in repository} == dict.fromkeys(names, ready)
        for name in ("iris", "iris-onnx", "iris-rules"):
            response = await call(repository, request(name, SETOSA))
            predict = response.outputs[0]
            assert (predict.name, predict.data.tolist()) == ("predict", [0]), name
        diabetes = await call(repository, request("diabetes", [[0.0] * 10], np.float64))
        assert diabetes.outputs[0].shape == (1,)
    finally:
        await repository.close_all()


MOCKS = """
models:
  - name: slow
    backend: {kind: mock, latency_ms: 250}
  - name: flaky
    backend: {kind: mock, error_rate: 1.0}
  - name: sometimes
    backend: {kind: mock, error_rate: 0.5, seed: 42}
"""


async def test_mock_model_from_config_has_its_latency_on_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    repository = assemble(config(MOCKS, tmp_path), clock=clock)
    assert isinstance(repository.get("slow").backend, MockBackend)
    await repository.load_all()

    task = asyncio.create_task(call(repository, request("slow", [[1.0, 2.0]])))
    for _ in range(5):
        await asyncio.sleep(0)
    clock.advance(0.249)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()

    clock.advance(0.001)
    response = await task
    assert response.outputs[0].data.tolist() == [[1.0, 2.0]]


async def test_mock_model_from_config_fails_as_an_unavailable_backend(tmp_path: Path) -> None:
    repository = assemble(config(MOCKS, tmp_path), clock=FakeClock())
    await repository.load_all()

    with pytest.raises(BackendUnavailableError, match="model 'flaky': injected failure"):
        await call(repository, request("flaky", [[1.0]]))


async def outcomes(repository: ModelRepository, model: str, calls: int) -> list[bool]:
    failed = []
    for _ in range(calls):
        try:
            await call(repository, request(model, [[1.0]]))
        except BackendUnavailableError:
            failed.append(True)
        else:
            failed.append(False)
    return failed


async def test_mock_error_rate_and_seed_from_config(tmp_path: Path) -> None:
    first = assemble(config(MOCKS, tmp_path), clock=FakeClock())
    second = assemble(config(MOCKS, tmp_path), clock=FakeClock())
    await first.load_all()
    await second.load_all()

    drawn = await outcomes(first, "sometimes", 400)

    assert drawn == await outcomes(second, "sometimes", 400)  # same seed, same failures
    assert 160 <= sum(drawn) <= 240  # 0.5 ± 4 standard deviations


def iris_onnx_twice(demo_dir: Path) -> str:
    return f"""
models:
  - name: strict
    validation: {{convert_datatypes: false}}
    backend: {{kind: onnx, path: {demo_dir / "iris.onnx"}}}
  - name: lenient
    backend: {{kind: onnx, path: iris.onnx}}
"""


async def test_convert_datatypes_false_refuses_fp64_for_the_fp32_onnx_model(
    demo_dir: Path,
) -> None:
    events: list[object] = []
    repository = assemble(config(iris_onnx_twice(demo_dir), demo_dir), on_event=events.append)
    await repository.load_all()
    try:
        with pytest.raises(InvalidInputError) as raised:
            await call(repository, request("strict", SETOSA, np.float64))
        assert raised.value.field == "inputs[0].datatype"
        assert raised.value.reason == "input 'input-0' of model 'strict' takes FP32, got FP64"
        assert events == [InputRejected("strict", "inputs[0].datatype", raised.value.reason)]

        exact = await call(repository, request("strict", SETOSA, np.float32))
        converted = await call(repository, request("lenient", SETOSA, np.float64))
        assert exact.outputs[0].data.tolist() == converted.outputs[0].data.tolist() == [0]
    finally:
        await repository.close_all()


def test_default_version_comes_from_config(tmp_path: Path) -> None:
    text = """
models:
  - name: m
    version: "1"
    backend: {kind: mock}
  - name: m
    version: "2"
    default: true
    backend: {kind: mock}
"""
    repository = assemble(config(text, tmp_path))
    assert repository.versions("m") == ("1", "2")
    assert repository.default_version("m") == "2"
    assert repr(repository.get("m", "1").handler) == "Pipeline(m:1: validation → mock:m)"
