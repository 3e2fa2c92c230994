"""The OIP v2 codec, server and client side: JSON and binary bodies both ways, errors located."""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seawall.backends.oip.codec import (
    MAX_RANK,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
)
from seawall.errors import BadResponseError, InvalidInputError
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)

ALL_TYPES = ", ".join(d.value for d in Datatype)
FIXED_SIZE = [d for d in Datatype if d is not Datatype.BYTES]

#: Two rows of three values per datatype, each value exactly representable in that type.
ROWS: dict[Datatype, list[list[Any]]] = {
    Datatype.BOOL: [[True, False, True], [False, False, True]],
    Datatype.UINT8: [[0, 1, 255], [7, 128, 254]],
    Datatype.UINT16: [[0, 1, 65535], [300, 40000, 2]],
    Datatype.UINT32: [[0, 1, 4294967295], [70000, 2, 3]],
    Datatype.UINT64: [[0, 1, 18446744073709551615], [2**40, 2, 3]],
    Datatype.INT8: [[-128, 0, 127], [-1, 1, 5]],
    Datatype.INT16: [[-32768, 0, 32767], [-300, 300, 1]],
    Datatype.INT32: [[-2147483648, 0, 2147483647], [-70000, 70000, 1]],
    Datatype.INT64: [[-(2**63), 0, 2**63 - 1], [-(2**40), 2**40, 1]],
    Datatype.FP16: [[0.5, -2.0, 65504.0], [0.25, 1.0, -0.125]],
    Datatype.FP32: [[0.5, -2.5, 2.0**127], [0.125, 1.0, -7.25]],
    Datatype.FP64: [[0.1, -2.5, 1.0e308], [5e-324, 1.0, -7.25]],
    Datatype.BYTES: [["a", "héllo", ""], ["x y", "0", "ü"]],
}


def _input(**fields: Any) -> dict[str, Any]:
    tensor: dict[str, Any] = {"name": "x", "datatype": "INT32", "shape": [3], "data": [1, 2, 3]}
    tensor.update(fields)
    return {key: value for key, value in tensor.items() if value is not _ABSENT}


_ABSENT = object()


def _decode(document: Any, json_length: int | None = None) -> InferenceRequest:
    body = document if isinstance(document, bytes) else orjson.dumps(document)
    return decode_infer_request(body, json_length, "m", "1")


def _refusal(document: Any, json_length: int | None = None) -> str:
    with pytest.raises(InvalidInputError) as info:
        _decode(document, json_length)
    assert info.value.message == f"{info.value.field}: {info.value.reason}"
    return info.value.message


def _expected(datatype: Datatype, rows: list[list[Any]]) -> list[list[Any]]:
    if datatype is Datatype.BYTES:
        return [[v.encode() for v in row] for row in rows]
    return rows


def _binary_body(
    tensors: list[tuple[str, Datatype, tuple[int, ...], bytes]], **top: Any
) -> tuple[bytes, int]:
    inputs = [
        {
            "name": name,
            "datatype": datatype.value,
            "shape": list(shape),
            "parameters": {"binary_data_size": len(raw)},
        }
        for name, datatype, shape, raw in tensors
    ]
    head = orjson.dumps({"inputs": inputs, **top})
    return head + b"".join(raw for *_, raw in tensors), len(head)


def _le_bytes(array: npt.NDArray[Any], datatype: Datatype) -> bytes:
    return np.asarray(array, dtype=datatype.numpy_dtype.newbyteorder("<")).tobytes()


def _request(**fields: Any) -> InferenceRequest:
    return InferenceRequest(model="m", version="1", inputs=[], **fields)


def _response(*tensors: Tensor, **fields: Any) -> InferenceResponse:
    return InferenceResponse(model="m", version="1", outputs=list(tensors), **fields)


# --- decoding JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", list(Datatype), ids=str)
@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
def test_json_data_of_every_datatype_decodes_to_its_numpy_dtype(
    datatype: Datatype, nested: bool
) -> None:
    rows = ROWS[datatype]
    data = rows if nested else [v for row in rows for v in row]
    request = _decode({"inputs": [_input(datatype=datatype.value, shape=[2, 3], data=data)]})
    (tensor,) = request.inputs
    assert tensor.datatype is datatype
    assert tensor.shape == (2, 3)
    assert tensor.data.dtype == datatype.numpy_dtype
    assert tensor.data.shape == (2, 3)
    assert tensor.data.tolist() == _expected(datatype, rows)


def test_request_fields_are_decoded() -> None:
    request = _decode(
        {
            "id": "req-7",
            "parameters": {"priority": 2},
            "inputs": [_input(name="a", parameters={"content_type": "np"})],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}, {"name": "p"}],
        }
    )
    assert (request.model, request.version, request.id) == ("m", "1", "req-7")
    assert request.parameters == {"priority": 2}
    assert request.inputs[0].name == "a"
    assert request.inputs[0].parameters == {"content_type": "np"}
    assert request.outputs == [
        RequestedOutput("predict", {"binary_data": True}),
        RequestedOutput("p", {}),
    ]


def test_absent_optional_fields_decode_as_none_or_empty() -> None:
    request = _decode({"inputs": [_input()]})
    assert request.id is None
    assert request.parameters == {}
    assert request.outputs is None
    assert request.inputs[0].parameters == {}


def test_datatype_names_are_case_insensitive() -> None:
    (tensor,) = _decode({"inputs": [_input(datatype="fp32", data=[1, 2, 3])]}).inputs
    assert tensor.datatype is Datatype.FP32
    assert tensor.data.dtype == np.float32


