"""InProcessBackend through a tiny subclass: error translation, outputs, lifecycle, options."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from seawall.backends.inprocess.base import Arrays, InProcessBackend, InProcessOptions
from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    InvalidInputError,
    ModelExecutionError,
    ModelNotReadyError,
    OverloadedError,
)
from seawall.types import (
    Datatype,
    InferenceRequest,
    ModelMetadata,
    Parameters,
    RequestedOutput,
    Tensor,
    TensorSpec,
)

Predict = Callable[[Arrays, Sequence[str], Parameters], dict[str, Any]]


def doubled_and_negated(inputs: Arrays, wanted: Sequence[str], parameters: Parameters) -> Arrays:
    x = inputs["x"]
    compute = {"doubled": lambda: x * 2, "negated": lambda: -x}
    return {name: compute[name]() for name in wanted}


class Toy(InProcessBackend):
    """Input `x` (FP64 vector); outputs `doubled` and `negated`, computed by `predict`."""

    platform = "toy"

    def __init__(self, predict: Predict = doubled_and_negated, **kwargs: Any) -> None:
        super().__init__("toy:model", **kwargs)
        self._predict = predict
        self.calls: list[tuple[list[str], Parameters]] = []
        self.threads: list[int] = []

    def _load_sync(self) -> ModelMetadata:
        return ModelMetadata(
            name="toy",
            platform=self.platform,
            inputs=(TensorSpec("x", Datatype.FP64, (-1,)),),
            outputs=(
                TensorSpec("doubled", Datatype.FP64, (-1,)),
                TensorSpec("negated", Datatype.FP64, (-1,)),
            ),
        )

    def _predict_sync(
        self, inputs: Arrays, wanted: Sequence[str], parameters: Parameters
    ) -> Arrays:
        self.calls.append((list(wanted), parameters))
        self.threads.append(threading.get_ident())
        return self._predict(inputs, wanted, parameters)


def request(*, outputs: list[str] | None = None, **parameters: Any) -> InferenceRequest:
    return InferenceRequest(
        model="toy",
        version="2",
        id="abc",
        inputs=[Tensor.from_numpy("x", np.array([1.0, -2.5]))],
        parameters=dict(parameters),
        outputs=None if outputs is None else [RequestedOutput(n) for n in outputs],
    )


def raising(error: BaseException) -> Predict:
    def predict(inputs: Arrays, wanted: Sequence[str], parameters: Parameters) -> Arrays:
        raise error

    return predict


async def loaded(backend: Toy) -> Toy:
    await backend.load()
    return backend


async def test_infer_returns_every_output_in_signature_order_off_the_loop() -> None:
    backend = await loaded(Toy())

    response = await backend.infer(request(threshold=0.5), CallContext.new())

    assert (response.model, response.version, response.id) == ("toy", "2", "abc")
    assert [(t.name, t.datatype, t.shape) for t in response.outputs] == [
        ("doubled", Datatype.FP64, (2,)),
        ("negated", Datatype.FP64, (2,)),
    ]
    assert response.outputs[0].data.tolist() == [2.0, -5.0]
    assert response.outputs[1].data.tolist() == [-1.0, 2.5]
    assert backend.calls == [(["doubled", "negated"], {"threshold": 0.5})]
    assert backend.threads[0] != threading.get_ident()
    assert backend.pending == 0


async def test_outputs_filter_computes_only_the_requested_outputs() -> None:
    backend = await loaded(Toy())

    response = await backend.infer(request(outputs=["negated"]), CallContext.new())

    assert [t.name for t in response.outputs] == ["negated"]
    assert backend.calls == [(["negated"], {})]


async def test_value_error_from_model_code_is_invalid_input() -> None:
    cause = ValueError("X has 3 features, but the model expects 4")
    backend = await loaded(Toy(raising(cause)))

    with pytest.raises(InvalidInputError) as raised:
        await backend.infer(request(), CallContext.new())

    assert raised.value.field == "inputs"
    assert raised.value.reason == (
        "the model rejected the input: X has 3 features, but the model expects 4"
    )
    assert raised.value.__cause__ is cause


async def test_other_exceptions_from_model_code_are_model_execution_errors() -> None:
    cause = ZeroDivisionError("division by zero")
    backend = await loaded(Toy(raising(cause)))

    with pytest.raises(ModelExecutionError) as raised:
        await backend.infer(request(), CallContext.new())

    assert str(raised.value) == "toy:model: ZeroDivisionError: division by zero"
    assert raised.value.__cause__ is cause
    assert not raised.value.retryable


async def test_seawall_errors_from_model_code_pass_through() -> None:
    error = BackendUnavailableError("downstream feature store is down")
    backend = await loaded(Toy(raising(error)))

    with pytest.raises(BackendUnavailableError) as raised:
        await backend.infer(request(), CallContext.new())

    assert raised.value is error


async def test_missing_output_is_a_bad_response() -> None:
    backend = await loaded(Toy(lambda inputs, wanted, parameters: {"doubled": inputs["x"]}))

    with pytest.raises(BadResponseError, match="toy:model: the model returned no output 'negated'"):
        await backend.infer(request(), CallContext.new())


async def test_output_of_an_unsupported_dtype_is_a_bad_response() -> None:
    backend = await loaded(
        Toy(lambda inputs, wanted, parameters: {"doubled": inputs["x"] * 1j, "negated": -1})
    )

    with pytest.raises(BadResponseError, match=r"output 'doubled'.*complex128"):
        await backend.infer(request(), CallContext.new())


async def test_output_dtype_follows_the_returned_array() -> None:
    backend = await loaded(
        Toy(
            lambda inputs, wanted, parameters: {
                "doubled": np.array([True, False]),
                "negated": np.array(["a", "b"]),
            }
        )
    )

    doubled, negated = (await backend.infer(request(), CallContext.new())).outputs

    assert (doubled.datatype, doubled.data.tolist()) == (Datatype.BOOL, [True, False])
    assert (negated.datatype, negated.data.tolist()) == (Datatype.BYTES, [b"a", b"b"])


async def test_not_loaded_backend_is_not_ready() -> None:
    backend = Toy()
    assert not backend.ready()
    assert backend.pending == 0
    with pytest.raises(ModelNotReadyError, match="toy:model: not loaded"):
        backend.metadata()
    with pytest.raises(ModelNotReadyError):
        await backend.infer(request(), CallContext.new())
    assert backend.calls == []


async def test_close_is_idempotent_and_leaves_the_backend_not_ready() -> None:
    backend = await loaded(Toy())
    assert backend.ready()
    assert backend.metadata().name == "toy"

    await backend.close()
    assert not backend.ready()
    await backend.close()
    assert not backend.ready()
    with pytest.raises(ModelNotReadyError):
        await backend.infer(request(), CallContext.new())

    await backend.load()  # can be loaded again after close
    assert (await backend.infer(request(), CallContext.new())).outputs


async def test_close_before_load_is_safe() -> None:
    backend = Toy()
    await backend.close()
    assert not backend.ready()


async def test_passed_deadline_on_the_injected_clock_skips_the_model() -> None:
    clock = FakeClock()
    backend = await loaded(Toy(clock=clock))

    with pytest.raises(BackendTimeoutError):
        await backend.infer(request(), CallContext.new(deadline=clock.monotonic()))
    assert backend.calls == []

    await backend.infer(request(), CallContext.new(deadline=clock.monotonic() + 1.0))
    assert len(backend.calls) == 1


async def test_options_size_the_executor() -> None:
    started, release = threading.Event(), threading.Event()

    def blocking(inputs: Arrays, wanted: Sequence[str], parameters: Parameters) -> Arrays:
        started.set()
        release.wait(10.0)
        return doubled_and_negated(inputs, wanted, parameters)

    options = InProcessOptions(workers=1, max_queue=0, retry_after_s=3.0)
    backend = await loaded(Toy(blocking, options=options))
    try:
        first = asyncio.create_task(backend.infer(request(), CallContext.new()))
        assert await asyncio.to_thread(started.wait, 10.0)
        assert backend.pending == 1

        with pytest.raises(OverloadedError) as refused:
            await backend.infer(request(), CallContext.new())
        assert refused.value.retry_after_s == 3.0

        release.set()
        assert len((await first).outputs) == 2
    finally:
        release.set()
        await backend.close()


def test_options_defaults() -> None:
    options = InProcessOptions()
    assert (options.workers, options.max_queue, options.retry_after_s) == (1, 64, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers: must be at least 1, got 0"),
        ({"max_queue": -1}, "max_queue: must be 0 or more, got -1"),
        ({"retry_after_s": -0.5}, "retry_after_s: must be 0 or more, got -0.5"),
    ],
)
def test_options_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InProcessOptions(**kwargs)


def test_repr_names_the_class_and_backend() -> None:
    assert repr(Toy()) == "Toy('toy:model')"


async def test_the_artifact_check_runs_before_the_model_is_read() -> None:
    order: list[str] = []

    class Recording(Toy):
        def _load_sync(self) -> ModelMetadata:
            order.append("load")
            return super()._load_sync()

    backend = await loaded(
        Recording(options=InProcessOptions(check_artifact=lambda: order.append("check")))
    )

    assert order == ["check", "load"]
    assert backend.ready()
    await backend.close()


async def test_a_failed_artifact_check_refuses_the_model_unread() -> None:
    read: list[bool] = []

    class Recording(Toy):
        def _load_sync(self) -> ModelMetadata:
            read.append(True)
            return super()._load_sync()

    def refuse() -> None:
        raise ValueError("toy: digest mismatch: model.bin")

    backend = Recording(options=InProcessOptions(check_artifact=refuse))

    with pytest.raises(ValueError, match="digest mismatch"):
        await backend.load()
    assert read == []
    assert not backend.ready()
    await backend.close()
