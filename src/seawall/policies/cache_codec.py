"""What the response cache keys on and how it stores answers: OIP inference and LLM calls.

A codec says whether a request may be cached at all, hashes everything that determines its
answer into a key (blake2b, 128 bits, over one JSON document and length-prefixed data, so no
two requests collide by concatenation), tells complete answers from partial ones, and turns
answers into bytes and back (orjson for the structure, raw array bytes for tensors; never
pickle, so a shared Redis can hold nothing that runs code when read).

- `InferenceCodec` (Open Inference Protocol): the key is the model, its resolved version, the
  backend generation, every input's name (in name order), datatype, shape and data, the
  requested outputs with their parameters, and the request parameters (sorted JSON). Left out:
  the request id, and parameters that only shape the encoding (`binary_data`,
  `binary_data_output`) or the scheduling (`priority`, `timeout`). A request with a
  `sequence_id` (a stateful model) is never cached.
- `LlmCodec` (OpenAI-shaped calls): the key is the model group, the deployments' fingerprint
  and the canonical JSON of the body without the fields that do not change the answer
  (`user`, `stream`, `stream_options`, `metadata`, `store`, `service_tier`). Streamed calls
  are never cached. With `deterministic_only`, chat and completion calls are cached only at
  `temperature: 0` (absent means the provider's default, 1; a `seed` alone does not count:
  providers promise it only as best effort); embeddings always are.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    LlmKind,
    LlmRequest,
    LlmResponse,
    RequestedOutput,
    Tensor,
    Usage,
)

__all__ = ["LLM_IGNORED_FIELDS", "CacheCodec", "InferenceCodec", "LlmCodec"]

RequestT = TypeVar("RequestT", contravariant=True)
ResponseT = TypeVar("ResponseT")

#: Body fields of an LLM call that never change its answer: left out of the key.
LLM_IGNORED_FIELDS = frozenset(
    {"user", "stream", "stream_options", "metadata", "store", "service_tier"}
)
#: OIP parameters that shape the encoding or the scheduling of an answer, not the answer.
_OIP_IGNORED = frozenset({"binary_data", "binary_data_output", "priority", "timeout"})
#: First byte of every stored entry: an entry of another format reads as a miss.
_FORMAT = b"\x01"
_LENGTH = 4  # bytes of the little-endian header length after the format byte
_JSON_KEY = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class CacheCodec(Protocol[RequestT, ResponseT]):
    """Keys, completeness and (de)serialization of one kind of call."""

    def refusal(self, request: RequestT) -> str | None:
        """Why `request` is never cached (a short reason), or None if it may be."""
        ...

    def key(self, request: RequestT, generation: int) -> bytes:
        """A digest of everything that determines the answer, for the backend `generation`;
        `TypeError` or `ValueError` if the request cannot be keyed (it is then not cached)."""
        ...

    def complete(self, request: RequestT, response: ResponseT) -> bool:
        """True if `response` is a whole answer to `request` (partial ones are not stored)."""
        ...

    def encode(self, response: ResponseT) -> bytes:
        """The answer as bytes; `ValueError` if it cannot be stored."""
        ...

    def decode(self, data: bytes, request: RequestT) -> ResponseT:
        """The stored answer, addressed to `request`; `ValueError` if `data` is not an entry."""
        ...


class _Digest:
    """blake2b over length-prefixed fields."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)

    def field(self, data: bytes) -> None:
        self._hash.update(len(data).to_bytes(8, "little"))
        self._hash.update(data)

    def array(self, data: npt.NDArray[Any]) -> None:
        # Hashed in place: no copy of the input's bytes (one unless it is not contiguous).
        self._hash.update(data.nbytes.to_bytes(8, "little"))
        self._hash.update(np.ascontiguousarray(data).data)

    def text(self, value: str) -> None:
        self.field(value.encode())

    def json(self, value: Any) -> None:
        # Raises TypeError for what JSON cannot hold (an integer beyond 64 bits).
        self.field(orjson.dumps(value, option=_JSON_KEY, default=str))

    def digest(self) -> bytes:
        return self._hash.digest()