@pytest.mark.parametrize(
    ("shape", "data", "expected"),
    [([1], 5, [5]), ([], 5, 5), ([1, 1], 7, [[7]])],
    ids=["vector", "rank-0", "matrix"],
)
def test_bare_scalar_is_accepted_for_a_one_element_tensor(
    shape: list[int], data: int, expected: Any
) -> None:
    (tensor,) = _decode({"inputs": [_input(shape=shape, data=data)]}).inputs
    assert tensor.shape == tuple(shape)
    assert tensor.data.tolist() == expected


def test_empty_tensor_decodes_with_its_shape_and_dtype() -> None:
    (tensor,) = _decode({"inputs": [_input(datatype="FP32", shape=[0, 4], data=[])]}).inputs
    assert tensor.data.shape == (0, 4)
    assert tensor.data.dtype == np.float32


def test_integral_floats_are_accepted_for_integer_types() -> None:
    (tensor,) = _decode({"inputs": [_input(datatype="INT16", data=[1.0, -2.0, 3.0])]}).inputs
    assert tensor.data.tolist() == [1, -2, 3]
    assert tensor.data.dtype == np.int16


def test_several_inputs_keep_their_order() -> None:
    request = _decode(
        {"inputs": [_input(name="a"), _input(name="b", datatype="BOOL", shape=[1], data=[True])]}
    )
    assert [t.name for t in request.inputs] == ["a", "b"]
    assert request.inputs[1].data.tolist() == [True]


