"""`SklearnBackend`: a scikit-learn estimator or pipeline saved with joblib or pickle."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seawall.backends.inprocess.base import Arrays, InProcessBackend, InProcessOptions
from seawall.clock import Clock
from seawall.types import Datatype, ModelMetadata, Parameters, TensorSpec

__all__ = ["DEFAULT_INPUT_NAME", "PREDICT", "PREDICT_PROBA", "SklearnBackend"]

DEFAULT_INPUT_NAME = "input-0"
#: Output names, as in MLServer's scikit-learn runtime.
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


class SklearnBackend(InProcessBackend):
    """One 2-D input `[rows, features]`; outputs `predict` and, for classifiers, `predict_proba`.

    Loading a pickle runs code from the file: load only artifacts you trust (signed artifacts
    are verified before loading once the registry serves them).
    """

    platform = "sklearn"

    def __init__(
        self,
        path: str | Path,
        *,
        input_name: str = DEFAULT_INPUT_NAME,
        input_datatype: Datatype = Datatype.FP64,
        options: InProcessOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        super().__init__(f"sklearn:{self.path.name}", options=options, clock=clock)
        self._input_name = input_name
        self._input_datatype = input_datatype
        self._model: Any = None

    def _load_sync(self) -> ModelMetadata:
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: {self.path}")
        import joblib  # deferred: scikit-learn's import is slow and only this backend needs it

        try:
            model = joblib.load(self.path)
        except Exception as exc:  # a corrupt file fails anywhere in unpickling, with any error
            raise ValueError(f"{self.path}: cannot load: {type(exc).__name__}: {exc}") from exc
        if not callable(getattr(model, "predict", None)):
            raise TypeError(f"{self.path} holds a {type(model).__name__}, which has no predict()")
        if isinstance(getattr(model, "classes_", None), list):
            raise TypeError(
                f"{self.path} holds a multi-output classifier, which is not supported "
                "(one label column per model)"
            )
        features = int(getattr(model, "n_features_in_", -1))
        outputs = [TensorSpec(PREDICT, _predict_datatype(model), _predict_shape(model))]
        if _has_predict_proba(model):
            classes = getattr(model, "classes_", None)
            width = len(classes) if classes is not None and np.ndim(classes) == 1 else -1
            outputs.append(TensorSpec(PREDICT_PROBA, Datatype.FP64, (-1, width)))
        self._model = model
        return ModelMetadata(
            name=self.path.stem,
            platform=self.platform,
            inputs=(TensorSpec(self._input_name, self._input_datatype, (-1, features)),),
            outputs=tuple(outputs),
        )

    def _predict_sync(
        self, inputs: Arrays, wanted: Sequence[str], parameters: Parameters
    ) -> Arrays:
        features = inputs[self._input_name]
        if len(features) == 0:
            # An empty batch is a valid request; scikit-learn refuses to predict on it.
            return {name: self._empty(name) for name in wanted}
        results: dict[str, Any] = {}
        for name in wanted:
            if name == PREDICT:
                results[name] = self._model.predict(features)
            elif name == PREDICT_PROBA:
                results[name] = self._model.predict_proba(features)
        return results

    def _empty(self, name: str) -> Any:
        spec = self.metadata().output(name)
        assert spec is not None, f"validated output {name!r} missing from the signature"
        return _empty_output(spec)


def _empty_output(spec: TensorSpec) -> Any:
    return np.empty(tuple(max(0, d) for d in spec.shape), dtype=spec.datatype.numpy_dtype)


def _has_predict_proba(model: Any) -> bool:
    # `hasattr` is how scikit-learn says whether it is usable (e.g. SVC(probability=False)).
    try:
        return callable(getattr(model, "predict_proba", None))
    except AttributeError:
        return False


def _predict_datatype(model: Any) -> Datatype:
    classes = getattr(model, "classes_", None)
    if classes is not None and np.ndim(classes) == 1:
        return Datatype.from_numpy(np.asarray(classes).dtype)
    return Datatype.FP64


def _predict_shape(model: Any) -> tuple[int, ...]:
    outputs = getattr(model, "n_outputs_", 1)
    if outputs == 1 and getattr(model, "classes_", None) is None:
        # Linear regressors fitted on several targets say so only by their coefficients' shape.
        coef = getattr(model, "coef_", None)
        if isinstance(coef, np.ndarray) and coef.ndim == 2 and coef.shape[0] > 1:
            return (-1, coef.shape[0])
    return (-1,) if outputs in (None, 1) else (-1, int(outputs))