class InferenceCodec:
    """Keys and stores `InferenceResponse`s; see the module doc for what the key covers."""

    def refusal(self, request: InferenceRequest) -> str | None:
        return "stateful" if "sequence_id" in request.parameters else None

    def key(self, request: InferenceRequest, generation: int) -> bytes:
        inputs = sorted(request.inputs, key=_name)
        described = [
            (t.name, t.datatype.value, t.shape, t.data.dtype.str, _relevant(t.parameters))
            for t in inputs
        ]
        wanted = None
        if request.outputs is not None:
            wanted = [(o.name, _relevant(o.parameters)) for o in sorted(request.outputs, key=_name)]
        # Everything but the data as one JSON document (self-delimiting: nothing hashed after
        # it can pass for part of it), then each input's data, length-prefixed.
        head = (request.model, request.version, generation, described, wanted)
        digest = _Digest()
        digest.json((*head, _relevant(request.parameters)))
        for tensor in inputs:
            _hash_data(digest, tensor)
        return digest.digest()

    def complete(self, request: InferenceRequest, response: InferenceResponse) -> bool:
        if not response.outputs:
            return False
        if request.outputs is None:
            return True
        have = {t.name for t in response.outputs}
        return all(o.name in have for o in request.outputs)

    def encode(self, response: InferenceResponse) -> bytes:
        outputs: list[dict[str, Any]] = []
        payloads: list[bytes] = []
        for tensor in response.outputs:
            entry: dict[str, Any] = {
                "name": tensor.name,
                "datatype": tensor.datatype.value,
                "shape": [int(n) for n in tensor.shape],
                "parameters": tensor.parameters,
            }
            if tensor.datatype is Datatype.BYTES:
                items = [_item_bytes(v) for v in tensor.data.flat]
                entry["lengths"] = [len(v) for v in items]
                payloads.extend(items)
            else:
                data = np.ascontiguousarray(tensor.data)
                if data.dtype.kind not in "biuf":
                    raise ValueError(f"output {tensor.name!r} holds {data.dtype} values")
                entry["dtype"] = data.dtype.str
                payloads.append(data.tobytes())
            outputs.append(entry)
        header = {
            "model": response.model,
            "version": response.version,
            "parameters": response.parameters,
            "outputs": outputs,
        }
        return _frame(header, payloads)

    def decode(self, data: bytes, request: InferenceRequest) -> InferenceResponse:
        header, offset = _unframe(data)
        try:
            outputs = []
            for entry in header["outputs"]:
                tensor, offset = _tensor(entry, data, offset)
                outputs.append(tensor)
            return InferenceResponse(
                model=header["model"],
                outputs=outputs,
                version=header["version"],
                id=request.id,
                parameters=dict(header["parameters"]),
            )
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"not a cache entry: {type(exc).__name__}: {exc}") from None


def _name(item: Tensor | RequestedOutput) -> str:
    return item.name


def _relevant(parameters: dict[str, Any]) -> dict[str, Any]:
    if not parameters:
        return parameters
    return {k: v for k, v in parameters.items() if k not in _OIP_IGNORED}


def _hash_data(digest: _Digest, tensor: Tensor) -> None:
    data = tensor.data
    if tensor.datatype is Datatype.BYTES or data.dtype.kind == "O":
        digest.text(str(data.size))
        for item in data.flat:
            digest.field(item if isinstance(item, bytes) else str(item).encode())
    else:
        digest.array(data)


def _item_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    raise ValueError(f"a BYTES element is a {type(item).__name__}, not bytes")


