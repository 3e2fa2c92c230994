"""Cache codecs: what the key covers and ignores, completeness, and lossless (de)serialization."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seawall.policies.cache_codec import InferenceCodec, LlmCodec
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

CODEC = InferenceCodec()


def two_inputs(**kw: Any) -> InferenceRequest:
    inputs = [
        Tensor.from_numpy("a", np.array([[1.0, 2.0]], np.float32)),
        Tensor.from_numpy("b", np.array([3, 4], np.int64)),
    ]
    return InferenceRequest("m", inputs, version="1", **kw)


def key(req: InferenceRequest, generation: int = 1) -> bytes:
    return CODEC.key(req, generation)


# --- OIP key --------------------------------------------------------------------------------


def test_the_key_leaves_out_the_request_id_input_order_and_encoding_parameters() -> None:
    base = two_inputs(id="one")
    same = [
        two_inputs(id="two"),
        replace(base, inputs=list(reversed(base.inputs))),
        two_inputs(parameters={"binary_data_output": True, "priority": 1, "timeout": 5}),
        two_inputs(outputs=None),
    ]
    with_binary = two_inputs(outputs=[RequestedOutput("y", {"binary_data": True})])
    plain = two_inputs(outputs=[RequestedOutput("y")])
    assert {key(r) for r in same} == {key(base)}
    assert key(with_binary) == key(plain)
    assert len(key(base)) == 16


def _changed(req: InferenceRequest, what: str) -> InferenceRequest:
    a, b = req.inputs
    if what == "a value":
        return replace(req, inputs=[replace(a, data=a.data + np.float32(0.5)), b])
    if what == "a shape":
        return replace(req, inputs=[replace(a, shape=(2, 1), data=a.data.reshape(2, 1)), b])
    if what == "a datatype":
        data = a.data.astype(np.float64)
        return replace(req, inputs=[replace(a, datatype=Datatype.FP64, data=data), b])
    if what == "an input name":
        return replace(req, inputs=[replace(a, name="c"), b])
    if what == "an input parameter":
        return replace(req, inputs=[replace(a, parameters={"scale": 2}), b])
    if what == "the outputs asked for":
        return replace(req, outputs=[RequestedOutput("y")])
    if what == "an output parameter":
        return replace(req, outputs=[RequestedOutput("y", {"classification": 2})])
    if what == "a request parameter":
        return replace(req, parameters={"threshold": 0.4})
    if what == "the version":
        return replace(req, version="2")
    assert what == "the model"
    return replace(req, model="n")


@pytest.mark.parametrize(
    "what",
    [
        "a value",
        "a shape",
        "a datatype",
        "an input name",
        "an input parameter",
        "the outputs asked for",
        "an output parameter",
        "a request parameter",
        "the version",
        "the model",
    ],
)
def test_anything_that_can_change_the_answer_changes_the_key(what: str) -> None:
    base = (
        two_inputs(outputs=[RequestedOutput("y")])
        if what == "an output parameter"
        else two_inputs()
    )
    assert key(_changed(base, what)) != key(base)


def test_the_generation_changes_the_key() -> None:
    assert key(two_inputs(), 1) != key(two_inputs(), 2)


def test_fields_cannot_run_into_each_other() -> None:
    # Without length prefixes these two would hash the same bytes.
    first = InferenceRequest("ab", [Tensor.from_numpy("c", np.array([1]))], version="")
    second = InferenceRequest("a", [Tensor.from_numpy("c", np.array([1]))], version="b")
    assert key(first) != key(second)


def test_bytes_inputs_are_keyed_element_by_element() -> None:
    def req(*items: bytes) -> InferenceRequest:
        return InferenceRequest("m", [Tensor.from_numpy("t", np.array(items, dtype=object))])

    assert key(req(b"ab", b"c")) != key(req(b"a", b"bc"))
    assert key(req(b"ab", b"c")) == key(req(b"ab", b"c"))


def test_a_non_contiguous_input_keys_as_its_contiguous_copy() -> None:
    wide = np.arange(12, dtype=np.float32).reshape(3, 4)
    view = Tensor("x", Datatype.FP32, (3,), wide[:, 1])
    copy = Tensor("x", Datatype.FP32, (3,), np.ascontiguousarray(wide[:, 1]))
    assert key(InferenceRequest("m", [view])) == key(InferenceRequest("m", [copy]))


def test_a_stateful_request_is_refused() -> None:
    assert CODEC.refusal(two_inputs(parameters={"sequence_id": 3})) == "stateful"
    assert CODEC.refusal(two_inputs()) is None


# --- OIP answers ----------------------------------------------------------------------------


def test_complete_means_every_requested_output_is_there() -> None:
    answer = InferenceResponse("m", [Tensor.from_numpy("y", [1])])
    assert CODEC.complete(two_inputs(), answer)
    assert CODEC.complete(two_inputs(outputs=[RequestedOutput("y")]), answer)
    assert not CODEC.complete(
        two_inputs(outputs=[RequestedOutput("y"), RequestedOutput("z")]), answer
    )
    assert not CODEC.complete(two_inputs(), InferenceResponse("m", []))


def test_every_datatype_survives_a_round_trip_addressed_to_the_new_request() -> None:
    outputs = [
        Tensor.from_numpy("bool", np.array([[True, False]])),
        Tensor.from_numpy("u8", np.array([0, 255], np.uint8)),
        Tensor.from_numpy("i64", np.array([-(2**62), 2**62], np.int64)),
        Tensor.from_numpy("f16", np.array([0.5, -1.5], np.float16)),
        Tensor.from_numpy("f64", np.array([[np.pi]])),
        Tensor.from_numpy("text", np.array([["é", ""], ["x", "yz"]], dtype=object)),
        Tensor.from_numpy("empty", np.zeros((0, 3), np.float32)),
        Tensor.from_numpy("scalar", np.array(7, np.int32)),
    ]
    outputs[0].parameters = {"note": "kept"}
    answer = InferenceResponse("m", outputs, version="1", id="old", parameters={"k": [1, 2]})

    decoded = CODEC.decode(CODEC.encode(answer), two_inputs(id="new"))

    assert (decoded.model, decoded.version, decoded.id) == ("m", "1", "new")
    assert decoded.parameters == {"k": [1, 2]}
    for before, after in zip(answer.outputs, decoded.outputs, strict=True):
        assert (after.name, after.datatype, after.shape) == (
            before.name,
            before.datatype,
            before.shape,
        )
        assert after.data.dtype == before.data.dtype
        assert after.data.shape == before.data.shape
        assert after.data.tolist() == before.data.tolist()
        assert after.parameters == before.parameters
        assert not after.data.flags.writeable


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int32, np.uint16, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    )
)
def test_any_array_round_trips_bit_for_bit(array: np.ndarray[Any, Any]) -> None:
    answer = InferenceResponse("m", [Tensor.from_numpy("y", array)])
    decoded = CODEC.decode(CODEC.encode(answer), two_inputs())
    assert decoded.outputs[0].data.tobytes() == array.tobytes()
    assert decoded.outputs[0].shape == array.shape


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02xxxx",
        b"\x01\xff\xff\x00\x00{}",
        b"\x01\x02\x00\x00\x00{}",
        b"\x01\x02\x00\x00\x00[]",
    ],
    ids=["empty", "other format", "header past the end", "no outputs", "not an object"],
)
def test_anything_but_an_entry_is_refused_with_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a cache entry"):
        CODEC.decode(data, two_inputs())


def test_a_truncated_entry_is_refused() -> None:
    data = CODEC.encode(InferenceResponse("m", [Tensor.from_numpy("y", np.ones(10))]))
    with pytest.raises(ValueError, match="not a cache entry"):
        CODEC.decode(data[:-8], two_inputs())


def test_an_answer_that_cannot_be_stored_is_refused_with_value_error() -> None:
    odd = Tensor("y", Datatype.FP32, (1,), np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="holds object values"):
        CODEC.encode(InferenceResponse("m", [odd]))
    bad_bytes = Tensor("y", Datatype.BYTES, (1,), np.array([3], dtype=object))
    with pytest.raises(ValueError, match="a BYTES element is a int"):
        CODEC.encode(InferenceResponse("m", [bad_bytes]))
    with pytest.raises(ValueError, match="not JSON"):
        CODEC.encode(InferenceResponse("m", [Tensor.from_numpy("y", [1])], parameters={"x": {1}}))


# --- LLM ------------------------------------------------------------------------------------


def chat(**fields: Any) -> LlmRequest:
    body = {"model": "g", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    return LlmRequest(LlmKind.CHAT, "g", {**body, **fields})


def test_llm_key_leaves_out_fields_that_do_not_change_the_answer() -> None:
    codec = LlmCodec()
    base = codec.key(chat(), 0)
    ignored = chat(
        user="u",
        stream=False,
        stream_options={"include_usage": True},
        metadata={"a": "b"},
        store=True,
        service_tier="auto",
    )
    assert codec.key(ignored, 0) == base
    assert codec.key(chat(max_tokens=5), 0) != base
    assert codec.key(chat(messages=[{"role": "user", "content": "hello"}]), 0) != base
    assert codec.key(LlmRequest(LlmKind.COMPLETION, "g", chat().body), 0) != base
    assert codec.key(LlmRequest(LlmKind.CHAT, "other", chat().body), 0) != base
    assert LlmCodec(scope=b"gpt-4o").key(chat(), 0) != base


def test_llm_key_is_the_same_whatever_the_order_of_fields() -> None:
    codec = LlmCodec()
    one = LlmRequest(LlmKind.CHAT, "g", {"a": 1, "b": {"x": 1, "y": 2}})
    other = LlmRequest(LlmKind.CHAT, "g", {"b": {"y": 2, "x": 1}, "a": 1})
    assert codec.key(one, 0) == codec.key(other, 0)


@pytest.mark.parametrize(
    ("request_", "deterministic_only", "refusal"),
    [
        (chat(), True, None),
        (chat(temperature=0.0), True, None),
        (chat(temperature=0.2), True, "nondeterministic"),
        (chat(temperature=None), True, "nondeterministic"),
        (chat(temperature="0"), True, "nondeterministic"),
        (chat(temperature=0.2, seed=1), True, "nondeterministic"),
        (chat(temperature=0.2), False, None),
        (chat(stream=True), False, "stream"),
        (LlmRequest(LlmKind.EMBEDDING, "g", {"input": "x"}), True, None),
        (LlmRequest(LlmKind.COMPLETION, "g", {"prompt": "x"}), True, "nondeterministic"),
    ],
)
def test_llm_refusals(request_: LlmRequest, deterministic_only: bool, refusal: str | None) -> None:
    assert LlmCodec(deterministic_only=deterministic_only).refusal(request_) == refusal


@pytest.mark.parametrize(
    ("response", "complete"),
    [
        (LlmResponse("g", body={"choices": [{"finish_reason": "stop"}]}), True),
        (LlmResponse("g", body={"choices": [{"finish_reason": "length"}]}), True),
        (LlmResponse("g", body={"choices": [{"finish_reason": None}]}), False),
        (LlmResponse("g", body={"choices": []}), False),
        (LlmResponse("g", body={"error": "x"}), False),
        (LlmResponse("g", first={"choices": []}), False),
    ],
)
def test_llm_completeness(response: LlmResponse, complete: bool) -> None:
    assert LlmCodec().complete(chat(), response) is complete


def test_llm_embeddings_are_complete_with_data() -> None:
    embed = LlmRequest(LlmKind.EMBEDDING, "g", {"input": "x"})
    assert LlmCodec().complete(embed, LlmResponse("g", body={"data": [{"embedding": [1]}]}))
    assert not LlmCodec().complete(embed, LlmResponse("g", body={"data": []}))


def test_llm_answers_round_trip() -> None:
    codec = LlmCodec()
    answer = LlmResponse(
        "g",
        body={"id": "c1", "choices": [{"message": {"content": "é"}, "finish_reason": "stop"}]},
        usage=Usage(10, 3, estimated=True),
        served_by="g/primary",
    )
    decoded = codec.decode(codec.encode(answer), chat())
    assert decoded == answer
    assert decoded.body is not answer.body
    with pytest.raises(ValueError, match="not a cache entry"):
        codec.decode(CODEC.encode(InferenceResponse("m", [Tensor.from_numpy("y", [1])])), chat())
