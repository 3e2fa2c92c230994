"""Input validation: every request is checked against the model's signature before it runs.

Checks input names (unknown, duplicate, missing), datatypes, shapes and requested outputs. A
datatype that differs from the model's is converted when no value changes (FP64 data for an
FP32 input, say) and refused otherwise. Each refusal is a 400 that names the field and the rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seawall.context import CallContext
from seawall.errors import InvalidInputError
from seawall.pipeline import EventSink, Handler, discard
from seawall.types import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
    coerce,
)

__all__ = ["InputRejected", "ValidationOptions", "ValidationPolicy"]

DEFAULT_CONVERT_DATATYPES = True


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    """How strictly requests are held to the signature."""

    #: Convert inputs to the model's datatype when lossless; False refuses any mismatch.
    convert_datatypes: bool = DEFAULT_CONVERT_DATATYPES


@dataclass(frozen=True, slots=True)
class InputRejected:
    """A request failed validation."""

    model: str
    field: str
    reason: str


class ValidationPolicy:
    """Refuses requests that do not fit `signature()`; converts datatypes when lossless."""

    name = "validation"

    def __init__(
        self,
        signature: Callable[[], ModelMetadata],
        options: ValidationOptions | None = None,
        *,
        on_event: EventSink = discard,
    ) -> None:
        self._signature = signature
        self.options = options or ValidationOptions()
        self._on_event = on_event

    async def __call__(
        self,
        request: InferenceRequest,
        ctx: CallContext,
        call_next: Handler[InferenceRequest, InferenceResponse],
    ) -> InferenceResponse:
        try:
            self.check(request, self._signature())
        except InvalidInputError as exc:
            self._on_event(InputRejected(request.model, exc.field, exc.reason))
            raise
        return await call_next(request, ctx)

    def check(self, request: InferenceRequest, signature: ModelMetadata) -> None:
        """Validate `request` in place, converting input datatypes where allowed."""
        model = request.model
        seen: set[str] = set()
        for i, tensor in enumerate(request.inputs):
            field = f"inputs[{i}]"
            if tensor.name in seen:
                raise InvalidInputError(f"{field}.name", f"input {tensor.name!r} is given twice")
            seen.add(tensor.name)
            spec = signature.input(tensor.name)
            if spec is None:
                names = ", ".join(s.name for s in signature.inputs)
                raise InvalidInputError(
                    f"{field}.name",
                    f"model {model!r} has no input {tensor.name!r} (inputs: {names})",
                )
            self._check_tensor(field, tensor, spec, model)
        for spec in signature.inputs:
            if spec.name not in seen:
                raise InvalidInputError(
                    "inputs", f"missing input {spec.name!r} required by model {model!r}"
                )
        self._check_outputs(request, signature)

    def _check_tensor(self, field: str, tensor: Tensor, spec: TensorSpec, model: str) -> None:
        if not spec.matches_shape(tensor.shape):
            raise InvalidInputError(
                f"{field}.shape",
                f"input {spec.name!r} of model {model!r} takes shape {list(spec.shape)}, "
                f"got {list(tensor.shape)}",
            )
        if tensor.datatype is spec.datatype:
            return
        rule = (
            f"input {spec.name!r} of model {model!r} takes {spec.datatype}, got {tensor.datatype}"
        )
        if not self.options.convert_datatypes:
            raise InvalidInputError(f"{field}.datatype", rule)
        try:
            tensor.data = coerce(tensor.data, spec.datatype)
        except ValueError as exc:
            raise InvalidInputError(f"{field}.datatype", f"{rule}: {exc}") from None
        tensor.datatype = spec.datatype

    @staticmethod
    def _check_outputs(request: InferenceRequest, signature: ModelMetadata) -> None:
        if request.outputs is None:
            return
        seen: set[str] = set()
        for j, wanted in enumerate(request.outputs):
            if wanted.name in seen:
                raise InvalidInputError(
                    f"outputs[{j}].name", f"output {wanted.name!r} is requested twice"
                )
            seen.add(wanted.name)
            if signature.output(wanted.name) is None:
                names = ", ".join(s.name for s in signature.outputs)
                raise InvalidInputError(
                    f"outputs[{j}].name",
                    f"model {request.model!r} has no output {wanted.name!r} (outputs: {names})",
                )