# --- JSON errors: each names its field and reason ------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"[1, 2]", "body: expected a JSON object, got a list"),
        (b'"inputs"', "body: expected a JSON object, got a string"),
        (b"null", "body: expected a JSON object, got null"),
        (b"{}", "inputs: required: a non-empty list of input tensors"),
        ({"inputs": []}, "inputs: required: a non-empty list of input tensors"),
        ({"inputs": {"name": "x"}}, "inputs: required: a non-empty list of input tensors"),
        ({"inputs": [5]}, "inputs[0]: expected an object, got a number"),
        ({"inputs": [_input(), "x"]}, "inputs[1]: expected an object, got a string"),
        ({"inputs": [_input(name=_ABSENT)]}, "inputs[0].name: required: a non-empty string"),
        ({"inputs": [_input(name="")]}, "inputs[0].name: required: a non-empty string"),
        ({"inputs": [_input(name=3)]}, "inputs[0].name: required: a non-empty string"),
        (
            {"inputs": [_input(datatype="FP8")]},
            f"inputs[0].datatype: unknown datatype 'FP8' (expected one of {ALL_TYPES})",
        ),
        (
            {"inputs": [_input(datatype=_ABSENT)]},
            f"inputs[0].datatype: required: one of {ALL_TYPES}",
        ),
        ({"inputs": [_input(datatype=32)]}, f"inputs[0].datatype: required: one of {ALL_TYPES}"),
        (
            {"inputs": [_input(shape=[-1, 3])]},
            f"inputs[0].shape: expected a list of at most {MAX_RANK} non-negative integers, "
            "got [-1, 3]",
        ),
        (
            {"inputs": [_input(shape=[True, 3])]},
            f"inputs[0].shape: expected a list of at most {MAX_RANK} non-negative integers, "
            "got [True, 3]",
        ),
        (
            {"inputs": [_input(shape=[3.0])]},
            f"inputs[0].shape: expected a list of at most {MAX_RANK} non-negative integers, "
            "got [3.0]",
        ),
        (
            {"inputs": [_input(shape="3")]},
            f"inputs[0].shape: expected a list of at most {MAX_RANK} non-negative integers, "
            "got '3'",
        ),
        (
            {"inputs": [_input(shape=_ABSENT)]},
            f"inputs[0].shape: expected a list of at most {MAX_RANK} non-negative integers, "
            "got None",
        ),
        (
            {"inputs": [_input(shape=[1] * (MAX_RANK + 1), data=[1])]},
            f"inputs[0].shape: expected a list of at most {MAX_RANK} non-negative integers, "
            f"got {[1] * (MAX_RANK + 1)}",
        ),
        (
            {"inputs": [_input(shape=[0, 2**62, 2**62], data=[])]},
            f"inputs[0].shape: [0, {2**62}, {2**62}] is too large",
        ),
        (
            {"inputs": [_input(data=_ABSENT)]},
            "inputs[0].data: required (or parameters.binary_data_size for binary data)",
        ),
        ({"inputs": [_input(shape=[2, 2])]}, "inputs[0].data: the shape needs 4 value(s), got 3"),
        ({"inputs": [_input(shape=[1])]}, "inputs[0].data: the shape needs 1 value(s), got 3"),
        (
            {"inputs": [_input(shape=[2, 2], data=[[1, 2], [3]])]},
            "inputs[0].data: nested lists must be regular (every row the same length)",
        ),
        (
            {"inputs": [_input(shape=[2], data=[1, [2]])]},
            "inputs[0].data: nested lists must be regular (every row the same length)",
        ),
        (
            {"inputs": [_input(datatype="FP32", data=["1", "2", "3"])]},
            "inputs[0].data: expected numbers for FP32, got strings",
        ),
        (
            {"inputs": [_input(data=[1, "2", 3])]},
            "inputs[0].data: expected numbers for INT32, got strings",
        ),
        (
            {"inputs": [_input(data=[1, None, 3])]},
            "inputs[0].data: expected numbers for INT32, got mixed or non-scalar values",
        ),
        (
            {"inputs": [_input(shape=[1], data=[{"a": 1}])]},
            "inputs[0].data: expected numbers for INT32, got mixed or non-scalar values",
        ),
        (
            {"inputs": [_input(data=[1, 2.5, 3])]},
            "inputs[0].data: expected integers for INT32, got fractional numbers",
        ),
        (
            {"inputs": [_input(datatype="UINT8", data=[1, 300, 3])]},
            "inputs[0].data: value 300 is out of range for UINT8 [0, 255]",
        ),
        (
            {"inputs": [_input(datatype="INT8", data=[-129, 0, 1])]},
            "inputs[0].data: value -129 is out of range for INT8 [-128, 127]",
        ),
        (
            {"inputs": [_input(datatype="UINT32", data=[1, -1, 3])]},
            "inputs[0].data: value -1 is out of range for UINT32 [0, 4294967295]",
        ),
        (
            {"inputs": [_input(datatype="FP32", data=[1.0, 1e39, 3.0])]},
            "inputs[0].data: a value is out of range for FP32",
        ),
        (
            {"inputs": [_input(datatype="FP16", data=[1.0, 1e39, 3.0])]},
            "inputs[0].data: a value is out of range for FP16",
        ),
        (
            {"inputs": [_input(datatype="FP16", data=[1.0, 70000, 3.0])]},
            "inputs[0].data: a value is out of range for FP16",
        ),
        (
            {"inputs": [_input(data=[True, False, True])]},
            "inputs[0].data: expected numbers for INT32, got true/false",
        ),
        (
            {"inputs": [_input(data=[1, True, 3])]},
            "inputs[0].data: expected numbers for INT32, got true/false among them",
        ),
        (
            {"inputs": [_input(datatype="FP64", shape=[2, 2], data=[[1.5, 2.0], [False, 1.0]])]},
            "inputs[0].data: expected numbers for FP64, got true/false among them",
        ),
        (
            {"inputs": [_input(datatype="BOOL", data=[1, 0, 1])]},
            "inputs[0].data: expected true/false for BOOL, got numbers",
        ),
        (
            {"inputs": [_input(datatype="BOOL", data=[True, 0, False])]},
            "inputs[0].data: expected true/false for BOOL, got numbers",
        ),
        (
            {"inputs": [_input(datatype="BOOL", data=["true", "false", "true"])]},
            "inputs[0].data: expected numbers for BOOL, got strings",
        ),
        (
            {"inputs": [_input(datatype="BYTES", data=["a", 1, "c"])]},
            "inputs[0].data: expected strings for BYTES, got a number",
        ),
        (
            {"inputs": [_input(datatype="BYTES", shape=[2, 1], data=[["a"], [None]])]},
            "inputs[0].data: expected strings for BYTES, got null",
        ),
        (
            {"inputs": [_input(datatype="BYTES", shape=[1], data=[True])]},
            "inputs[0].data: expected strings for BYTES, got a boolean",
        ),
        (
            {"inputs": [_input(datatype="BYTES", shape=[2], data=["a"])]},
            "inputs[0].data: the shape needs 2 value(s), got 1",
        ),
        ({"id": 7, "inputs": [_input()]}, "id: expected a string, got a number"),
        ({"id": ["a"], "inputs": [_input()]}, "id: expected a string, got a list"),
        ({"parameters": [1], "inputs": [_input()]}, "parameters: expected an object, got a list"),
        (
            {"inputs": [_input(parameters="binary")]},
            "inputs[0].parameters: expected an object, got a string",
        ),
        (
            {"inputs": [_input()], "outputs": {"name": "p"}},
            "outputs: expected a list, got an object",
        ),
        ({"inputs": [_input()], "outputs": ["p"]}, "outputs[0].name: required: a non-empty string"),
        (
            {"inputs": [_input()], "outputs": [{"name": "p"}, {"name": ""}]},
            "outputs[1].name: required: a non-empty string",
        ),
        (
            {"inputs": [_input()], "outputs": [{"name": "p", "parameters": 3}]},
            "outputs[0].parameters: expected an object, got a number",
        ),
    ],
)
def test_malformed_json_is_refused_with_field_and_reason(document: Any, message: str) -> None:
    assert _refusal(document) == message


def test_invalid_json_is_refused_on_the_body() -> None:
    message = _refusal(b'{"inputs": [')
    assert message.startswith("body: invalid JSON: ")


def test_bytes_nested_deeper_than_the_rank_limit_is_refused() -> None:
    data: Any = "a"
    for _ in range(MAX_RANK + 2):
        data = [data]
    message = _refusal({"inputs": [_input(datatype="BYTES", shape=[1], data=data)]})
    assert message == f"inputs[0].data: nested deeper than {MAX_RANK} levels"


def test_the_error_names_the_failing_input_by_index() -> None:
    document = {"inputs": [_input(name="a"), _input(name="b", datatype="UINT8", data=[1, 2, -3])]}
    assert _refusal(document) == "inputs[1].data: value -3 is out of range for UINT8 [0, 255]"


# --- decoding the binary tensor extension --------------------------------------------------


