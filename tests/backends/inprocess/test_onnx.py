"""OnnxBackend: signatures read from the graph, predictions, ONNX Runtime errors translated."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper
from sklearn.datasets import load_iris

from seawall.backends.inprocess.onnx import OnnxBackend
from seawall.backends.repository import ModelRepository, ModelState, ServedModel
from seawall.context import CallContext
from seawall.errors import InvalidInputError
from seawall.types import Datatype, InferenceRequest, RequestedOutput, Tensor, TensorSpec


def request(
    x: npt.ArrayLike, *, name: str = "input-0", outputs: list[str] | None = None
) -> InferenceRequest:
    return InferenceRequest(
        model="m",
        inputs=[Tensor.from_numpy(name, np.asarray(x))],
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
    )


async def load(path: Path, **kwargs: Any) -> OnnxBackend:
    backend = OnnxBackend(path, **kwargs)
    await backend.load()
    return backend


def write_model(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # old enough for any ONNX Runtime this project supports
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


async def test_iris_metadata(demo_dir: Path) -> None:
    backend = await load(demo_dir / "iris.onnx")
    try:
        metadata = backend.metadata()
    finally:
        await backend.close()
    assert (metadata.name, metadata.platform) == ("iris", "onnxruntime")
    assert metadata.inputs == (TensorSpec("input-0", Datatype.FP32, (-1, 4)),)
    assert metadata.outputs == (
        TensorSpec("predict", Datatype.INT64, (-1,)),
        TensorSpec("predict_proba", Datatype.FP32, (-1, 3)),
    )
    assert backend.name == "onnx:iris.onnx"


async def test_predictions_on_iris_equal_the_joblib_models(demo_dir: Path) -> None:
    estimator = joblib.load(demo_dir / "iris.joblib")
    x, _ = load_iris(return_X_y=True)
    backend = await load(demo_dir / "iris.onnx")
    try:
        response = await backend.infer(request(x.astype(np.float32)), CallContext.new())
    finally:
        await backend.close()

    predict, proba = response.outputs
    assert (predict.name, predict.datatype, predict.shape) == ("predict", Datatype.INT64, (150,))
    np.testing.assert_array_equal(predict.data, estimator.predict(x))
    assert (proba.name, proba.datatype, proba.shape) == ("predict_proba", Datatype.FP32, (150, 3))
    np.testing.assert_allclose(proba.data, estimator.predict_proba(x), atol=1e-5)


async def test_outputs_filter_runs_only_the_requested_output(demo_dir: Path) -> None:
    backend = await load(demo_dir / "iris.onnx")
    try:
        response = await backend.infer(
            request(np.array([[6.7, 3.0, 5.2, 2.3]], np.float32), outputs=["predict"]),
            CallContext.new(),
        )
    finally:
        await backend.close()
    assert [(t.name, t.data.tolist()) for t in response.outputs] == [("predict", [2])]


async def test_wrong_feature_count_is_invalid_input(demo_dir: Path) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    backend = await load(demo_dir / "iris.onnx")
    try:
        with pytest.raises(InvalidInputError) as raised:
            await backend.infer(request(np.ones((2, 3), np.float32)), CallContext.new())
    finally:
        await backend.close()
    assert raised.value.field == "inputs"
    assert raised.value.reason.startswith("the model rejected the input: ")
    assert "invalid dimensions" in raised.value.reason
    assert isinstance(raised.value.__cause__, InvalidArgument)


async def test_wrong_element_type_is_invalid_input(demo_dir: Path) -> None:
    backend = await load(demo_dir / "iris.onnx")
    try:
        with pytest.raises(InvalidInputError, match=r"tensor\(double\)"):
            await backend.infer(request(np.ones((1, 4), np.float64)), CallContext.new())
    finally:
        await backend.close()


async def test_zipmap_model_fails_to_load_with_a_hint(tmp_path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    classifier = LogisticRegression().fit(x, [0, 0, 1, 1])
    converted = convert_sklearn(
        classifier, initial_types=[("x", FloatTensorType([None, 2]))], target_opset=17
    )
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(converted.SerializeToString())

    backend = OnnxBackend(path)
    with pytest.raises(TypeError, match="zipmap=False") as raised:
        await backend.load()
    assert "output 'output_probability'" in str(raised.value)
    assert not backend.ready()

    repository = ModelRepository()  # served alongside others, it is reported with the reason
    model = ServedModel("zipmap", "1", backend, backend.infer)
    repository.add(model)
    await repository.load_all()
    assert model.state is ModelState.FAILED
    assert model.reason.startswith("TypeError: ")
    assert "zipmap=False" in model.reason


async def test_missing_file_fails_to_load_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"
    backend = OnnxBackend(path)
    with pytest.raises(FileNotFoundError, match=re.escape(f"model file not found: {path}")):
        await backend.load()
    assert not backend.ready()
    await backend.close()


async def test_corrupt_file_fails_to_load_naming_the_path(tmp_path: Path) -> None:
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidProtobuf

    path = tmp_path / "broken.onnx"
    path.write_bytes(b"definitely not protobuf")
    backend = OnnxBackend(path)
    with pytest.raises(InvalidProtobuf, match=re.escape(f"Load model from {path} failed")):
        await backend.load()
    assert not backend.ready()


async def test_string_tensors_round_trip_as_bytes(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "identity",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, [None])],
    )
    backend = await load(write_model(graph, tmp_path / "strings.onnx"))
    try:
        metadata = backend.metadata()
        sent = Tensor.from_numpy("text", np.array([b"setosa", "virgínica".encode(), b""]))
        response = await backend.infer(
            InferenceRequest(model="strings", inputs=[sent]), CallContext.new()
        )
    finally:
        await backend.close()

    assert metadata.inputs == (TensorSpec("text", Datatype.BYTES, (-1,)),)
    assert metadata.outputs == (TensorSpec("same", Datatype.BYTES, (-1,)),)
    [out] = response.outputs
    assert (out.name, out.datatype, out.shape) == ("same", Datatype.BYTES, (3,))
    assert out.data.tolist() == [b"setosa", "virgínica".encode(), b""]


async def test_fixed_and_symbolic_dimensions(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["b"])],
        "dims",
        [helper.make_tensor_value_info("a", TensorProto.INT32, ["batch", 2, 3])],
        [helper.make_tensor_value_info("b", TensorProto.INT32, ["batch", 2, 3])],
    )
    backend = await load(write_model(graph, tmp_path / "dims.onnx"))
    try:
        metadata = backend.metadata()
        data = np.arange(12, dtype=np.int32).reshape(2, 2, 3)
        response = await backend.infer(request(data, name="a"), CallContext.new())
    finally:
        await backend.close()
    assert metadata.inputs == (TensorSpec("a", Datatype.INT32, (-1, 2, 3)),)
    assert response.outputs[0].datatype is Datatype.INT32
    np.testing.assert_array_equal(response.outputs[0].data, data)
