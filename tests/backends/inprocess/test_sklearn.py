"""SklearnBackend: signatures read from fitted estimators, predictions, and load failures."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from seawall.backends.inprocess.sklearn import SklearnBackend
from seawall.context import CallContext
from seawall.errors import InvalidInputError
from seawall.types import Datatype, InferenceRequest, RequestedOutput, Tensor, TensorSpec

X_SMALL = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 2.0], [2.0, 3.0]])


def request(
    x: npt.ArrayLike, *, name: str = "input-0", outputs: list[str] | None = None
) -> InferenceRequest:
    return InferenceRequest(
        model="m",
        inputs=[Tensor.from_numpy(name, np.asarray(x, dtype=np.float64))],
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
    )


async def load(path: Path, **kwargs: Any) -> SklearnBackend:
    backend = SklearnBackend(path, **kwargs)
    await backend.load()
    return backend


def dump(model: object, path: Path) -> Path:
    joblib.dump(model, path)
    return path


async def test_iris_metadata(demo_dir: Path) -> None:
    backend = await load(demo_dir / "iris.joblib")
    try:
        metadata = backend.metadata()
        assert (metadata.name, metadata.platform) == ("iris", "sklearn")
        assert metadata.inputs == (TensorSpec("input-0", Datatype.FP64, (-1, 4)),)
        assert metadata.outputs == (
            TensorSpec("predict", Datatype.INT64, (-1,)),
            TensorSpec("predict_proba", Datatype.FP64, (-1, 3)),
        )
        assert backend.name == "sklearn:iris.joblib"
    finally:
        await backend.close()


async def test_iris_predictions_equal_the_estimators_own(demo_dir: Path) -> None:
    estimator = joblib.load(demo_dir / "iris.joblib")
    x, _ = load_iris(return_X_y=True)
    backend = await load(demo_dir / "iris.joblib")
    try:
        response = await backend.infer(request(x), CallContext.new())
    finally:
        await backend.close()

    predict, proba = response.outputs
    assert (predict.name, predict.datatype, predict.shape) == ("predict", Datatype.INT64, (150,))
    np.testing.assert_array_equal(predict.data, estimator.predict(x))
    assert (proba.name, proba.shape) == ("predict_proba", (150, 3))
    np.testing.assert_array_equal(proba.data, estimator.predict_proba(x))
    assert set(predict.data.tolist()) == {0, 1, 2}


async def test_diabetes_regressor_has_only_predict(demo_dir: Path) -> None:
    estimator = joblib.load(demo_dir / "diabetes.joblib")
    rows = np.linspace(-0.1, 0.1, 30).reshape(3, 10)
    backend = await load(demo_dir / "diabetes.joblib")
    try:
        metadata = backend.metadata()
        response = await backend.infer(request(rows), CallContext.new())
    finally:
        await backend.close()

    assert metadata.inputs == (TensorSpec("input-0", Datatype.FP64, (-1, 10)),)
    assert metadata.outputs == (TensorSpec("predict", Datatype.FP64, (-1,)),)
    [predict] = response.outputs
    np.testing.assert_array_equal(predict.data, estimator.predict(rows))


async def test_outputs_filter_skips_predict_proba(demo_dir: Path) -> None:
    backend = await load(demo_dir / "iris.joblib")
    try:
        response = await backend.infer(
            request([[5.1, 3.5, 1.4, 0.2]], outputs=["predict_proba"]), CallContext.new()
        )
    finally:
        await backend.close()
    assert [t.name for t in response.outputs] == ["predict_proba"]
    assert response.outputs[0].data.sum() == pytest.approx(1.0)


async def test_string_labels_make_predict_bytes(tmp_path: Path) -> None:
    labels = np.array(["cat", "cat", "dog", "dog", "eel", "eel"])
    path = dump(DecisionTreeClassifier(random_state=0).fit(X_SMALL, labels), tmp_path / "s.joblib")
    backend = await load(path)
    try:
        metadata = backend.metadata()
        response = await backend.infer(request(X_SMALL), CallContext.new())
    finally:
        await backend.close()

    assert metadata.outputs[0] == TensorSpec("predict", Datatype.BYTES, (-1,))
    assert metadata.outputs[1] == TensorSpec("predict_proba", Datatype.FP64, (-1, 3))
    predict = response.outputs[0]
    assert predict.datatype is Datatype.BYTES
    assert predict.data.tolist() == [b"cat", b"cat", b"dog", b"dog", b"eel", b"eel"]


async def test_classifier_without_probabilities_has_no_predict_proba(tmp_path: Path) -> None:
    labels = np.array([0, 0, 1, 1, 1, 1])
    # SVC without probability estimates (scikit-learn 1.9 deprecates passing probability=False).
    path = dump(SVC().fit(X_SMALL, labels), tmp_path / "svc.joblib")
    backend = await load(path)
    try:
        metadata = backend.metadata()
        response = await backend.infer(request(X_SMALL), CallContext.new())
    finally:
        await backend.close()

    assert [s.name for s in metadata.outputs] == ["predict"]
    assert [t.name for t in response.outputs] == ["predict"]


@pytest.mark.parametrize(
    "estimator",
    [DecisionTreeRegressor(random_state=0), LinearRegression()],
    ids=["n_outputs_", "coef_"],
)
async def test_multi_output_regressor_predicts_a_matrix(estimator: Any, tmp_path: Path) -> None:
    targets = np.c_[X_SMALL.sum(axis=1), X_SMALL[:, 0] - X_SMALL[:, 1], X_SMALL[:, 1]]
    path = dump(estimator.fit(X_SMALL, targets), tmp_path / "multi.joblib")
    backend = await load(path)
    try:
        metadata = backend.metadata()
        response = await backend.infer(request(X_SMALL), CallContext.new())
    finally:
        await backend.close()

    assert metadata.outputs == (TensorSpec("predict", Datatype.FP64, (-1, 3)),)
    assert response.outputs[0].shape == (6, 3)
    np.testing.assert_allclose(response.outputs[0].data, targets, atol=1e-9)


async def test_single_output_linear_regressor_predicts_a_vector(tmp_path: Path) -> None:
    path = dump(LinearRegression().fit(X_SMALL, X_SMALL.sum(axis=1)), tmp_path / "lr.joblib")
    backend = await load(path)
    try:
        assert backend.metadata().outputs == (TensorSpec("predict", Datatype.FP64, (-1,)),)
        response = await backend.infer(request(X_SMALL[:2]), CallContext.new())
    finally:
        await backend.close()
    assert response.outputs[0].shape == (2,)


async def test_input_name_and_datatype_are_configurable(demo_dir: Path) -> None:
    backend = await load(demo_dir / "iris.joblib", input_name="x", input_datatype=Datatype.FP32)
    try:
        assert backend.metadata().inputs == (TensorSpec("x", Datatype.FP32, (-1, 4)),)
        response = await backend.infer(
            request([[6.7, 3.0, 5.2, 2.3]], name="x", outputs=["predict"]), CallContext.new()
        )
    finally:
        await backend.close()
    assert response.outputs[0].data.tolist() == [2]


async def test_zero_rows_give_empty_outputs_of_the_signature(demo_dir: Path) -> None:
    # scikit-learn refuses to predict on 0 rows; an empty batch is still a valid request.
    backend = await load(demo_dir / "iris.joblib")
    try:
        response = await backend.infer(request(np.empty((0, 4))), CallContext.new())
    finally:
        await backend.close()
    shapes = {t.name: (t.datatype, t.shape) for t in response.outputs}
    assert shapes == {"predict": (Datatype.INT64, (0,)), "predict_proba": (Datatype.FP64, (0, 3))}


async def test_wrong_feature_count_is_invalid_input(demo_dir: Path) -> None:
    backend = await load(demo_dir / "iris.joblib")
    try:
        with pytest.raises(InvalidInputError, match="expecting 4 features"):
            await backend.infer(request([[1.0, 2.0, 3.0]]), CallContext.new())
    finally:
        await backend.close()


async def test_missing_file_fails_to_load_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.joblib"
    backend = SklearnBackend(path)
    with pytest.raises(FileNotFoundError, match=re.escape(f"model file not found: {path}")):
        await backend.load()
    assert not backend.ready()
    await backend.close()  # safe after a failed load


async def test_object_without_predict_fails_to_load(tmp_path: Path) -> None:
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"not": "a model"}))
    backend = SklearnBackend(path)
    with pytest.raises(TypeError, match=r"holds a dict, which has no predict\(\)"):
        await backend.load()
    assert not backend.ready()


@pytest.mark.parametrize(
    "content",
    [b"this is not a pickle\x00\x01", pickle.dumps({"a": 1})[:10], b""],
    ids=["garbage", "truncated", "empty"],
)
async def test_corrupt_file_fails_to_load_naming_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.joblib"
    path.write_bytes(content)
    backend = SklearnBackend(path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: cannot load: ")) as raised:
        await backend.load()
    assert raised.value.__cause__ is not None
    assert not backend.ready()
