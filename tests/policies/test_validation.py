"""ValidationPolicy: every refusal names the field and the rule; lossless datatype conversion."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from seawall.backends.mock import MockBackend
from seawall.context import CallContext
from seawall.errors import InvalidInputError, ModelNotReadyError, RejectedError
from seawall.pipeline import Pipeline
from seawall.policies.validation import InputRejected, ValidationOptions, ValidationPolicy
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RequestedOutput,
    Tensor,
    TensorSpec,
)

SIGNATURE = ModelMetadata(
    name="m",
    platform="test",
    inputs=(
        TensorSpec("a", Datatype.FP32, (-1, 4)),
        TensorSpec("b", Datatype.INT64, (-1,)),
    ),
    outputs=(
        TensorSpec("out1", Datatype.FP32, (-1,)),
        TensorSpec("out2", Datatype.INT64, (-1,)),
    ),
)


def a(array: Any = None, datatype: Datatype | None = None, name: str = "a") -> Tensor:
    data = np.ones((2, 4), np.float32) if array is None else array
    return Tensor.from_numpy(name, data, datatype)


def b(array: Any = None, datatype: Datatype | None = None) -> Tensor:
    data = np.array([1, 2], np.int64) if array is None else array
    return Tensor.from_numpy("b", data, datatype)


def request(*inputs: Tensor, outputs: list[str] | None = None) -> InferenceRequest:
    wanted = None if outputs is None else [RequestedOutput(n) for n in outputs]
    return InferenceRequest("m", list(inputs), outputs=wanted)


class Harness:
    """The policy, a recording `call_next` and the events it emitted."""

    def __init__(self, options: ValidationOptions | None = None) -> None:
        self.events: list[object] = []
        self.calls: list[InferenceRequest] = []
        self.policy = ValidationPolicy(lambda: SIGNATURE, options, on_event=self.events.append)

    async def call_next(self, req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        self.calls.append(req)
        return InferenceResponse(req.model, [])

    async def run(self, req: InferenceRequest) -> InferenceResponse:
        return await self.policy(req, CallContext.new("r"), self.call_next)

    async def refusal(self, req: InferenceRequest) -> InvalidInputError:
        with pytest.raises(InvalidInputError) as info:
            await self.run(req)
        assert self.calls == []  # a refused request never reaches the backend
        assert self.events == [InputRejected("m", info.value.field, info.value.reason)]
        return info.value


async def test_a_fitting_request_is_passed_on_once_unchanged() -> None:
    harness = Harness()
    req = request(a(), b(), outputs=["out2"])
    response = await harness.run(req)
    assert response.model == "m"
    assert harness.calls == [req]
    assert harness.calls[0] is req
    assert req.inputs[0].datatype is Datatype.FP32
    assert req.inputs[0].data.dtype == np.float32
    assert harness.events == []


async def test_input_order_does_not_matter() -> None:
    harness = Harness()
    await harness.run(request(b(), a()))
    assert len(harness.calls) == 1


@pytest.mark.parametrize(
    ("req", "field", "reason"),
    [
        (
            request(a(), b(), a()),
            "inputs[2].name",
            "input 'a' is given twice",
        ),
        (
            request(a(), a(name="zz"), b()),
            "inputs[1].name",
            "model 'm' has no input 'zz' (inputs: a, b)",
        ),
        (
            request(a()),
            "inputs",
            "missing input 'b' required by model 'm'",
        ),
        (
            request(),
            "inputs",
            "missing input 'a' required by model 'm'",
        ),
        (
            request(a(np.ones(4, np.float32)), b()),
            "inputs[0].shape",
            "input 'a' of model 'm' takes shape [-1, 4], got [4]",
        ),
        (
            request(a(np.ones((1, 2, 4), np.float32)), b()),
            "inputs[0].shape",
            "input 'a' of model 'm' takes shape [-1, 4], got [1, 2, 4]",
        ),
        (
            request(b(), a(np.ones((2, 3), np.float32))),
            "inputs[1].shape",
            "input 'a' of model 'm' takes shape [-1, 4], got [2, 3]",
        ),
        (
            request(a(np.ones((2, 4), np.bool_)), b()),
            "inputs[0].datatype",
            "input 'a' of model 'm' takes FP32, got BOOL: "
            "expected numbers for FP32, got true/false",
        ),
        (
            request(a(np.full((1, 4), "x")), b()),
            "inputs[0].datatype",
            "input 'a' of model 'm' takes FP32, got BYTES: expected numbers for FP32, got strings",
        ),
        (
            request(a(), b(np.array([1.0, 2.5]))),
            "inputs[1].datatype",
            "input 'b' of model 'm' takes INT64, got FP64: expected integers for INT64, "
            "got fractional numbers",
        ),
        (
            request(a(np.full((1, 4), 1e39)), b()),
            "inputs[0].datatype",
            "input 'a' of model 'm' takes FP32, got FP64: a value is out of range for FP32",
        ),
        (
            request(a(), b(), outputs=["out1", "nope"]),
            "outputs[1].name",
            "model 'm' has no output 'nope' (outputs: out1, out2)",
        ),
        (
            request(a(), b(), outputs=["out2", "out1", "out2"]),
            "outputs[2].name",
            "output 'out2' is requested twice",
        ),
    ],
)
async def test_refusals_name_the_field_and_the_rule(
    req: InferenceRequest, field: str, reason: str
) -> None:
    error = await Harness().refusal(req)
    assert error.field == field
    assert error.reason == reason
    assert str(error) == f"{field}: {reason}"
    assert isinstance(error, RejectedError)
    assert error.code == "invalid_input"


async def test_the_shape_is_checked_before_the_datatype() -> None:
    error = await Harness().refusal(request(a(np.ones(3, np.bool_)), b()))
    assert error.field == "inputs[0].shape"


async def test_a_lossless_conversion_changes_the_datatype_and_the_data() -> None:
    harness = Harness()
    tensor_a = a(np.array([[0.5, 1.0, -2.0, 3.25]]))  # FP64 for an FP32 input
    tensor_b = b(np.array([7, -8], np.int32))  # INT32 for an INT64 input
    assert tensor_a.datatype is Datatype.FP64
    await harness.run(request(tensor_a, tensor_b))
    (passed,) = harness.calls
    assert passed.inputs[0] is tensor_a
    assert tensor_a.datatype is Datatype.FP32
    assert tensor_a.data.dtype == np.float32
    assert tensor_a.data.tolist() == [[0.5, 1.0, -2.0, 3.25]]
    assert tensor_a.shape == (1, 4)
    assert tensor_b.datatype is Datatype.INT64
    assert tensor_b.data.dtype == np.int64
    assert tensor_b.data.tolist() == [7, -8]
    assert harness.events == []


async def test_integral_floats_convert_to_integers() -> None:
    harness = Harness()
    tensor_b = b(np.array([1.0, -3.0]))
    await harness.run(request(a(), tensor_b))
    assert tensor_b.datatype is Datatype.INT64
    assert tensor_b.data.tolist() == [1, -3]


async def test_without_conversion_any_datatype_mismatch_is_refused() -> None:
    harness = Harness(ValidationOptions(convert_datatypes=False))
    tensor_a = a(np.ones((1, 4)))  # FP64, convertible losslessly but conversion is off
    error = await harness.refusal(request(tensor_a, b()))
    assert error.field == "inputs[0].datatype"
    assert error.reason == "input 'a' of model 'm' takes FP32, got FP64"
    assert tensor_a.datatype is Datatype.FP64
    assert tensor_a.data.dtype == np.float64


async def test_without_conversion_matching_datatypes_pass() -> None:
    harness = Harness(ValidationOptions(convert_datatypes=False))
    await harness.run(request(a(), b()))
    assert len(harness.calls) == 1


def test_options_default_to_converting_and_are_frozen() -> None:
    options = ValidationOptions()
    assert options.convert_datatypes is True
    assert ValidationPolicy(lambda: SIGNATURE).options == options
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.convert_datatypes = False  # type: ignore[misc]


async def test_the_signature_is_read_on_every_call() -> None:
    signatures = [SIGNATURE, dataclasses.replace(SIGNATURE, inputs=SIGNATURE.inputs[:1])]
    events: list[object] = []
    policy = ValidationPolicy(lambda: signatures[0], on_event=events.append)
    calls = 0

    async def call_next(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        nonlocal calls
        calls += 1
        return InferenceResponse("m", [])

    await policy(request(a(), b()), CallContext.new("r"), call_next)
    signatures.reverse()  # the model was reloaded with a signature that has no input "b"
    with pytest.raises(InvalidInputError, match=r"inputs\[1\]\.name: model 'm' has no input 'b'"):
        await policy(request(a(), b()), CallContext.new("r"), call_next)
    assert calls == 1
    assert len(events) == 1


async def test_a_signature_that_is_not_available_propagates_without_an_event() -> None:
    backend = MockBackend("m")  # not loaded: metadata() raises ModelNotReadyError
    events: list[object] = []
    policy = ValidationPolicy(backend.metadata, on_event=events.append)
    with pytest.raises(ModelNotReadyError):
        await Pipeline([policy], backend.infer)(request(a()), CallContext.new("r"))
    assert events == []
    assert backend.stats.calls == 0


async def test_in_a_pipeline_the_backend_receives_converted_inputs() -> None:
    backend = MockBackend("m", record_requests=True)
    await backend.load()
    events: list[object] = []
    pipeline = Pipeline([ValidationPolicy(backend.metadata, on_event=events.append)], backend.infer)
    assert repr(pipeline) == "Pipeline(validation → mock:m)"

    tensor = Tensor.from_numpy("input-0", np.array([[1.5, 2.0]]))  # FP64 for the mock's FP32
    response = await pipeline(InferenceRequest("m", [tensor]), CallContext.new("r"))
    (output,) = response.outputs
    assert (output.name, output.datatype) == ("output-0", Datatype.FP32)
    assert output.data.dtype == np.float32
    assert output.data.tolist() == [[1.5, 2.0]]
    assert backend.stats.calls == 1

    with pytest.raises(InvalidInputError) as info:
        await pipeline(
            InferenceRequest("m", [Tensor.from_numpy("input-0", np.ones(3, np.float32))]),
            CallContext.new("r"),
        )
    assert info.value.field == "inputs[0].shape"
    assert backend.stats.calls == 1
    assert events == [InputRejected("m", "inputs[0].shape", info.value.reason)]
