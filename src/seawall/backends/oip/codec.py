"""Open Inference Protocol v2 REST bodies, JSON and the binary tensor extension, both ways.

The server side (the gateway) decodes requests and encodes responses; the client side (the remote
OIP backend) encodes requests and decodes responses, symmetrically.

Binary tensor data (the Triton/KServe extension): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by raw tensors in input order; an input with
`parameters.binary_data_size` takes its data from there. BYTES elements are each a 4-byte
little-endian length and the bytes. Outputs are returned in binary when the request asks for it
(`outputs[i].parameters.binary_data` or `parameters.binary_data_output`).

Every decoding error of a request is an `InvalidInputError` whose field is the JSON path, e.g.
`inputs[0].shape: expected a list of non-negative integers`; every decoding error of an upstream's
response is a `BadResponseError` naming the path the same way.

JSON cannot carry every value: a BYTES element that is not UTF-8 is written as base64 with
`parameters.content_type: "base64"` (MLServer's convention) in a response and read back by the
client side; a non-finite float is written as `null` in a response and read back as NaN. A request
tensor JSON cannot carry goes in the binary extension even when JSON was asked for.
"""

from __future__ import annotations

import base64
import contextlib
import math
import struct
from collections.abc import Iterable
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from seawall.errors import BadResponseError, InvalidInputError
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestedOutput,
    Tensor,
    coerce,
)

__all__ = [
    "EncodedRequest",
    "EncodedResponse",
    "decode_infer_request",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
]

MAX_RANK = 32
_DATATYPES = ", ".join(d.value for d in Datatype)
#: Datatypes by their name as sent (a dict lookup: `Datatype(...)` is slow on every tensor).
_BY_NAME = {d.value: d for d in Datatype}
_LENGTH = struct.Struct("<I")

#: body, content type, JSON header length (set when binary data follows the JSON)
EncodedResponse = tuple[bytes, bytes, int | None]
#: body, JSON header length (set when binary data follows the JSON)
EncodedRequest = tuple[bytes, int | None]


