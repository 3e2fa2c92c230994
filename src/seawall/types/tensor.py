"""Tensors and inference calls: the Open Inference Protocol's vocabulary, protocol-neutral."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Datatype",
    "InferenceRequest",
    "InferenceResponse",
    "ModelMetadata",
    "Parameters",
    "RequestedOutput",
    "Tensor",
    "TensorSpec",
    "coerce",
]

#: Free-form parameters of OIP requests, tensors and responses (JSON scalars only).
Parameters = dict[str, Any]


class Datatype(StrEnum):
    """Tensor element types of the Open Inference Protocol."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype that holds this type (`object` of `bytes` for BYTES)."""
        return _TO_NUMPY[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element in the binary tensor format (0 for variable-length BYTES)."""
        return 0 if self is Datatype.BYTES else _TO_NUMPY[self].itemsize

    @property
    def is_integer(self) -> bool:
        return _TO_NUMPY[self].kind in "iu"

    @property
    def is_float(self) -> bool:
        return _TO_NUMPY[self].kind == "f"

    @classmethod
    def from_numpy(cls, dtype: npt.DTypeLike) -> Datatype:
        """The OIP type for a numpy dtype; strings and objects map to BYTES."""
        dt = np.dtype(dtype)
        if dt.kind in "OSU":
            return cls.BYTES
        try:
            return _FROM_NUMPY[dt.newbyteorder("=")]
        except KeyError:
            raise TypeError(f"no Open Inference Protocol datatype for numpy {dt}") from None


_TO_NUMPY: dict[Datatype, np.dtype[Any]] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
    Datatype.BYTES: np.dtype(np.object_),
}
_FROM_NUMPY = {dt: t for t, dt in _TO_NUMPY.items() if t is not Datatype.BYTES}


@dataclass(slots=True)
class Tensor:
    """A named n-dimensional array; `data` already has `shape` and the dtype of `datatype`."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]
    data: npt.NDArray[Any]
    parameters: Parameters = field(default_factory=dict)

    @classmethod
    def from_numpy(
        cls, name: str, array: npt.ArrayLike, datatype: Datatype | None = None
    ) -> Tensor:
        """Wrap an array, inferring the datatype unless given; strings become UTF-8 bytes."""
        arr = np.asarray(array)
        dt = datatype or Datatype.from_numpy(arr.dtype)
        if dt is Datatype.BYTES:
            arr = _as_bytes_array(arr)
        elif arr.dtype != dt.numpy_dtype:
            arr = arr.astype(dt.numpy_dtype)
        return cls(name=name, datatype=dt, shape=tuple(arr.shape), data=arr)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


def _as_bytes_array(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    out = np.empty(arr.shape, dtype=np.object_)
    flat_in, flat_out = arr.reshape(-1), out.reshape(-1)
    for i, item in enumerate(flat_in):
        flat_out[i] = item if isinstance(item, bytes) else str(item).encode()
    return out


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model's signature; -1 in `shape` matches any size."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def matches_shape(self, shape: tuple[int, ...]) -> bool:
        """True if `shape` has this rank and agrees on every fixed dimension."""
        return len(shape) == len(self.shape) and all(
            want == -1 or want == got for want, got in zip(self.shape, shape, strict=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": str(self.datatype), "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What a model accepts and returns, as reported by OIP's model metadata endpoint."""

    name: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    versions: tuple[str, ...] = ()

    def input(self, name: str) -> TensorSpec | None:
        return next((s for s in self.inputs if s.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((s for s in self.outputs if s.name == name), None)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, with its per-output parameters (e.g. `binary_data`)."""

    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    """A decoded inference call; `outputs` is None when the client wants every output."""

    model: str
    inputs: list[Tensor]
    version: str | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None

    def input(self, name: str) -> Tensor | None:
        return next((t for t in self.inputs if t.name == name), None)

    def wants(self, output_name: str) -> bool:
        """True if `output_name` should be computed and returned."""
        return self.outputs is None or any(o.name == output_name for o in self.outputs)


@dataclass(slots=True)
class InferenceResponse:
    """The result of an inference call."""

    model: str
    outputs: list[Tensor]
    version: str | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)

    def output(self, name: str) -> Tensor | None:
        return next((t for t in self.outputs if t.name == name), None)


_EXACT_FLOAT_INT = 2**53  # floats represent every integer up to here exactly
#: The largest finite value of each float dtype.
_FLOAT_MAX = {np.dtype(t): float(np.finfo(t).max) for t in (np.float16, np.float32, np.float64)}


def coerce(values: npt.NDArray[Any], datatype: Datatype) -> npt.NDArray[Any]:
    """Convert `values` to `datatype` only if no value changes; raise `ValueError` saying why not.

    Allowed: integers to wider or narrower integers and to floats when every value fits exactly,
    floats to floats when every value stays finite (rounded to the nearest), integral floats to
    integers, strings to BYTES.
    Refused: booleans to or from numbers, numbers to or from strings, fractions to integers.
    """
    target = datatype.numpy_dtype
    kind = values.dtype.kind
    if datatype is Datatype.BYTES:  # before the dtype check: an object array may hold anything
        if kind in "SU" or (kind == "O" and all(isinstance(v, str | bytes) for v in values.flat)):
            return _as_bytes_array(values)
        raise ValueError(f"expected strings for {datatype}, got {_describe(values)}")
    if values.dtype == target:
        return values
    if kind not in "biuf":
        raise ValueError(f"expected numbers for {datatype}, got {_describe(values)}")
    if (datatype is Datatype.BOOL) != (kind == "b"):
        raise ValueError(f"expected {_kind_word(datatype)} for {datatype}, got {_describe(values)}")
    if values.size == 0:
        return values.astype(target)
    if datatype.is_integer:
        return _to_integer(values, datatype)
    if datatype.is_float:
        # The usual case (JSON's float64 to FP32): one range check, no warning machinery.
        # NaN and inf fail `<=` and take the careful path below.
        if kind == "f" and float(np.abs(values).max()) <= _FLOAT_MAX[target]:
            return values.astype(target)
        with np.errstate(over="ignore", invalid="ignore"):
            out = values.astype(target)
        if not np.isfinite(out[np.isfinite(values)]).all():
            raise ValueError(f"a value is out of range for {datatype}")
        if kind in "iu":  # an integer is exact: rounding it to a float changes it
            with np.errstate(invalid="ignore"):
                inexact = out.astype(values.dtype) != values
            if inexact.any():
                bad = values[inexact].flat[0]
                raise ValueError(f"value {bad} cannot be represented exactly as {datatype}")
        return out
    return values.astype(target)


def _to_integer(values: npt.NDArray[Any], datatype: Datatype) -> npt.NDArray[Any]:
    info = np.iinfo(datatype.numpy_dtype)
    if values.dtype.kind == "f":
        values = values.astype(np.float64)  # FP16 would overflow comparing with these bounds
        if not np.isfinite(values).all() or (np.abs(values) > _EXACT_FLOAT_INT).any():
            raise ValueError(f"expected integers for {datatype}, got out-of-range numbers")
        if (values != np.floor(values)).any():
            raise ValueError(f"expected integers for {datatype}, got fractional numbers")
    low, high = values.min(), values.max()
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise ValueError(f"value {bad} is out of range for {datatype} [{info.min}, {info.max}]")
    return values.astype(datatype.numpy_dtype)


def _kind_word(datatype: Datatype) -> str:
    return "true/false" if datatype is Datatype.BOOL else "numbers"


def _describe(values: npt.NDArray[Any]) -> str:
    kind = values.dtype.kind
    if kind == "b":
        return "true/false"
    if kind in "iuf":
        return "numbers"
    if kind in "SU" or (kind == "O" and all(isinstance(v, str | bytes) for v in values.flat)):
        return "strings"
    return "mixed or non-scalar values"
