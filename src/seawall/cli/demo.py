"""`seawall demo`: train the demo models from scikit-learn's bundled datasets and write a config.

Nothing is downloaded: iris and diabetes ship inside scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["DEMO_CONFIG", "IRIS_RULES", "demo", "write_demo"]

#: The demo gateway's configuration; paths are relative to the file.
DEMO_CONFIG = """\
# seawall demo configuration, written by `seawall demo`. Paths are relative to this file.
server:
  host: 127.0.0.1
  port: 8000
  shutdown_grace_s: 30

models:
  # Iris classifier (logistic regression), pickled with joblib.
  - name: iris
    version: "1"
    backend:
      kind: sklearn
      path: {prefix}iris.joblib
    # What it was trained on: the profile of the training data (`seawall data show --json`
    # writes one for any snapshot). Inputs are checked against it, and monitored for drift.
    training:
      file: {prefix}iris.profile.json
      features: [sepal_length, sepal_width, petal_length, petal_width]
      target: species
    validation:
      profile: {{mode: flag}}   # served, counted in seawall_input_out_of_profile_total
    drift:
      window_s: 60            # a report a minute: seawall_feature_drift on /metrics

  # The same classifier converted to ONNX: same input name, same predictions.
  - name: iris-onnx
    version: "1"
    backend:
      kind: onnx
      path: {prefix}iris.onnx

  # Diabetes progression regressor (gradient boosting).
  - name: diabetes
    version: "1"
    backend:
      kind: sklearn
      path: {prefix}diabetes.joblib

  # A hand-written rule as a Python function: the kind of heuristic a fallback chain ends with.
  - name: iris-rules
    version: "1"
    backend:
      kind: python
      target: iris_rules:predict
      search_path: {search_path}
      inputs:
        - {{name: input-0, datatype: FP64, shape: [-1, 4]}}
      outputs:
        - {{name: predict, datatype: INT64, shape: [-1]}}
"""

IRIS_RULES = '''\
"""Classify iris flowers by petal size alone: no training, no dependencies beyond numpy."""

import numpy as np


def predict(inputs):
    """0 setosa, 1 versicolor, 2 virginica, from petal length (column 2) and width (column 3)."""
    x = inputs["input-0"]
    petal_length, petal_width = x[:, 2], x[:, 3]
    label = np.where(petal_length < 2.5, 0, np.where(petal_width < 1.75, 1, 2))
    return {"predict": label.astype(np.int64)}
'''

ONNX_INPUT = "input-0"
#: The iris model's input columns, in order.
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def demo(
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Where to write the models and seawall.yaml.")
    ] = Path("demo"),
) -> None:
    """Train the demo models (iris as joblib and ONNX, diabetes) and write their config."""
    written = write_demo(directory)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"start it with: seawall serve --config {directory / 'seawall.yaml'}")


def write_demo(directory: Path) -> list[Path]:
    """Train and write everything; returns the files written."""
    import joblib
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression

    directory.mkdir(parents=True, exist_ok=True)
    x_iris, y_iris = load_iris(return_X_y=True)
    iris = LogisticRegression(max_iter=1000).fit(x_iris, y_iris)
    x_diabetes, y_diabetes = load_diabetes(return_X_y=True)
    diabetes = GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0)
    diabetes.fit(x_diabetes, y_diabetes)

    files: dict[str, Callable[[Path], object]] = {
        "iris.joblib": lambda p: joblib.dump(iris, p),
        "iris.onnx": lambda p: p.write_bytes(_to_onnx(iris, x_iris.shape[1], 3)),
        "diabetes.joblib": lambda p: joblib.dump(diabetes, p),
        "iris.profile.json": lambda p: p.write_text(_iris_profile(), encoding="utf-8"),
        "iris_rules.py": lambda p: p.write_text(IRIS_RULES, encoding="utf-8"),
        "seawall.yaml": lambda p: p.write_text(
            DEMO_CONFIG.format(prefix="", search_path="."), encoding="utf-8"
        ),
    }
    written = []
    for name, write in files.items():
        path = directory / name
        tmp = path.with_name(f".{name}.tmp")
        try:
            write(tmp)
            tmp.replace(path)  # atomic: a half-written model is never picked up
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def _iris_profile() -> str:
    """The iris training data's profile (as a data snapshot of it would carry), as JSON."""
    import json

    import pandas as pd
    from sklearn.datasets import load_iris

    from seawall.data.profile import profile

    data = load_iris(as_frame=True)
    frame = data.data.set_axis(IRIS_FEATURES, axis=1)
    frame["species"] = pd.array(data.target, dtype="Int64")
    dtypes = {**dict.fromkeys(IRIS_FEATURES, "float"), "species": "int"}
    return json.dumps({"profile": profile(frame, dtypes)}, indent=1)


def _to_onnx(model: Any, features: int, classes: int) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    onx = convert_sklearn(
        model,
        initial_types=[("input_0", FloatTensorType([None, features]))],
        final_types=[
            ("predict", Int64TensorType([None])),
            ("predict_proba", FloatTensorType([None, classes])),
        ],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    # skl2onnx sanitises "input-0" to "input_0"; rename it so both iris models share a signature.
    for node in onx.graph.node:
        for i, name in enumerate(node.input):
            if name == "input_0":
                node.input[i] = ONNX_INPUT
    onx.graph.input[0].name = ONNX_INPUT
    data: bytes = onx.SerializeToString()
    return data