def decode_infer_request(
    body: bytes, json_length: int | None, model: str, version: str | None
) -> InferenceRequest:
    """Decode an infer request body; `json_length` is `Inference-Header-Content-Length`."""
    binary = _BinaryReader(body, json_length)
    try:
        document = orjson.loads(binary.head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError("body", f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInputError("body", f"expected a JSON object, got {_json_type(document)}")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError("id", f"expected a string, got {_json_type(request_id)}")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("inputs", "required: a non-empty list of input tensors")
    inputs = [_decode_input(item, f"inputs[{i}]", binary) for i, item in enumerate(raw_inputs)]
    binary.check_consumed()
    return InferenceRequest(
        model=model,
        version=version,
        inputs=inputs,
        id=request_id,
        parameters=_parameters(document.get("parameters"), "parameters"),
        outputs=_requested_outputs(document.get("outputs")),
    )


def _decode_input(
    item: Any, field: str, binary: _BinaryReader, *, response: bool = False
) -> Tensor:
    """One tensor of a request (`response`: of a response, which may hold null and base64)."""
    if not isinstance(item, dict):
        raise InvalidInputError(field, f"expected an object, got {_json_type(item)}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{field}.name", "required: a non-empty string")
    datatype = _datatype(item.get("datatype"), f"{field}.datatype")
    shape = _shape(item.get("shape"), f"{field}.shape")
    parameters = _parameters(item.get("parameters"), f"{field}.parameters")
    size = math.prod(shape)
    binary_size = parameters.pop("binary_data_size", None)
    if binary_size is not None:
        if "data" in item:
            raise InvalidInputError(
                f"{field}.data", "must be absent when parameters.binary_data_size is set"
            )
        if isinstance(binary_size, bool) or not isinstance(binary_size, int) or binary_size < 0:
            raise InvalidInputError(
                f"{field}.parameters.binary_data_size", "expected a non-negative integer"
            )
        raw = binary.take(binary_size, f"{field}.parameters.binary_data_size")
        array = _from_binary(raw, datatype, size, field)
    else:
        if "data" not in item:
            raise InvalidInputError(
                f"{field}.data", "required (or parameters.binary_data_size for binary data)"
            )
        array = _from_json(
            item["data"], datatype, size, field, binary.may_hold_booleans, nulls=response
        )
        if response and datatype is Datatype.BYTES and parameters.get("content_type") == "base64":
            array = _from_base64(array, f"{field}.data")
            del parameters["content_type"]
    try:
        array = array.reshape(shape)
    except ValueError:  # an empty tensor whose other dimensions overflow numpy's size limit
        raise InvalidInputError(f"{field}.shape", f"{list(shape)} is too large") from None
    return Tensor(name, datatype, shape, array, parameters)


def _datatype(value: Any, field: str) -> Datatype:
    if not isinstance(value, str):
        raise InvalidInputError(field, f"required: one of {_DATATYPES}")
    datatype = _BY_NAME.get(value) or _BY_NAME.get(value.upper())
    if datatype is None:
        raise InvalidInputError(field, f"unknown datatype {value!r} (expected one of {_DATATYPES})")
    return datatype


def _shape(value: Any, field: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_RANK
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)
    ):
        raise InvalidInputError(
            field, f"expected a list of at most {MAX_RANK} non-negative integers, got {value!r}"
        )
    return tuple(value)


def _parameters(value: Any, field: str) -> Parameters:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(field, f"expected an object, got {_json_type(value)}")
    return dict(value)


def _requested_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidInputError("outputs", f"expected a list, got {_json_type(value)}")
    outputs = []
    for j, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise InvalidInputError(f"outputs[{j}].name", "required: a non-empty string")
        outputs.append(
            RequestedOutput(
                item["name"], _parameters(item.get("parameters"), f"outputs[{j}].parameters")
            )
        )
    return outputs


def _from_json(
    data: Any,
    datatype: Datatype,
    size: int,
    field: str,
    may_hold_booleans: bool,
    *,
    nulls: bool = False,
) -> npt.NDArray[Any]:
    if not isinstance(data, list):
        data = [data]  # a bare scalar for a one-element tensor
    if datatype is Datatype.BYTES:
        return _bytes_from_json(data, size, field)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidInputError(
            f"{field}.data", "nested lists must be regular (every row the same length)"
        ) from None
    if nulls and datatype.is_float and array.dtype.kind == "O":
        # A response's non-finite floats arrive as null (JSON has no NaN): read them as NaN.
        with contextlib.suppress(ValueError, TypeError):
            array = np.asarray(data, dtype=np.float64)
    if array.size != size:
        raise InvalidInputError(f"{field}.data", _count_reason(size, array.size))
    if size == 0:
        return np.empty(0, dtype=datatype.numpy_dtype)
    if datatype is not Datatype.BOOL and array.dtype.kind in "iuf":
        if may_hold_booleans and bool in _element_types(data, array.ndim):
            # numpy reads [1, true] as [1, 1]: a boolean must not pass as a number
            raise InvalidInputError(
                f"{field}.data", f"expected numbers for {datatype}, got true/false among them"
            )
        if datatype is Datatype.UINT64 and array.dtype.kind == "f":
            # numpy reads [2**64 - 1, 1] as float64; read it as uint64 unless a value is negative
            with contextlib.suppress(OverflowError, TypeError):
                if _element_types(data, array.ndim) == {int}:
                    array = np.asarray(data, dtype=np.uint64)
        elif datatype.is_float and array.dtype.kind in "iu":
            # A JSON integer sent for a float tensor is a number like any other: the declared
            # type decides the precision, exactly as for a literal with a decimal point.
            array = array.astype(np.float64)
    try:
        return coerce(array.reshape(-1), datatype)
    except ValueError as exc:
        raise InvalidInputError(f"{field}.data", str(exc)) from None


def _element_types(data: list[Any], depth: int) -> set[type]:
    items: Iterable[Any] = data
    for _ in range(depth - 1):
        items = chain.from_iterable(items)
    return set(map(type, items))


def _bytes_from_json(data: list[Any], size: int, field: str) -> npt.NDArray[Any]:
    flat: list[bytes] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            if len(stack) > MAX_RANK:
                raise InvalidInputError(f"{field}.data", f"nested deeper than {MAX_RANK} levels")
            stack.append(iter(item))
        elif isinstance(item, str):
            flat.append(item.encode())
        else:
            raise InvalidInputError(
                f"{field}.data", f"expected strings for BYTES, got {_json_type(item)}"
            )
    if len(flat) != size:
        raise InvalidInputError(f"{field}.data", _count_reason(size, len(flat)))
    array = np.empty(size, dtype=np.object_)
    array[:] = flat
    return array


_END = object()


def _from_base64(items: npt.NDArray[Any], field: str) -> npt.NDArray[Any]:
    out = np.empty(items.shape, dtype=np.object_)
    for i, item in enumerate(items):
        try:
            out[i] = base64.b64decode(item, validate=True)
        except ValueError:  # binascii.Error
            raise InvalidInputError(field, f"element {i} is not valid base64") from None
    return out


def _count_reason(expected: int, got: int) -> str:
    return f"the shape needs {expected} value(s), got {got}"


def _from_binary(raw: bytes, datatype: Datatype, size: int, field: str) -> npt.NDArray[Any]:
    if datatype is Datatype.BYTES:
        return _bytes_from_binary(raw, size, field)
    expected = size * datatype.itemsize
    if len(raw) != expected:
        raise InvalidInputError(
            f"{field}.parameters.binary_data_size",
            f"{datatype} data of {size} element(s) takes {expected} bytes, got {len(raw)}",
        )
    little = datatype.numpy_dtype.newbyteorder("<")
    return np.frombuffer(raw, dtype=little).astype(datatype.numpy_dtype)


def _bytes_from_binary(raw: bytes, size: int, field: str) -> npt.NDArray[Any]:
    items: list[bytes] = []  # allocated as it is read: a huge shape must not allocate up front
    offset = 0
    for i in range(size):
        if offset + 4 > len(raw):
            raise InvalidInputError(
                f"{field}.parameters.binary_data_size",
                f"BYTES data ends after {i} of {size} element(s)",
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInputError(
                f"{field}.parameters.binary_data_size",
                f"BYTES element {i} claims {length} bytes; only {len(raw) - offset} remain",
            )
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    if offset != len(raw):
        raise InvalidInputError(
            f"{field}.parameters.binary_data_size",
            f"{len(raw) - offset} byte(s) left after {size} BYTES element(s)",
        )
    array = np.empty(size, dtype=np.object_)
    array[:] = items
    return array


class _BinaryReader:
    """The JSON head of a body, and the binary tensor data after it, handed out in order."""

    def __init__(self, body: bytes, json_length: int | None) -> None:
        if json_length is None:
            self.head, self._tail = body, b""
        elif json_length > len(body):
            raise InvalidInputError(
                "inference-header-content-length",
                f"{json_length} is larger than the body ({len(body)} bytes)",
            )
        else:
            self.head, self._tail = body[:json_length], body[json_length:]
        # Cheap pre-check: only a body that spells a boolean can mix one into numeric data.
        self.may_hold_booleans = b"true" in self.head or b"false" in self.head
        self._offset = 0

    def take(self, size: int, field: str) -> bytes:
        if self._offset + size > len(self._tail):
            left = len(self._tail) - self._offset
            raise InvalidInputError(
                field, f"{size} bytes of binary data claimed, only {left} left in the body"
            )
        chunk = self._tail[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def check_consumed(self, tensors: str = "input") -> None:
        left = len(self._tail) - self._offset
        if left:
            raise InvalidInputError(
                "body", f"{left} byte(s) of binary data not claimed by any {tensors}"
            )


def encode_infer_response(
    response: InferenceResponse, request: InferenceRequest
) -> EncodedResponse:
    """Encode a response, in binary for the outputs whose request asked for it."""
    binary_default = request.parameters.get("binary_data_output") is True
    wanted = {o.name: o for o in request.outputs} if request.outputs is not None else {}
    blobs: list[bytes] = []
    outputs: list[dict[str, Any]] = []
    for tensor in response.outputs:
        requested = wanted.get(tensor.name)
        binary = (
            requested.parameters.get("binary_data", binary_default) if requested else binary_default
        )
        outputs.append(_encode_tensor(tensor, binary is True, blobs))
    document: dict[str, Any] = {"model_name": request.model, "model_version": request.version}
    if request.id is not None:
        document["id"] = request.id
    if response.parameters:
        document["parameters"] = response.parameters
    document["outputs"] = outputs
    head = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, b"application/json", None
    return head + b"".join(blobs), b"application/octet-stream", len(head)


def encode_infer_request(request: InferenceRequest, *, binary: bool) -> EncodedRequest:
    """Encode a request for an upstream OIP server (the client side of `decode_infer_request`).

    `binary`: every input in the binary extension and every output asked for in binary;
    otherwise JSON both ways, except an input JSON cannot carry (BYTES that are not UTF-8,
    non-finite floats), which goes binary. The client's own `binary_data` choices are not
    forwarded: how the gateway talks to its upstream is the gateway's business.
    """
    blobs: list[bytes] = []
    inputs = [_encode_tensor(t, binary or not _json_can_carry(t), blobs) for t in request.inputs]
    document: dict[str, Any] = {}
    if request.id is not None:
        document["id"] = request.id
    parameters = {k: v for k, v in request.parameters.items() if k != "binary_data_output"}
    if binary:
        parameters["binary_data_output"] = True
    if parameters:
        document["parameters"] = parameters
    document["inputs"] = inputs
    if request.outputs is not None:
        document["outputs"] = [_requested_output(o, binary) for o in request.outputs]
    head = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def _requested_output(output: RequestedOutput, binary: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": output.name}
    parameters = {k: v for k, v in output.parameters.items() if k != "binary_data"}
    if binary:
        parameters["binary_data"] = True
    if parameters:
        entry["parameters"] = parameters
    return entry


def _json_can_carry(tensor: Tensor) -> bool:
    if tensor.datatype is Datatype.BYTES:
        try:
            for item in tensor.data.reshape(-1):
                if isinstance(item, bytes):
                    item.decode()
        except UnicodeDecodeError:
            return False
        return True
    return not tensor.datatype.is_float or bool(np.isfinite(tensor.data).all())


def _encode_tensor(tensor: Tensor, binary: bool, blobs: list[bytes]) -> dict[str, Any]:
    """A tensor's JSON entry; in binary, its data is appended to `blobs` instead."""
    entry: dict[str, Any] = {
        "name": tensor.name,
        "datatype": tensor.datatype.value,
        "shape": list(tensor.shape),
    }
    parameters = {k: v for k, v in tensor.parameters.items() if k != "binary_data_size"}
    if binary:
        raw = _to_binary(tensor)
        parameters["binary_data_size"] = len(raw)
        blobs.append(raw)
    else:
        entry["data"] = _to_json(tensor, parameters)
    if parameters:
        entry["parameters"] = parameters
    return entry


def decode_infer_response(body: bytes, json_length: int | None, model: str) -> InferenceResponse:
    """Decode an upstream's infer response (the client side of `encode_infer_response`).

    `json_length` is the response's `Inference-Header-Content-Length`. The response's
    `model_version` becomes `version`; anything malformed is a `BadResponseError` naming the
    field.
    """
    try:
        return _decode_response(body, json_length, model)
    except InvalidInputError as exc:
        raise BadResponseError(
            f"model {model!r}: the upstream sent an invalid response: {exc.message}"
        ) from None


def _decode_response(body: bytes, json_length: int | None, model: str) -> InferenceResponse:
    binary = _BinaryReader(body, json_length)
    try:
        document = orjson.loads(binary.head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError("body", f"invalid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInputError("body", f"expected a JSON object, got {_json_type(document)}")
    response_id = document.get("id")
    if response_id is not None and not isinstance(response_id, str):
        raise InvalidInputError("id", f"expected a string, got {_json_type(response_id)}")
    version = document.get("model_version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if version is not None and not isinstance(version, str):
        raise InvalidInputError("model_version", f"expected a string, got {_json_type(version)}")
    raw_outputs = document.get("outputs")
    if not isinstance(raw_outputs, list):
        raise InvalidInputError("outputs", "required: a list of output tensors")
    outputs = [
        _decode_input(item, f"outputs[{i}]", binary, response=True)
        for i, item in enumerate(raw_outputs)
    ]
    binary.check_consumed("output")
    return InferenceResponse(
        model=model,
        version=version or None,
        outputs=outputs,
        id=response_id,
        parameters=_parameters(document.get("parameters"), "parameters"),
    )


def _to_json(tensor: Tensor, parameters: Parameters) -> Any:
    """The tensor's data for JSON; BYTES that are not UTF-8 as base64, noted in `parameters`."""
    if tensor.datatype is not Datatype.BYTES:
        return np.ascontiguousarray(tensor.data).reshape(-1)
    items = [b if isinstance(b, bytes) else str(b).encode() for b in tensor.data.reshape(-1)]
    try:
        return [b.decode() for b in items]
    except UnicodeDecodeError:
        # JSON cannot carry arbitrary bytes; say how they are encoded (MLServer's convention).
        parameters["content_type"] = "base64"
        return [base64.b64encode(b).decode() for b in items]


def _to_binary(tensor: Tensor) -> bytes:
    if tensor.datatype is not Datatype.BYTES:
        little = tensor.datatype.numpy_dtype.newbyteorder("<")
        return np.ascontiguousarray(tensor.data, dtype=little).tobytes()
    parts: list[bytes] = []
    for item in tensor.data.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
