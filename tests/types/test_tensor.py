"""Domain types: datatypes and numpy, tensors, signatures, requests, and lossless `coerce`."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RequestedOutput,
    Tensor,
    TensorSpec,
    coerce,
)

# (datatype, numpy dtype, itemsize, is_integer, is_float)
DATATYPES: list[tuple[Datatype, npt.DTypeLike, int, bool, bool]] = [
    (Datatype.BOOL, np.bool_, 1, False, False),
    (Datatype.UINT8, np.uint8, 1, True, False),
    (Datatype.UINT16, np.uint16, 2, True, False),
    (Datatype.UINT32, np.uint32, 4, True, False),
    (Datatype.UINT64, np.uint64, 8, True, False),
    (Datatype.INT8, np.int8, 1, True, False),
    (Datatype.INT16, np.int16, 2, True, False),
    (Datatype.INT32, np.int32, 4, True, False),
    (Datatype.INT64, np.int64, 8, True, False),
    (Datatype.FP16, np.float16, 2, False, True),
    (Datatype.FP32, np.float32, 4, False, True),
    (Datatype.FP64, np.float64, 8, False, True),
    (Datatype.BYTES, np.object_, 0, False, False),
]
FIXED_SIZE = [row for row in DATATYPES if row[0] is not Datatype.BYTES]


def test_the_table_covers_every_datatype() -> None:
    assert {row[0] for row in DATATYPES} == set(Datatype)
    assert len(Datatype) == 13


@pytest.mark.parametrize(("datatype", "dtype", "itemsize", "is_int", "is_float"), DATATYPES)
def test_datatype_numpy_mapping(
    datatype: Datatype, dtype: npt.DTypeLike, itemsize: int, is_int: bool, is_float: bool
) -> None:
    assert datatype.numpy_dtype == np.dtype(dtype)
    assert datatype.itemsize == itemsize
    assert datatype.is_integer is is_int
    assert datatype.is_float is is_float
    assert Datatype(str(datatype)) is datatype  # the wire name is the value


@pytest.mark.parametrize(("datatype", "dtype"), [(row[0], row[1]) for row in FIXED_SIZE])
def test_from_numpy_inverts_numpy_dtype(datatype: Datatype, dtype: npt.DTypeLike) -> None:
    assert Datatype.from_numpy(dtype) is datatype
    assert Datatype.from_numpy(np.dtype(dtype)) is datatype
    # Byte order does not change the element type.
    assert Datatype.from_numpy(np.dtype(dtype).newbyteorder(">")) is datatype
    assert Datatype.from_numpy(np.dtype(dtype).newbyteorder("<")) is datatype


@pytest.mark.parametrize("dtype", ["U5", "S3", np.str_, np.bytes_, object, str])
def test_from_numpy_maps_strings_and_objects_to_bytes(dtype: npt.DTypeLike) -> None:
    assert Datatype.from_numpy(dtype) is Datatype.BYTES


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, "datetime64[s]", "V8"])
def test_from_numpy_refuses_types_without_an_oip_datatype(dtype: npt.DTypeLike) -> None:
    with pytest.raises(TypeError, match="no Open Inference Protocol datatype for numpy"):
        Datatype.from_numpy(dtype)


def test_from_numpy_accepts_python_scalar_types() -> None:
    assert Datatype.from_numpy(float) is Datatype.FP64
    assert Datatype.from_numpy(bool) is Datatype.BOOL


# --- Tensor ---------------------------------------------------------------------------------


def test_tensor_from_numpy_infers_the_datatype() -> None:
    tensor = Tensor.from_numpy("x", np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    assert tensor.name == "x"
    assert tensor.datatype is Datatype.FP32
    assert tensor.shape == (1, 3)
    assert tensor.data.dtype == np.float32
    assert tensor.size == 3
    assert tensor.parameters == {}


def test_tensor_from_numpy_casts_to_a_given_datatype() -> None:
    tensor = Tensor.from_numpy("x", [[1, 2], [3, 4]], Datatype.FP32)
    assert tensor.datatype is Datatype.FP32
    assert tensor.data.dtype == np.float32
    assert tensor.shape == (2, 2)
    assert tensor.data.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_tensor_from_numpy_encodes_strings_as_utf8_bytes() -> None:
    tensor = Tensor.from_numpy("text", np.array([["héllo", "a"], ["", "z"]]))
    assert tensor.datatype is Datatype.BYTES
    assert tensor.data.dtype == np.object_
    assert tensor.shape == (2, 2)
    assert tensor.data.tolist() == [["héllo".encode(), b"a"], [b"", b"z"]]


def test_tensor_from_numpy_keeps_bytes_items() -> None:
    tensor = Tensor.from_numpy("raw", np.array([b"\x00\xff", b"ab"], dtype=object))
    assert tensor.datatype is Datatype.BYTES
    assert tensor.data.tolist() == [b"\x00\xff", b"ab"]


def test_tensor_from_numpy_refuses_complex() -> None:
    with pytest.raises(TypeError):
        Tensor.from_numpy("z", np.array([1 + 2j]))


@pytest.mark.parametrize(("shape", "size"), [((), 1), ((0,), 0), ((3,), 3), ((2, 3, 4), 24)])
def test_tensor_size_is_the_product_of_the_shape(shape: tuple[int, ...], size: int) -> None:
    tensor = Tensor.from_numpy("t", np.zeros(shape, dtype=np.int32))
    assert tensor.shape == shape
    assert tensor.size == size


# --- signatures and requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec_shape", "shape", "matches"),
    [
        ((-1, 4), (1, 4), True),
        ((-1, 4), (1000, 4), True),
        ((-1, 4), (0, 4), True),
        ((-1, 4), (1, 3), False),
        ((-1, 4), (4,), False),
        ((-1, 4), (1, 4, 1), False),
        ((-1, -1), (7, 9), True),
        ((2, 3), (2, 3), True),
        ((2, 3), (3, 2), False),
        ((), (), True),
        ((), (1,), False),
        ((-1,), (), False),
    ],
)
def test_tensor_spec_matches_shape(
    spec_shape: tuple[int, ...], shape: tuple[int, ...], matches: bool
) -> None:
    assert TensorSpec("x", Datatype.FP32, spec_shape).matches_shape(shape) is matches


def test_tensor_spec_to_dict() -> None:
    spec = TensorSpec("input-0", Datatype.FP64, (-1, 4))
    assert spec.to_dict() == {"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}


def test_model_metadata_lookups() -> None:
    a = TensorSpec("a", Datatype.FP32, (-1,))
    b = TensorSpec("b", Datatype.INT64, (-1,))
    out = TensorSpec("out", Datatype.FP32, (-1,))
    meta = ModelMetadata("m", "mock", (a, b), (out,), versions=("1", "2"))
    assert meta.input("a") is a
    assert meta.input("b") is b
    assert meta.input("out") is None
    assert meta.output("out") is out
    assert meta.output("a") is None
    assert meta.versions == ("1", "2")


def test_request_wants_every_output_when_none_are_named() -> None:
    request = InferenceRequest("m", [])
    assert request.outputs is None
    assert request.wants("anything")


def test_request_wants_only_the_named_outputs() -> None:
    request = InferenceRequest("m", [], outputs=[RequestedOutput("a"), RequestedOutput("b")])
    assert request.wants("a")
    assert request.wants("b")
    assert not request.wants("c")
    assert not InferenceRequest("m", [], outputs=[]).wants("a")


def test_request_and_response_find_tensors_by_name() -> None:
    x = Tensor.from_numpy("x", [1.0])
    y = Tensor.from_numpy("y", [2])
    request = InferenceRequest("m", [x, y])
    assert request.input("y") is y
    assert request.input("z") is None
    response = InferenceResponse("m", [x])
    assert response.output("x") is x
    assert response.output("y") is None


# --- coerce: the conversion table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "datatype", "expected"),
    [
        (np.array([1, -2, 127], np.int64), Datatype.INT8, [1, -2, 127]),
        (np.array([0, 255], np.int64), Datatype.UINT8, [0, 255]),
        (np.array([0, 255], np.uint8), Datatype.INT64, [0, 255]),
        (np.array([2**63 - 1], np.uint64), Datatype.INT64, [2**63 - 1]),
        (np.array([-(2**63)], np.int64), Datatype.INT64, [-(2**63)]),
        (np.array([2**53, -(2**53)], np.int64), Datatype.FP64, [2.0**53, -(2.0**53)]),
        (np.array([2**24, 3, 2**30], np.int64), Datatype.FP32, [2.0**24, 3.0, 2.0**30]),
        (np.array([2048, -7], np.int16), Datatype.FP16, [2048.0, -7.0]),
        (np.array([1.0, -2.0, 0.0], np.float64), Datatype.INT32, [1, -2, 0]),
        (np.array([255.0], np.float32), Datatype.UINT8, [255]),
        (np.array([2.0**53], np.float64), Datatype.INT64, [2**53]),
        (np.array([1.5, -0.25], np.float32), Datatype.FP64, [1.5, -0.25]),
        (np.array([1.5, 65504.0], np.float64), Datatype.FP16, [1.5, 65504.0]),
        (np.array([0.5, 3.0], np.float16), Datatype.FP32, [0.5, 3.0]),
        (np.array([b"ab", b""], "S2"), Datatype.BYTES, [b"ab", b""]),
        (np.array(["ab", "é"]), Datatype.BYTES, [b"ab", "é".encode()]),
        (np.array(["s", b"b"], object), Datatype.BYTES, [b"s", b"b"]),
    ],
)
def test_coerce_allowed(values: npt.NDArray[Any], datatype: Datatype, expected: list[Any]) -> None:
    out = coerce(values, datatype)
    assert out.dtype == datatype.numpy_dtype
    assert out.shape == values.shape
    assert out.tolist() == expected
    if datatype is Datatype.BYTES:
        assert all(type(item) is bytes or isinstance(item, np.bytes_) for item in out.flat)


def test_coerce_rounds_floats_to_the_nearest_narrower_float() -> None:
    # A float's value is approximate already: 0.1 as FP64 becomes the FP32 closest to it.
    out = coerce(np.array([0.1, 1e-50, -1e30]), Datatype.FP32)
    assert out.dtype == np.float32
    assert out.tolist() == np.array([0.1, 1e-50, -1e30], np.float32).tolist()
    assert out[0] == np.float32(0.1)


def test_coerce_keeps_non_finite_floats_non_finite() -> None:
    out = coerce(np.array([np.nan, np.inf, -np.inf]), Datatype.FP16)
    assert np.isnan(out[0])
    assert out[1] == np.inf
    assert out[2] == -np.inf


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.0, 2.0], np.float32),
        np.array([True], np.bool_),
        np.array([b"x"], object),
        np.array([7], np.int64),
    ],
)
def test_coerce_returns_the_same_array_when_the_dtype_already_matches(
    values: npt.NDArray[Any],
) -> None:
    datatype = Datatype.from_numpy(values.dtype)
    out = coerce(values, datatype)
    assert out.dtype == datatype.numpy_dtype
    assert out.tolist() == values.tolist()
    if datatype is not Datatype.BYTES:
        assert out is values


@pytest.mark.parametrize("datatype", [Datatype.INT8, Datatype.UINT64, Datatype.FP16])
def test_coerce_converts_empty_arrays_of_numbers(datatype: Datatype) -> None:
    out = coerce(np.empty((0, 3), np.float64), datatype)
    assert out.shape == (0, 3)
    assert out.dtype == datatype.numpy_dtype


@pytest.mark.parametrize(
    ("values", "datatype", "reason"),
    [
        (np.array([True]), Datatype.INT32, "expected numbers for INT32, got true/false"),
        (np.array([True]), Datatype.FP32, "expected numbers for FP32, got true/false"),
        (np.array([1], np.int64), Datatype.BOOL, "expected true/false for BOOL, got numbers"),
        (np.array([0.0]), Datatype.BOOL, "expected true/false for BOOL, got numbers"),
        (np.array(["1"]), Datatype.FP32, "expected numbers for FP32, got strings"),
        (np.array([b"1"]), Datatype.INT64, "expected numbers for INT64, got strings"),
        (np.array(["true"]), Datatype.BOOL, "expected numbers for BOOL, got strings"),
        (np.array([1.5]), Datatype.BYTES, "expected strings for BYTES, got numbers"),
        (np.array([1], np.uint8), Datatype.BYTES, "expected strings for BYTES, got numbers"),
        (np.array([False]), Datatype.BYTES, "expected strings for BYTES, got true/false"),
        (
            np.array([1, "a"], object),
            Datatype.FP32,
            "expected numbers for FP32, got mixed or non-scalar values",
        ),
        (
            np.array([1, 2], object),
            Datatype.BYTES,
            "expected strings for BYTES, got mixed or non-scalar values",
        ),
        (np.array([1j]), Datatype.FP64, "expected numbers for FP64, got mixed or non-scalar"),
        (
            np.array([300], np.int64),
            Datatype.INT8,
            r"value 300 is out of range for INT8 \[-128, 127\]",
        ),
        (
            np.array([0, -1], np.int64),
            Datatype.UINT32,
            r"value -1 is out of range for UINT32 \[0, ",
        ),
        (
            np.array([2**64 - 1], np.uint64),
            Datatype.INT64,
            "value 18446744073709551615 is out of range for INT64",
        ),
        (np.array([300.0]), Datatype.UINT8, r"value 300.0 is out of range for UINT8 \[0, 255\]"),
        (np.array([1.0, 1.5]), Datatype.INT64, "expected integers for INT64, got fractional"),
        (np.array([-0.5], np.float16), Datatype.INT8, "got fractional numbers"),
        (np.array([np.nan]), Datatype.INT32, "expected integers for INT32, got out-of-range"),
        (np.array([np.inf]), Datatype.INT64, "got out-of-range numbers"),
        (np.array([2.0**60]), Datatype.INT64, "got out-of-range numbers"),
        (np.array([1e39]), Datatype.FP32, "a value is out of range for FP32"),
        (np.array([70000.0], np.float32), Datatype.FP16, "a value is out of range for FP16"),
        (np.array([70000], np.int32), Datatype.FP16, "a value is out of range for FP16"),
        (np.array([2**24 + 1], np.int64), Datatype.FP32, "16777217 .*exactly.* FP32"),
        (np.array([2**53 + 1], np.int64), Datatype.FP64, "9007199254740993 .*exactly.* FP64"),
        (np.array([1, 2049], np.int16), Datatype.FP16, "2049 .*exactly.* FP16"),
        (np.array([2**63 - 1], np.int64), Datatype.FP64, "exactly"),
        (np.array([2**64 - 1], np.uint64), Datatype.FP64, "exactly"),
    ],
)
def test_coerce_refused(values: npt.NDArray[Any], datatype: Datatype, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        coerce(values, datatype)


def test_coerce_reports_the_offending_extreme() -> None:
    with pytest.raises(ValueError, match="value -200 is out of range for INT8"):
        coerce(np.array([[5, -200], [100, 3]], np.int32), Datatype.INT8)
    with pytest.raises(ValueError, match="value 200 is out of range for INT8"):
        coerce(np.array([[5, 200], [100, 3]], np.int32), Datatype.INT8)


# --- coerce: properties ---------------------------------------------------------------------

_SOURCE_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?", sizes=(16, 32, 64)),
    hnp.unicode_string_dtypes(max_len=4),
    hnp.byte_string_dtypes(max_len=4),
)
_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
_ARRAYS = _SOURCE_DTYPES.flatmap(lambda dt: hnp.arrays(dt, _SHAPES))
_PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_same_values(values: npt.NDArray[Any], out: npt.NDArray[Any], target: Datatype) -> None:
    """`out` holds the values of `values`; narrower floats may only round to the nearest."""
    if target is Datatype.BYTES:
        expected = [v.encode() if isinstance(v, str) else bytes(v) for v in values.flat]
        assert [bytes(v) for v in out.flat] == expected
        assert all(isinstance(v, bytes) for v in out.flat)
        return
    if values.dtype.kind == "f" and target.is_float and out.dtype.itemsize < values.itemsize:
        info = np.finfo(out.dtype)
        nearest = values.astype(out.dtype)  # IEEE round-to-nearest, the only change allowed
        assert np.array_equal(out, nearest, equal_nan=True)
        back = out.astype(values.dtype)
        assert np.allclose(
            back, values, rtol=float(info.eps), atol=float(info.smallest_subnormal), equal_nan=True
        )
        return
    # Python compares int and float exactly, so this is an exact comparison of every value.
    pairs = zip(out.reshape(-1).tolist(), values.reshape(-1).tolist(), strict=True)
    assert all(x == y or (x != x and y != y) for x, y in pairs)  # NaN stays NaN


@_PROPERTY
@given(values=_ARRAYS, target=st.sampled_from(Datatype))
def test_coerce_never_changes_a_value_and_only_raises_value_error(
    values: npt.NDArray[Any], target: Datatype
) -> None:
    reason = ""
    try:
        out = coerce(values, target)
    except ValueError as exc:  # any other exception fails the test, as do numpy warnings
        reason = str(exc)
        assert reason  # a reason for the client, never empty
        return
    assert out.dtype == target.numpy_dtype
    assert out.shape == values.shape
    _assert_same_values(values, out, target)


_INTEGER_TARGETS = [dt for dt in Datatype if dt.is_integer]


@_PROPERTY
@given(
    values=st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes()).flatmap(
        lambda dt: hnp.arrays(dt, _SHAPES)
    ),
    target=st.sampled_from(_INTEGER_TARGETS),
)
def test_coerce_accepts_integers_exactly_when_they_fit(
    values: npt.NDArray[Any], target: Datatype
) -> None:
    info = np.iinfo(target.numpy_dtype)
    fits = all(info.min <= v <= info.max for v in values.flat)
    if fits:
        assert coerce(values, target).tolist() == values.tolist()
    else:
        with pytest.raises(ValueError, match="out of range"):
            coerce(values, target)


@_PROPERTY
@given(
    values=hnp.arrays(
        np.float64, _SHAPES, elements=st.integers(-(2**53), 2**53).map(float), unique=False
    ),
    target=st.sampled_from(_INTEGER_TARGETS),
)
def test_coerce_accepts_integral_floats_exactly_when_they_fit(
    values: npt.NDArray[Any], target: Datatype
) -> None:
    info = np.iinfo(target.numpy_dtype)
    if all(info.min <= v <= info.max for v in values.flat):
        out = coerce(values, target)
        assert out.dtype == target.numpy_dtype
        assert out.tolist() == values.tolist()
    else:
        with pytest.raises(ValueError, match="out of range"):
            coerce(values, target)


@_PROPERTY
@given(
    values=hnp.arrays(np.float64, _SHAPES, elements=st.floats(allow_nan=True)),
    target=st.sampled_from([Datatype.FP16, Datatype.FP32, Datatype.FP64]),
)
def test_coerce_accepts_floats_exactly_when_finite_values_stay_finite(
    values: npt.NDArray[Any], target: Datatype
) -> None:
    limit = float(np.finfo(target.numpy_dtype).max)
    with np.errstate(over="ignore"):
        stays_finite = all(
            not np.isfinite(v) or np.isfinite(np.asarray(v).astype(target.numpy_dtype))
            for v in values.flat
        )
    if stays_finite:
        out = coerce(values, target)
        assert out.dtype == target.numpy_dtype
    else:
        assert any(np.isfinite(v) and abs(v) > limit for v in values.flat)
        with pytest.raises(ValueError, match=f"out of range for {target}"):
            coerce(values, target)


_ENCODABLE = st.characters(exclude_categories=["Cs"])  # lone surrogates have no UTF-8 form


@_PROPERTY
@given(
    values=st.one_of(
        hnp.unicode_string_dtypes(max_len=6).flatmap(
            lambda dt: hnp.arrays(dt, _SHAPES, elements=hnp.from_dtype(dt, alphabet=_ENCODABLE))
        ),
        hnp.byte_string_dtypes(max_len=6).flatmap(lambda dt: hnp.arrays(dt, _SHAPES)),
    )
)
def test_coerce_accepts_every_string_array_as_bytes(values: npt.NDArray[Any]) -> None:
    out = coerce(values, Datatype.BYTES)
    _assert_same_values(values, out, Datatype.BYTES)


def test_coerce_refuses_strings_that_have_no_utf8_form() -> None:
    with pytest.raises(ValueError, match="surrogates not allowed"):
        coerce(np.array(["ok", "\ud800"]), Datatype.BYTES)