@pytest.mark.parametrize("datatype", FIXED_SIZE, ids=str)
def test_binary_data_of_every_fixed_size_datatype_is_read_little_endian(
    datatype: Datatype,
) -> None:
    values = np.array(ROWS[datatype], dtype=datatype.numpy_dtype)
    raw = _le_bytes(values, datatype)
    body, json_length = _binary_body([("x", datatype, (2, 3), raw)])
    (tensor,) = _decode(body, json_length).inputs
    assert tensor.data.dtype == datatype.numpy_dtype
    assert tensor.data.shape == (2, 3)
    np.testing.assert_array_equal(tensor.data, values)
    assert tensor.parameters == {}  # binary_data_size is consumed, not passed on


def test_binary_bytes_are_little_endian_on_the_wire() -> None:
    raw = b"\x01\x00\x00\x00" + b"\x00\x01\x00\x00" + b"\xff\xff\xff\xff"
    body, json_length = _binary_body([("x", Datatype.INT32, (3,), raw)])
    assert _decode(body, json_length).inputs[0].data.tolist() == [1, 256, -1]


def test_binary_bytes_elements_have_a_four_byte_little_endian_length_prefix() -> None:
    raw = b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x03\x00\x00\x00\xff\xfe\x00"
    body, json_length = _binary_body([("x", Datatype.BYTES, (3,), raw)])
    (tensor,) = _decode(body, json_length).inputs
    assert tensor.data.dtype == np.object_
    assert tensor.data.tolist() == [b"ab", b"", b"\xff\xfe\x00"]


def test_binary_and_json_inputs_mix_and_binary_is_taken_in_input_order() -> None:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "datatype": "UINT8",
                    "shape": [2],
                    "parameters": {"binary_data_size": 2},
                },
                _input(name="b"),
                {
                    "name": "c",
                    "datatype": "INT16",
                    "shape": [1],
                    "parameters": {"binary_data_size": 2},
                },
            ]
        }
    )
    request = _decode(head + b"\x07\x08" + b"\x09\x00", len(head))
    assert [t.data.tolist() for t in request.inputs] == [[7, 8], [1, 2, 3], [9]]


def test_other_tensor_parameters_survive_binary_decoding() -> None:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "UINT8",
                    "shape": [1],
                    "parameters": {"binary_data_size": 1, "content_type": "np"},
                }
            ]
        }
    )
    assert _decode(head + b"\x05", len(head)).inputs[0].parameters == {"content_type": "np"}


def test_json_length_equal_to_the_body_means_no_binary_data() -> None:
    body = orjson.dumps({"inputs": [_input()]})
    assert _decode(body, len(body)).inputs[0].data.tolist() == [1, 2, 3]


def test_a_body_made_by_the_triton_client_decodes() -> None:
    floats = triton.InferInput("f", [2, 2], "FP16")
    floats.set_data_from_numpy(np.array([[0.5, 1.0], [-2.0, 4.0]], np.float16), binary_data=True)
    words = triton.InferInput("w", [2], "BYTES")
    words.set_data_from_numpy(np.array([b"ab", b"\xff"], dtype=np.object_), binary_data=True)
    flags = triton.InferInput("b", [3], "BOOL")
    flags.set_data_from_numpy(np.array([True, False, True]), binary_data=False)
    wanted = triton.InferRequestedOutput("predict", binary_data=True)
    body, json_length = triton.InferenceServerClient.generate_request_body(
        [floats, words, flags], outputs=[wanted], request_id="r1"
    )
    request = _decode(body, json_length)
    assert request.id == "r1"
    assert request.inputs[0].data.tolist() == [[0.5, 1.0], [-2.0, 4.0]]
    assert request.inputs[1].data.tolist() == [b"ab", b"\xff"]
    assert request.inputs[2].data.tolist() == [True, False, True]
    assert request.outputs == [RequestedOutput("predict", {"binary_data": True})]


