"""The last good response per input, for `FallbackPolicy`'s `CachedAlternative`.

`FallbackPolicy` records every good response of its primary call in the `LastGoodCache` of each
`CachedAlternative` in its chain; when the primary fails, that alternative answers with the
response remembered for exactly the same input, or fails (a miss) so the chain moves on.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import BackendUnavailableError
from seawall.types import Datatype, InferenceRequest, InferenceResponse, Tensor

__all__ = ["DEFAULT_CACHE_MAX_ENTRIES", "CachedAlternative", "LastGoodCache", "request_key"]

DEFAULT_CACHE_MAX_ENTRIES = 1024


class LastGoodCache:
    """Good responses by exact input, the least recently used dropped beyond `max_entries`.

    The key hashes the model, version, every input's name, datatype, shape and bytes (in name
    order), the requested output names and the request parameters. Entries older than `ttl_s`
    on the clock are misses (None: they never expire). Stored arrays are read-only copies.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_CACHE_MAX_ENTRIES,
        *,
        ttl_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries: must be at least 1, got {max_entries}")
        if ttl_s is not None and not ttl_s > 0:
            raise ValueError(f"ttl_s: must be more than 0 (or None), got {ttl_s}")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock or SystemClock()
        self._entries: OrderedDict[bytes, tuple[float, InferenceResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, request: InferenceRequest, response: InferenceResponse) -> None:
        """Remember `response` as the answer to `request`."""
        stored = replace(
            response,
            outputs=[_frozen_copy(t) for t in response.outputs],
            parameters=dict(response.parameters),
        )
        key = request_key(request)
        self._entries[key] = (self._clock.monotonic(), stored)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, request: InferenceRequest) -> InferenceResponse | None:
        """The remembered response to this exact request, addressed to its id, or None."""
        key = request_key(request)
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, stored = entry
        if self.ttl_s is not None and self._clock.monotonic() - stored_at >= self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return replace(
            stored,
            id=request.id,
            outputs=[_view(t) for t in stored.outputs],
            parameters=dict(stored.parameters),
        )


@dataclass(frozen=True, slots=True)
class CachedAlternative:
    """The last good response of the primary to the same input (a miss fails this alternative)."""

    cache: LastGoodCache
    name: str = "cached"

    async def answer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        response = self.cache.get(request)
        if response is None:
            raise _CacheMissError(f"no cached response of model {request.model!r} for this input")
        return response


class _CacheMissError(BackendUnavailableError):
    """Never leaves this module: reported in `FallbackFailed` only."""

    code = "cache_miss"


def request_key(request: InferenceRequest) -> bytes:
    """A 128-bit digest of everything that determines a model's answer to `request`."""
    digest = hashlib.blake2b(digest_size=16)

    def field(data: bytes) -> None:
        # Length-prefixed, so no two different requests can produce the same byte stream.
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    field(request.model.encode())
    field((request.version or "").encode())
    field(str(len(request.inputs)).encode())
    for tensor in sorted(request.inputs, key=lambda t: t.name):
        field(tensor.name.encode())
        field(str(tensor.datatype).encode())
        field(repr(tuple(tensor.shape)).encode())
        if tensor.datatype is Datatype.BYTES:
            field(str(tensor.data.size).encode())
            for item in tensor.data.flat:
                field(item if isinstance(item, bytes) else str(item).encode())
        else:
            field(tensor.data.dtype.str.encode())
            field(np.ascontiguousarray(tensor.data).tobytes())
    wanted = None if request.outputs is None else sorted(o.name for o in request.outputs)
    field(json.dumps(wanted).encode())
    field(json.dumps(request.parameters, sort_keys=True, default=str).encode())
    return digest.digest()


def _frozen_copy(tensor: Tensor) -> Tensor:
    data = np.array(tensor.data)
    data.flags.writeable = False
    return Tensor(tensor.name, tensor.datatype, tensor.shape, data, dict(tensor.parameters))


def _view(tensor: Tensor) -> Tensor:
    return Tensor(tensor.name, tensor.datatype, tensor.shape, tensor.data, dict(tensor.parameters))
