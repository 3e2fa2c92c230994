"""LastGoodCache: exact-input keys that never collide, an LRU bound, TTL on the clock."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import BackendUnavailableError
from seawall.policies.fallback_cache import CachedAlternative, LastGoodCache, request_key
from seawall.types import Datatype, InferenceRequest, InferenceResponse, RequestedOutput, Tensor


def request(
    *tensors: Tensor,
    model: str = "iris",
    version: str | None = "1",
    outputs: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
    rid: str | None = None,
) -> InferenceRequest:
    inputs = list(tensors) or [tensor()]
    wanted = None if outputs is None else [RequestedOutput(n) for n in outputs]
    return InferenceRequest(model, inputs, version, rid, parameters or {}, wanted)


def tensor(values: Any = None, name: str = "x", datatype: Datatype | None = None) -> Tensor:
    data = [[1.0, 2.0, 3.0, 4.0]] if values is None else values
    return Tensor.from_numpy(name, np.asarray(data), datatype or Datatype.FP32)


def response(value: float = 1.0) -> InferenceResponse:
    return InferenceResponse("iris", [Tensor.from_numpy("out", [value])], "1", "orig")


# --- keys -------------------------------------------------------------------------------------


def test_the_same_request_has_the_same_key() -> None:
    assert request_key(request()) == request_key(request(rid="other-id"))
    assert len(request_key(request())) == 16


def test_input_order_does_not_matter() -> None:
    a, b = tensor(name="a"), tensor([[5.0]], name="b")
    assert request_key(request(a, b)) == request_key(request(b, a))


@pytest.mark.parametrize(
    "other",
    [
        request(tensor([[1.0, 2.0, 3.0, 5.0]])),  # one value differs
        request(tensor([[1.0, 2.0], [3.0, 4.0]])),  # same bytes, other shape
        request(tensor(datatype=Datatype.FP64)),  # same values, other datatype
        request(tensor(name="y")),  # other input name
        request(model="iris-small"),
        request(version="2"),
        request(version=None),
        request(outputs=["out"]),  # same input, a subset of the outputs
        request(outputs=[]),
        request(parameters={"threshold": 0.5}),
        request(tensor(), tensor([[0.0]], name="extra")),
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(other: InferenceRequest) -> None:
    assert request_key(other) != request_key(request())


def test_requested_outputs_are_a_set() -> None:
    assert request_key(request(outputs=["a", "b"])) == request_key(request(outputs=["b", "a"]))
    assert request_key(request(outputs=["a"])) != request_key(request(outputs=["b"]))


def test_bytes_inputs_are_keyed_by_their_contents() -> None:
    def words(*items: str) -> InferenceRequest:
        return request(Tensor.from_numpy("text", np.array(items, dtype=object)))

    assert request_key(words("ab", "c")) == request_key(words("ab", "c"))
    # Without length prefixes these two would hash the same bytes.
    assert request_key(words("ab", "c")) != request_key(words("a", "bc"))
    assert request_key(words("ab")) != request_key(words("ab", ""))


@settings(max_examples=200, deadline=None)
@given(
    a=st.lists(st.integers(-3, 3), min_size=1, max_size=6),
    b=st.lists(st.integers(-3, 3), min_size=1, max_size=6),
)
def test_keys_collide_only_for_equal_inputs(a: list[int], b: list[int]) -> None:
    key_a = request_key(request(Tensor.from_numpy("x", np.array(a, np.int64))))
    key_b = request_key(request(Tensor.from_numpy("x", np.array(b, np.int64))))
    assert (key_a == key_b) == (a == b)


def test_non_contiguous_input_is_keyed_by_its_values() -> None:
    full = np.arange(8, dtype=np.float32).reshape(2, 4)
    strided = Tensor("x", Datatype.FP32, (2, 2), full[:, ::2])
    packed = Tensor("x", Datatype.FP32, (2, 2), np.ascontiguousarray(full[:, ::2]))
    assert request_key(request(strided)) == request_key(request(packed))


# --- the cache --------------------------------------------------------------------------------


def test_get_returns_the_stored_outputs_addressed_to_the_new_request() -> None:
    cache = LastGoodCache()
    cache.put(request(rid="first"), response(3.0))
    hit = cache.get(request(rid="second"))
    assert hit is not None
    assert (hit.model, hit.version, hit.id) == ("iris", "1", "second")
    assert hit.outputs[0].data.tolist() == [3.0]
    assert cache.get(request(tensor([[0.0]]))) is None


def test_stored_arrays_are_read_only_copies() -> None:
    cache = LastGoodCache()
    original = response(3.0)
    cache.put(request(), original)
    original.outputs[0].data[0] = -1.0  # an outer stage changing the response it got
    hit = cache.get(request())
    assert hit is not None
    assert hit.outputs[0].data.tolist() == [3.0]
    assert not hit.outputs[0].data.flags.writeable
    assert original.outputs[0].data.flags.writeable
    hit.outputs.clear()  # each hit is its own response object
    again = cache.get(request())
    assert again is not None
    assert len(again.outputs) == 1


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = LastGoodCache(max_entries=2)
    a, b, c = (request(tensor([[float(i)]])) for i in range(3))
    cache.put(a, response(0.0))
    cache.put(b, response(1.0))
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, response(2.0))
    assert len(cache) == 2
    assert cache.get(b) is None
    assert cache.get(a) is not None
    assert cache.get(c) is not None


def test_a_newer_response_replaces_the_older() -> None:
    cache = LastGoodCache(max_entries=2)
    cache.put(request(), response(1.0))
    cache.put(request(), response(2.0))
    hit = cache.get(request())
    assert len(cache) == 1
    assert hit is not None
    assert hit.outputs[0].data.tolist() == [2.0]


def test_entries_expire_after_the_ttl_on_the_clock() -> None:
    clock = FakeClock()
    cache = LastGoodCache(ttl_s=60.0, clock=clock)
    cache.put(request(), response())
    clock.advance(59.9)
    assert cache.get(request()) is not None  # a hit does not extend the entry's life
    clock.advance(0.1)
    assert cache.get(request()) is None
    assert len(cache) == 0
    cache.put(request(), response())  # a fresh response starts a new life
    clock.advance(30.0)
    assert cache.get(request()) is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_entries": 0}, "max_entries: must be at least 1, got 0"),
        ({"ttl_s": 0.0}, "ttl_s: must be more than 0"),
    ],
)
def test_cache_options_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LastGoodCache(**kwargs)


async def test_a_miss_fails_the_alternative_as_unavailable() -> None:
    alternative = CachedAlternative(LastGoodCache())
    with pytest.raises(BackendUnavailableError, match="no cached response") as info:
        await alternative.answer(request(), CallContext.new())
    assert info.value.code == "cache_miss"