def _binary_input(datatype: str, shape: list[int], size: Any) -> dict[str, Any]:
    return {
        "name": "x",
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


@pytest.mark.parametrize(
    ("tensor", "tail", "message"),
    [
        (
            _binary_input("INT32", [2], 4),
            b"\x00" * 4,
            "inputs[0].parameters.binary_data_size: "
            "INT32 data of 2 element(s) takes 8 bytes, got 4",
        ),
        (
            _binary_input("FP64", [1], 16),
            b"\x00" * 16,
            "inputs[0].parameters.binary_data_size: "
            "FP64 data of 1 element(s) takes 8 bytes, got 16",
        ),
        (
            _binary_input("INT32", [2], 8),
            b"\x00" * 4,
            "inputs[0].parameters.binary_data_size: "
            "8 bytes of binary data claimed, only 4 left in the body",
        ),
        (
            _binary_input("UINT8", [2], 2),
            b"\x00" * 5,
            "body: 3 byte(s) of binary data not claimed by any input",
        ),
        (
            {**_binary_input("UINT8", [1], 1), "data": [1]},
            b"\x01",
            "inputs[0].data: must be absent when parameters.binary_data_size is set",
        ),
        (
            _binary_input("UINT8", [1], -1),
            b"\x01",
            "inputs[0].parameters.binary_data_size: expected a non-negative integer",
        ),
        (
            _binary_input("UINT8", [1], True),
            b"\x01",
            "inputs[0].parameters.binary_data_size: expected a non-negative integer",
        ),
        (
            _binary_input("UINT8", [1], "1"),
            b"\x01",
            "inputs[0].parameters.binary_data_size: expected a non-negative integer",
        ),
        (
            _binary_input("BYTES", [2], 6),
            b"\x02\x00\x00\x00ab",
            "inputs[0].parameters.binary_data_size: BYTES data ends after 1 of 2 element(s)",
        ),
        (
            _binary_input("BYTES", [1], 6),
            b"\x0a\x00\x00\x00ab",
            "inputs[0].parameters.binary_data_size: BYTES element 0 claims 10 bytes; only 2 remain",
        ),
        (
            _binary_input("BYTES", [1], 8),
            b"\x02\x00\x00\x00abcd",
            "inputs[0].parameters.binary_data_size: 2 byte(s) left after 1 BYTES element(s)",
        ),
        (
            _binary_input("BYTES", [2**40], 0),
            b"",
            f"inputs[0].parameters.binary_data_size: BYTES data ends after 0 of {2**40} element(s)",
        ),
        (
            _binary_input("FP32", [0, 2**62, 2**62], 0),
            b"",
            f"inputs[0].shape: [0, {2**62}, {2**62}] is too large",
        ),
    ],
    ids=[
        "too-few-bytes-for-shape",
        "too-many-bytes-for-shape",
        "claims-more-than-the-body",
        "leftover-bytes",
        "data-and-binary",
        "negative-size",
        "boolean-size",
        "string-size",
        "bytes-truncated",
        "bytes-element-overruns",
        "bytes-leftover-inside-blob",
        "bytes-huge-shape",
        "huge-empty-shape",
    ],
)
def test_malformed_binary_data_is_refused_with_field_and_reason(
    tensor: dict[str, Any], tail: bytes, message: str
) -> None:
    head = orjson.dumps({"inputs": [tensor]})
    assert _refusal(head + tail, len(head)) == message


def test_json_length_larger_than_the_body_is_refused() -> None:
    body = orjson.dumps({"inputs": [_input()]})
    message = _refusal(body, len(body) + 1)
    assert message == (
        f"inference-header-content-length: {len(body) + 1} is larger than the body "
        f"({len(body)} bytes)"
    )


def test_binary_data_without_a_json_length_is_refused() -> None:
    body = orjson.dumps({"inputs": [_binary_input("UINT8", [1], 1)]})
    message = _refusal(body)
    assert message == (
        "inputs[0].parameters.binary_data_size: "
        "1 bytes of binary data claimed, only 0 left in the body"
    )


def test_a_json_length_that_cuts_the_json_short_is_invalid_json() -> None:
    body = orjson.dumps({"inputs": [_input()]})
    assert _refusal(body, 10).startswith("body: invalid JSON: ")


# --- encoding -------------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", list(Datatype), ids=str)
def test_every_datatype_encodes_as_json(datatype: Datatype) -> None:
    values = _expected(datatype, ROWS[datatype])
    array = np.array(values, dtype=datatype.numpy_dtype)
    tensor = Tensor("out", datatype, (2, 3), array)
    body, content_type, json_length = encode_infer_response(_response(tensor), _request())
    assert content_type == b"application/json"
    assert json_length is None
    document = orjson.loads(body)
    assert document["model_name"] == "m"
    assert document["model_version"] == "1"
    (output,) = document["outputs"]
    assert output["name"] == "out"
    assert output["datatype"] == datatype.value
    assert output["shape"] == [2, 3]
    assert "parameters" not in output
    flat = [v for row in ROWS[datatype] for v in row]
    if datatype is Datatype.BYTES:
        assert output["data"] == flat
        return
    json_type = bool if datatype is Datatype.BOOL else float if datatype.is_float else int
    assert {type(v) for v in output["data"]} == {json_type}
    # floats are written in their type's shortest round-trip form: read them back as that type
    np.testing.assert_array_equal(np.array(output["data"], dtype=datatype.numpy_dtype), flat)


def test_fp16_encodes_as_json_numbers() -> None:
    tensor = Tensor.from_numpy("half", np.array([0.5, -2.0, 65504.0], dtype=np.float16))
    body, _, _ = encode_infer_response(_response(tensor), _request())
    assert orjson.loads(body)["outputs"][0]["data"] == [0.5, -2.0, 65504.0]


def test_id_is_echoed_only_when_the_request_had_one() -> None:
    tensor = Tensor.from_numpy("out", np.array([1]))
    with_id, _, _ = encode_infer_response(_response(tensor), _request(id="req-9"))
    without_id, _, _ = encode_infer_response(_response(tensor), _request())
    assert orjson.loads(with_id)["id"] == "req-9"
    assert "id" not in orjson.loads(without_id)


def test_response_and_tensor_parameters_are_encoded() -> None:
    tensor = Tensor.from_numpy("out", np.array([1]))
    tensor.parameters = {"unit": "cm"}
    body, _, _ = encode_infer_response(_response(tensor, parameters={"served_by": "a"}), _request())
    document = orjson.loads(body)
    assert document["parameters"] == {"served_by": "a"}
    assert document["outputs"][0]["parameters"] == {"unit": "cm"}


def test_utf8_bytes_encode_as_strings() -> None:
    tensor = Tensor.from_numpy("out", np.array([b"ab", "é".encode()], dtype=np.object_))
    body, _, _ = encode_infer_response(_response(tensor), _request())
    output = orjson.loads(body)["outputs"][0]
    assert output["data"] == ["ab", "é"]
    assert "parameters" not in output


def test_bytes_that_are_not_utf8_encode_as_base64() -> None:
    items = [b"ab", b"\xff\xfe", b""]
    tensor = Tensor.from_numpy("out", np.array(items, dtype=np.object_))
    body, _, _ = encode_infer_response(_response(tensor), _request())
    output = orjson.loads(body)["outputs"][0]
    assert output["parameters"] == {"content_type": "base64"}
    assert [base64.b64decode(item) for item in output["data"]] == items


def _split(body: bytes, json_length: int | None) -> tuple[dict[str, Any], bytes]:
    assert json_length is not None
    document: dict[str, Any] = orjson.loads(body[:json_length])
    return document, body[json_length:]


def test_an_output_asking_for_binary_data_is_sent_binary() -> None:
    ints = Tensor.from_numpy("predict", np.array([1, 256, -1], dtype=np.int32))
    floats = Tensor.from_numpy("proba", np.array([0.5], dtype=np.float64))
    request = _request(
        outputs=[RequestedOutput("predict", {"binary_data": True}), RequestedOutput("proba")]
    )
    body, content_type, json_length = encode_infer_response(_response(ints, floats), request)
    assert content_type == b"application/octet-stream"
    document, tail = _split(body, json_length)
    first, second = document["outputs"]
    assert "data" not in first
    assert first["parameters"] == {"binary_data_size": 12}
    assert tail == b"\x01\x00\x00\x00\x00\x01\x00\x00\xff\xff\xff\xff"
    assert second["data"] == [0.5]


def test_binary_data_output_makes_every_output_binary_unless_one_says_false() -> None:
    ints = Tensor.from_numpy("predict", np.array([[1, 2]], dtype=np.int64))
    words = Tensor.from_numpy("label", np.array([b"ab", b""], dtype=np.object_))
    floats = Tensor.from_numpy("proba", np.array([0.25], dtype=np.float32))
    request = _request(
        parameters={"binary_data_output": True},
        outputs=[
            RequestedOutput("predict"),
            RequestedOutput("label"),
            RequestedOutput("proba", {"binary_data": False}),
        ],
    )
    body, content_type, json_length = encode_infer_response(_response(ints, words, floats), request)
    assert content_type == b"application/octet-stream"
    document, tail = _split(body, json_length)
    predict, label, proba = document["outputs"]
    assert predict["parameters"] == {"binary_data_size": 16}
    assert label["parameters"] == {"binary_data_size": 10}
    assert proba["data"] == [0.25]
    assert "parameters" not in proba
    ints_raw, words_raw = tail[:16], tail[16:]
    np.testing.assert_array_equal(np.frombuffer(ints_raw, dtype="<i8"), [1, 2])
    assert words_raw == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)


