"""`OnnxBackend`: an `.onnx` model run by ONNX Runtime on the CPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seawall.backends.inprocess.base import Arrays, InProcessBackend, InProcessOptions
from seawall.clock import Clock
from seawall.errors import InvalidInputError
from seawall.types import Datatype, ModelMetadata, Parameters, TensorSpec

__all__ = ["DEFAULT_INTRA_OP_THREADS", "OnnxBackend"]

#: ONNX Runtime threads per call; 1 keeps several workers from fighting over the cores.
DEFAULT_INTRA_OP_THREADS = 1

_ONNX_TYPES = {
    "tensor(bool)": Datatype.BOOL,
    "tensor(uint8)": Datatype.UINT8,
    "tensor(uint16)": Datatype.UINT16,
    "tensor(uint32)": Datatype.UINT32,
    "tensor(uint64)": Datatype.UINT64,
    "tensor(int8)": Datatype.INT8,
    "tensor(int16)": Datatype.INT16,
    "tensor(int32)": Datatype.INT32,
    "tensor(int64)": Datatype.INT64,
    "tensor(float16)": Datatype.FP16,
    "tensor(float)": Datatype.FP32,
    "tensor(double)": Datatype.FP64,
    "tensor(string)": Datatype.BYTES,
}


class OnnxBackend(InProcessBackend):
    """Inputs and outputs are the graph's, with their names, types and shapes."""

    platform = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        intra_op_threads: int = DEFAULT_INTRA_OP_THREADS,
        options: InProcessOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        super().__init__(f"onnx:{self.path.name}", options=options, clock=clock)
        self._intra_op_threads = intra_op_threads
        self._session: Any = None

    def _load_sync(self) -> ModelMetadata:
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: {self.path}")
        import onnxruntime as ort  # deferred: only this backend needs it

        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = self._intra_op_threads
        session_options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(self.path), session_options, providers=["CPUExecutionProvider"]
        )
        inputs = tuple(_spec(arg, "input") for arg in session.get_inputs())
        outputs = tuple(_spec(arg, "output") for arg in session.get_outputs())
        self._session = session
        return ModelMetadata(
            name=self.path.stem, platform=self.platform, inputs=inputs, outputs=outputs
        )

    def _predict_sync(
        self, inputs: Arrays, wanted: Sequence[str], parameters: Parameters
    ) -> Arrays:
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        feeds = {name: _feed(array) for name, array in inputs.items()}
        try:
            results = self._session.run(list(wanted), feeds)
        except InvalidArgument as exc:  # ONNX Runtime's word for "this input does not fit"
            raise InvalidInputError("inputs", f"the model rejected the input: {exc}") from exc
        return dict(zip(wanted, results, strict=True))


def _spec(arg: Any, kind: str) -> TensorSpec:
    datatype = _ONNX_TYPES.get(arg.type)
    if datatype is None:
        hint = (
            " (a ZipMap output: convert with skl2onnx option zipmap=False)"
            if "map" in arg.type
            else ""
        )
        raise TypeError(f"{kind} {arg.name!r} has type {arg.type}, which is not a tensor{hint}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


def _feed(array: Any) -> Any:
    # ONNX Runtime wants str, not bytes, in string tensors.
    if array.dtype == np.object_:
        return np.vectorize(
            lambda b: b.decode() if isinstance(b, bytes) else str(b), otypes=[object]
        )(array)
    return array
