"""batch_plan, merge and split: which calls may share a batch, and rows in and out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.errors import BadResponseError
from seawall.policies.batch import batch_plan, merge, split
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)


def request(*tensors: Tensor, **kwargs: Any) -> InferenceRequest:
    return InferenceRequest("m", list(tensors), version="1", **kwargs)


def floats(rows: int, width: int = 3, name: str = "x", value: float = 0.0) -> Tensor:
    return Tensor.from_numpy(name, np.full((rows, width), value, np.float32))


def key(req: InferenceRequest) -> Any:
    plan = batch_plan(req)
    assert plan is not None
    return plan[0]


# --- batch_plan -----------------------------------------------------------------------------


def test_rows_are_the_first_dimension_shared_by_every_input() -> None:
    req = request(floats(5), Tensor.from_numpy("y", np.zeros(5, np.int64)))
    plan = batch_plan(req)
    assert plan is not None
    assert plan[1] == 5


def test_requests_that_differ_only_in_rows_and_ids_share_a_key() -> None:
    a = request(floats(1, value=1.0), id="a")
    b = request(floats(7, value=2.0), id="b", parameters={})
    assert key(a) == key(b)
    hash(key(a))


@pytest.mark.parametrize(
    "other",
    [
        request(floats(1, width=4)),
        request(floats(1, name="z")),
        request(Tensor.from_numpy("x", np.zeros((1, 3), np.float64))),
        request(floats(1), outputs=[RequestedOutput("predict")]),
        request(floats(1), outputs=[RequestedOutput("predict", {"binary_data": True})]),
        request(floats(1), parameters={"threshold": 0.5}),
        request(floats(1), parameters={"flag": 1}),
        request(Tensor("x", Datatype.FP32, (1, 3), np.zeros((1, 3), np.float32), {"p": 1})),
        request(floats(1), floats(1, name="y")),
        InferenceRequest("other", [floats(1)], version="1"),
        InferenceRequest("m", [floats(1)], version="2"),
    ],
)
def test_anything_else_that_differs_keeps_requests_apart(other: InferenceRequest) -> None:
    assert key(other) != key(request(floats(2), parameters={"flag": True}))
    assert key(other) != key(request(floats(2)))


def test_parameter_order_does_not_matter_but_their_types_do() -> None:
    one = request(floats(1), parameters={"a": 1, "b": "x"})
    same = request(floats(1), parameters={"b": "x", "a": 1})
    assert key(one) == key(same)
    assert key(request(floats(1), parameters={"a": 1})) != key(
        request(floats(1), parameters={"a": 1.0})
    )


@pytest.mark.parametrize(
    ("req", "why"),
    [
        (request(), "no inputs"),
        (request(floats(0)), "no rows"),
        (request(Tensor.from_numpy("x", np.float32(1.0))), "rank 0"),
        (request(floats(2), floats(3, name="y")), "ragged rows"),
        (request(floats(1), parameters={"weights": [1, 2]}), "a list parameter"),
        (request(floats(1), outputs=[RequestedOutput("p", {"o": {"a": 1}})]), "an object"),
        (request(Tensor.from_numpy("s", np.array([[["a"]]]))), "BYTES of rank 3"),
    ],
)
def test_calls_that_cannot_be_batched_have_no_plan(req: InferenceRequest, why: str) -> None:
    assert batch_plan(req) is None, why


def test_simple_bytes_inputs_are_batched() -> None:
    one = request(Tensor.from_numpy("s", np.array(["a", "bb"])))
    two = request(Tensor.from_numpy("s", np.array([["c", "d"]])))
    plans = [batch_plan(one), batch_plan(two)]
    assert [p[1] for p in plans if p] == [2, 1]
    merged = merge([one, one])
    assert merged.inputs[0].data.tolist() == [b"a", b"bb", b"a", b"bb"]
    assert merged.inputs[0].datatype is Datatype.BYTES


# --- merge and split ------------------------------------------------------------------------


def test_merge_stacks_every_input_by_rows_and_keeps_the_shared_fields() -> None:
    outputs = [RequestedOutput("predict", {"binary_data": True})]
    a = request(floats(1, value=1.0), Tensor.from_numpy("y", np.array([10])), id="a")
    b = request(floats(2, value=2.0), Tensor.from_numpy("y", np.array([20, 30])), id="b")
    a.outputs, b.outputs = outputs, outputs
    a.parameters = b.parameters = {"threshold": 0.5}

    merged = merge([a, b])

    x, y = merged.inputs
    assert (x.name, x.shape, x.datatype) == ("x", (3, 3), Datatype.FP32)
    assert x.data[:, 0].tolist() == [1.0, 2.0, 2.0]
    assert (y.shape, y.data.tolist()) == ((3,), [10, 20, 30])
    assert (merged.model, merged.version, merged.id) == ("m", "1", None)
    assert merged.parameters == {"threshold": 0.5}
    assert merged.parameters is not a.parameters
    assert merged.outputs == outputs
    assert merged.outputs is not outputs


def response(*outputs: Tensor) -> InferenceResponse:
    return InferenceResponse("m", list(outputs), version="7", parameters={"p": 1})


def test_split_cuts_each_output_by_rows_and_answers_as_each_request() -> None:
    reqs = [request(floats(1), id="a"), request(floats(2), id="b")]
    labels = Tensor.from_numpy("predict", np.array([0, 1, 2]))
    proba = Tensor.from_numpy("proba", np.arange(6.0).reshape(3, 2))

    parts = split(response(labels, proba), reqs, [1, 2], "model 'm'")

    assert [(p.id, p.model, p.version) for p in parts] == [("a", "m", "7"), ("b", "m", "7")]
    assert [p.outputs[0].data.tolist() for p in parts] == [[0], [1, 2]]
    assert [p.outputs[1].shape for p in parts] == [(1, 2), (2, 2)]
    assert parts[1].outputs[1].data.tolist() == [[2.0, 3.0], [4.0, 5.0]]
    assert np.shares_memory(parts[1].outputs[1].data, proba.data)  # views, no copies
    assert parts[0].parameters == {"p": 1}
    assert parts[0].parameters is not parts[1].parameters


@pytest.mark.parametrize(
    ("output", "found"),
    [
        (Tensor.from_numpy("predict", np.array([0, 1])), "2 rows"),
        (Tensor.from_numpy("predict", np.arange(8)), "8 rows"),
        (Tensor.from_numpy("predict", np.float64(1.0)), "a scalar"),
    ],
)
def test_an_output_without_a_row_per_input_row_is_a_bad_response(
    output: Tensor, found: str
) -> None:
    reqs = [request(floats(1)), request(floats(2))]
    with pytest.raises(BadResponseError) as info:
        split(response(output), reqs, [1, 2], "model 'm:1'")
    assert str(info.value) == (
        f"model 'm:1': output 'predict' has {found} for a batch of 3 rows (2 requests)"
    )


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=8))
def test_merge_then_split_gives_each_request_its_own_rows(rows: list[int]) -> None:
    reqs = [
        request(Tensor.from_numpy("x", np.full((n, 2), i, np.int64)), id=str(i))
        for i, n in enumerate(rows)
    ]
    merged = merge(reqs)
    echoed = InferenceResponse("m", [Tensor.from_numpy("y", merged.inputs[0].data * 10)])

    parts = split(echoed, reqs, rows, "m")

    assert [p.id for p in parts] == [str(i) for i in range(len(rows))]
    for i, (part, n) in enumerate(zip(parts, rows, strict=True)):
        assert part.outputs[0].data.tolist() == [[10 * i, 10 * i]] * n