def test_binary_data_output_without_an_outputs_filter_applies_to_all() -> None:
    tensor = Tensor.from_numpy("predict", np.array([True, False]))
    request = _request(parameters={"binary_data_output": True})
    body, _, json_length = encode_infer_response(_response(tensor), request)
    document, tail = _split(body, json_length)
    assert document["outputs"][0]["parameters"] == {"binary_data_size": 2}
    assert tail == b"\x01\x00"


def test_a_binary_response_is_read_by_the_triton_client() -> None:
    ints = Tensor.from_numpy("predict", np.array([0, 2], dtype=np.int64))
    proba = Tensor.from_numpy("proba", np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32))
    words = Tensor.from_numpy("label", np.array([b"setosa", b"\xff"], dtype=np.object_))
    request = _request(id="r", parameters={"binary_data_output": True})
    body, _, json_length = encode_infer_response(_response(ints, proba, words), request)
    result = triton.InferResult.from_response_body(body, header_length=json_length)
    np.testing.assert_array_equal(result.as_numpy("predict"), [0, 2])
    np.testing.assert_array_equal(result.as_numpy("proba"), proba.data)
    assert result.as_numpy("label").tolist() == [b"setosa", b"\xff"]
    assert result.get_response()["id"] == "r"


# --- property: binary request bytes round-trip ---------------------------------------------


@st.composite
def tensors(draw: st.DrawFn) -> tuple[Datatype, npt.NDArray[Any]]:
    datatype = draw(st.sampled_from(Datatype))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if datatype is Datatype.BYTES:
        items = draw(
            st.lists(
                st.binary(max_size=8), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))
            )
        )
        array = np.empty(len(items), dtype=np.object_)
        array[:] = items
        return datatype, array.reshape(shape)
    return datatype, draw(hnp.arrays(datatype.numpy_dtype, shape))


@settings(max_examples=150, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=3))
def test_binary_request_bytes_decode_to_equal_arrays(
    generated: list[tuple[Datatype, npt.NDArray[Any]]],
) -> None:
    inputs = []
    for i, (datatype, array) in enumerate(generated):
        tensor = triton.InferInput(f"t{i}", list(array.shape), datatype.value)
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    body, json_length = triton.InferenceServerClient.generate_request_body(inputs)
    request = _decode(body, json_length)
    for (datatype, array), tensor in zip(generated, request.inputs, strict=True):
        assert tensor.datatype is datatype
        assert tensor.shape == array.shape
        assert tensor.data.dtype == datatype.numpy_dtype
        np.testing.assert_array_equal(tensor.data, array)
    # and back: the same tensors as binary outputs read by the client give the same arrays
    response = _response(*request.inputs)
    out, _, out_length = encode_infer_response(
        response, _request(parameters={"binary_data_output": True})
    )
    result = triton.InferResult.from_response_body(out, header_length=out_length)
    for i, (_, array) in enumerate(generated):
        np.testing.assert_array_equal(result.as_numpy(f"t{i}").reshape(array.shape), array)


# --- client side: requests encoded, responses decoded ----------------------------------------


def _rows(datatype: Datatype) -> npt.NDArray[Any]:
    return np.array(_expected(datatype, ROWS[datatype]), dtype=datatype.numpy_dtype)