def _tensor(entry: dict[str, Any], data: bytes, offset: int) -> tuple[Tensor, int]:
    """One stored tensor, read-only over `data` from `offset`; and the offset after it."""
    shape = tuple(int(n) for n in entry["shape"])
    datatype = Datatype(entry["datatype"])
    if datatype is Datatype.BYTES:
        lengths: list[int] = entry["lengths"]
        items = np.empty(len(lengths), dtype=np.object_)
        for i, length in enumerate(lengths):
            items[i] = data[offset : offset + length]
            offset += length
        array = items.reshape(shape)
        array.flags.writeable = False  # as the numbers are: a hit never hands out stored state
    else:
        dtype = np.dtype(entry["dtype"])
        count = math.prod(shape)
        array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += count * dtype.itemsize
    if offset > len(data):
        raise ValueError("the entry is truncated")
    return Tensor(entry["name"], datatype, shape, array, dict(entry["parameters"])), offset


def _frame(header: dict[str, Any], payloads: list[bytes]) -> bytes:
    try:
        head = orjson.dumps(header)
    except TypeError as exc:  # orjson: a value that is not JSON (a parameter, a body field)
        raise ValueError(f"the answer is not JSON: {exc}") from None
    return b"".join((_FORMAT, len(head).to_bytes(_LENGTH, "little"), head, *payloads))


def _unframe(data: bytes) -> tuple[dict[str, Any], int]:
    """The header of a stored entry and the offset of its payloads."""
    start = 1 + _LENGTH
    if len(data) < start or data[:1] != _FORMAT:
        raise ValueError("not a cache entry (unknown format)")
    end = start + int.from_bytes(data[1:start], "little")
    try:
        header = orjson.loads(data[start:end])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a cache entry: {exc}") from None
    if not isinstance(header, dict) or end > len(data):
        raise ValueError("not a cache entry: bad header")
    return header, end


class LlmCodec:
    """Keys and stores complete `LlmResponse`s; see the module doc for the opt-in rules."""

    def __init__(self, *, deterministic_only: bool = True, scope: bytes = b"") -> None:
        self.deterministic_only = deterministic_only
        #: Mixed into every key: the group's deployments, so a changed upstream model misses.
        self.scope = scope

    def refusal(self, request: LlmRequest) -> str | None:
        if request.stream:
            return "stream"
        if self.deterministic_only and request.kind is not LlmKind.EMBEDDING:
            temperature = request.body.get("temperature")
            zero = isinstance(temperature, int | float) and not isinstance(temperature, bool)
            if not zero or temperature != 0:
                return "nondeterministic"
        return None

    def key(self, request: LlmRequest, generation: int) -> bytes:
        digest = _Digest()
        digest.text(request.model)
        digest.text(request.kind.value)
        digest.field(self.scope)
        digest.text(str(generation))
        digest.json({k: v for k, v in request.body.items() if k not in LLM_IGNORED_FIELDS})
        return digest.digest()

    def complete(self, request: LlmRequest, response: LlmResponse) -> bool:
        body = response.body
        if response.stream is not None or response.first is not None or not isinstance(body, dict):
            return False
        if request.kind is LlmKind.EMBEDDING:
            data = body.get("data")
            return isinstance(data, list) and bool(data)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            return False
        # A choice without a finish reason was cut off (a provider's partial answer).
        return all(isinstance(c, dict) and c.get("finish_reason") is not None for c in choices)

    def encode(self, response: LlmResponse) -> bytes:
        usage = response.usage
        header = {
            "model": response.model,
            "body": response.body,
            "usage": [usage.prompt_tokens, usage.completion_tokens, usage.estimated],
            "served_by": response.served_by,
        }
        return _frame(header, [])

    def decode(self, data: bytes, request: LlmRequest) -> LlmResponse:
        header, _ = _unframe(data)
        try:
            prompt, completion, estimated = header["usage"]
            body = header["body"]
            if not isinstance(body, dict):
                raise TypeError("body is not an object")
            return LlmResponse(
                model=header["model"],
                body=body,
                usage=Usage(int(prompt), int(completion), bool(estimated)),
                served_by=str(header["served_by"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a cache entry: {type(exc).__name__}: {exc}") from None