def _client_round_trip(
    tensors: list[Tensor], binary: bool, **fields: Any
) -> tuple[InferenceRequest, InferenceResponse, int | None, int | None]:
    """Client encodes, server decodes and answers with the same tensors, client decodes."""
    request = InferenceRequest("front", tensors, version="9", **fields)
    body, json_length = encode_infer_request(request, binary=binary)
    seen = decode_infer_request(body, json_length, "m", "1")
    answer, _, answer_length = encode_infer_response(_response(*seen.inputs), seen)
    return seen, decode_infer_response(answer, answer_length, "front"), json_length, answer_length


def _assert_same(got: Tensor, want: Tensor) -> None:
    assert (got.name, got.datatype, got.shape) == (want.name, want.datatype, want.shape)
    assert got.data.dtype == want.datatype.numpy_dtype
    assert got.data.shape == want.shape
    np.testing.assert_array_equal(got.data, want.data)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("datatype", list(Datatype), ids=str)
def test_every_datatype_round_trips_client_server_client(datatype: Datatype, binary: bool) -> None:
    tensor = Tensor("x", datatype, (2, 3), _rows(datatype))
    seen, answer, sent_length, answer_length = _client_round_trip(
        [tensor], binary, id="r-1", parameters={"priority": 2}
    )
    assert (sent_length is not None, answer_length is not None) == (binary, binary)
    _assert_same(seen.inputs[0], tensor)
    assert seen.id == "r-1"
    expected = {"priority": 2, "binary_data_output": True} if binary else {"priority": 2}
    assert seen.parameters == expected
    (output,) = answer.outputs
    _assert_same(output, tensor)
    assert output.parameters == {}
    assert (answer.model, answer.version, answer.id) == ("front", "1", "r-1")


def test_json_requests_are_plain_oip_json() -> None:
    request = InferenceRequest(
        "front", [Tensor.from_numpy("x", np.array([[1, 2]], dtype=np.int32))], id="a"
    )
    body, json_length = encode_infer_request(request, binary=False)
    assert json_length is None
    assert orjson.loads(body) == {
        "id": "a",
        "inputs": [{"name": "x", "datatype": "INT32", "shape": [1, 2], "data": [1, 2]}],
    }


def test_binary_requests_put_tensors_after_the_json_in_input_order() -> None:
    ints = Tensor.from_numpy("i", np.array([1, -2], dtype=np.int16))
    words = Tensor.from_numpy("w", np.array([b"ab"], dtype=np.object_))
    body, json_length = encode_infer_request(InferenceRequest("m", [ints, words]), binary=True)
    document, tail = _split(body, json_length)
    assert document == {
        "parameters": {"binary_data_output": True},
        "inputs": [
            {"name": "i", "datatype": "INT16", "shape": [2], "parameters": {"binary_data_size": 4}},
            {"name": "w", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
        ],
    }
    assert tail == b"\x01\x00\xfe\xff" + struct.pack("<I", 2) + b"ab"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_the_clients_binary_choices_are_replaced_and_other_parameters_kept(binary: bool) -> None:
    tensor = Tensor.from_numpy("x", np.array([1.5]))
    tensor.parameters = {"unit": "cm", "binary_data_size": 99}  # a stale size is not forwarded
    request = InferenceRequest(
        "m",
        [tensor],
        parameters={"binary_data_output": not binary, "priority": 1},
        outputs=[
            RequestedOutput("a", {"binary_data": not binary, "classification": 2}),
            RequestedOutput("b"),
        ],
    )
    body, json_length = encode_infer_request(request, binary=binary)
    document = orjson.loads(body[:json_length] if json_length else body)
    if binary:
        assert document["parameters"] == {"priority": 1, "binary_data_output": True}
        assert document["inputs"][0]["parameters"] == {"unit": "cm", "binary_data_size": 8}
        assert document["outputs"] == [
            {"name": "a", "parameters": {"classification": 2, "binary_data": True}},
            {"name": "b", "parameters": {"binary_data": True}},
        ]
    else:
        assert document["parameters"] == {"priority": 1}
        assert document["inputs"][0]["parameters"] == {"unit": "cm"}
        assert document["inputs"][0]["data"] == [1.5]
        assert document["outputs"] == [
            {"name": "a", "parameters": {"classification": 2}},
            {"name": "b"},
        ]


@pytest.mark.parametrize(
    "tensor",
    [
        Tensor.from_numpy("x", np.array([1.0, np.nan, -np.inf], dtype=np.float32)),
        Tensor.from_numpy("x", np.array([b"ok", b"\xff\xfe"], dtype=np.object_)),
    ],
    ids=["non-finite", "not-utf8"],
)
def test_json_requests_send_what_json_cannot_carry_in_binary(tensor: Tensor) -> None:
    plain = Tensor.from_numpy("y", np.array([1, 2]))
    body, json_length = encode_infer_request(InferenceRequest("m", [plain, tensor]), binary=False)
    document, _ = _split(body, json_length)
    assert document["inputs"][0]["data"] == [1, 2]
    assert "data" not in document["inputs"][1]
    assert "binary_data_output" not in document.get("parameters", {})
    seen = decode_infer_request(body, json_length, "m", None)
    np.testing.assert_array_equal(seen.inputs[1].data, tensor.data)


def test_json_responses_carry_non_finite_floats_as_nan_and_other_bytes_as_base64() -> None:
    floats = Tensor.from_numpy("f", np.array([np.nan, np.inf, 2.5], dtype=np.float64))
    words = Tensor.from_numpy("w", np.array([b"\x00\xff", b"fine"], dtype=np.object_))
    payload, _, length = encode_infer_response(_response(floats, words), _request())
    assert length is None
    answer = decode_infer_response(payload, None, "m")
    np.testing.assert_array_equal(answer.outputs[0].data, [np.nan, np.nan, 2.5])
    assert answer.outputs[1].data.tolist() == [b"\x00\xff", b"fine"]
    assert answer.outputs[1].parameters == {}


def test_response_fields_are_decoded() -> None:
    document = {
        "model_name": "upstream-name",
        "model_version": 3,
        "id": "u-1",
        "parameters": {"served_by": "gpu-2"},
        "outputs": [
            {"name": "p", "datatype": "int64", "shape": [2], "data": [1, 2]},
            {"name": "q", "datatype": "FP32", "shape": [1], "data": [0.5], "parameters": {"u": 1}},
        ],
    }
    answer = decode_infer_response(orjson.dumps(document), None, "front")
    assert (answer.model, answer.version, answer.id) == ("front", "3", "u-1")
    assert answer.parameters == {"served_by": "gpu-2"}
    assert [(t.name, t.datatype, t.shape) for t in answer.outputs] == [
        ("p", Datatype.INT64, (2,)),
        ("q", Datatype.FP32, (1,)),
    ]
    assert answer.outputs[1].parameters == {"u": 1}
    bare = decode_infer_response(b'{"outputs": []}', None, "front")
    assert (bare.version, bare.id, bare.outputs, bare.parameters) == (None, None, [], {})


def _bad_response(body: bytes, json_length: int | None = None) -> str:
    with pytest.raises(BadResponseError) as info:
        decode_infer_response(body, json_length, "m")
    prefix = "model 'm': the upstream sent an invalid response: "
    assert info.value.message.startswith(prefix)
    return info.value.message.removeprefix(prefix)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "body: expected a JSON object, got a list"),
        ({"model_name": "m"}, "outputs: required: a list of output tensors"),
        ({"outputs": {}}, "outputs: required: a list of output tensors"),
        ({"id": 7, "outputs": []}, "id: expected a string, got a number"),
        ({"model_version": [1], "outputs": []}, "model_version: expected a string, got a list"),
        ({"outputs": [], "parameters": 1}, "parameters: expected an object, got a number"),
        ({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1]}]}, "outputs[0].data: req"),
        (
            {"outputs": [{"name": "y", "datatype": "INT8", "shape": [2], "data": [1, None]}]},
            "outputs[0].data: expected numbers for INT8",
        ),
        (
            {"outputs": [{"name": "y", "datatype": "INT8", "shape": [1], "data": [300]}]},
            "outputs[0].data: value 300 is out of range for INT8",
        ),
        (
            {
                "outputs": [
                    {"name": "ok", "datatype": "BOOL", "shape": [1], "data": [True]},
                    {"name": "y", "datatype": "FP8", "shape": [1], "data": [1]},
                ]
            },
            "outputs[1].datatype: unknown datatype 'FP8'",
        ),
        (
            {
                "outputs": [
                    {
                        "name": "y",
                        "datatype": "BYTES",
                        "shape": [2],
                        "data": ["YWI=", "not base64!"],
                        "parameters": {"content_type": "base64"},
                    }
                ]
            },
            "outputs[0].data: element 1 is not valid base64",
        ),
    ],
)
def test_an_invalid_response_is_a_bad_response_naming_the_field(
    document: Any, message: str
) -> None:
    assert _bad_response(orjson.dumps(document)).startswith(message)


def test_binary_response_errors_name_the_field() -> None:
    head = orjson.dumps(
        {
            "outputs": [
                {
                    "name": "y",
                    "datatype": "INT32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    )
    assert _bad_response(head + b"\x00" * 8 + b"xyz", len(head)) == (
        "body: 3 byte(s) of binary data not claimed by any output"
    )
    assert _bad_response(head + b"\x00" * 4, len(head)) == (
        "outputs[0].parameters.binary_data_size: "
        "8 bytes of binary data claimed, only 4 left in the body"
    )
    assert _bad_response(head, len(head) + 1).startswith("inference-header-content-length: ")
    assert _bad_response(b"{nope").startswith("body: invalid JSON: ")


# --- property: client -> server -> client keeps every tensor ---------------------------------


def _after_json(datatype: Datatype, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """What a JSON response can say of `array`: non-finite floats come back as NaN."""
    if not datatype.is_float:
        return array
    return np.where(np.isfinite(array), array, np.nan).astype(array.dtype)


@settings(max_examples=150, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=3), st.booleans())
def test_any_tensors_round_trip_client_server_client(
    generated: list[tuple[Datatype, npt.NDArray[Any]]], binary: bool
) -> None:
    inputs = [
        Tensor(f"t{i}", datatype, array.shape, array)
        for i, (datatype, array) in enumerate(generated)
    ]
    seen, answer, _, answer_length = _client_round_trip(inputs, binary)
    assert (answer_length is not None) is binary
    for tensor, server_side, client_side in zip(inputs, seen.inputs, answer.outputs, strict=True):
        _assert_same(server_side, tensor)  # the request arrives exactly, JSON or binary
        want = tensor.data if binary else _after_json(tensor.datatype, tensor.data)
        _assert_same(client_side, Tensor(tensor.name, tensor.datatype, tensor.shape, want))
