"""CallableBackend: import targets, both call shapes, async functions, results checked."""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from seawall.backends.inprocess.callable import CallableBackend, resolve
from seawall.context import CallContext
from seawall.errors import ConfigError, InvalidInputError, ModelExecutionError
from seawall.types import Datatype, InferenceRequest, Parameters, Tensor, TensorSpec

INPUTS = [TensorSpec("x", Datatype.FP64, (-1,))]
OUTPUTS = [TensorSpec("y", Datatype.FP64, (-1,))]
_names = itertools.count()

WriteModule = Callable[[str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteModule]:
    """Writes a module with a fresh name into tmp_path; sys.path and sys.modules are restored."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    written: list[str] = []

    def write(source: str) -> str:
        name = f"seawall_test_rules_{next(_names)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def request(**parameters: Any) -> InferenceRequest:
    return InferenceRequest(
        model="rules",
        inputs=[Tensor.from_numpy("x", np.array([1.0, 2.0, 3.0]))],
        parameters=dict(parameters),
    )


async def infer(backend: CallableBackend, req: InferenceRequest | None = None) -> Any:
    await backend.load()
    try:
        return await backend.infer(req or request(), CallContext.new())
    finally:
        await backend.close()


PLUS_ONE = """
    def predict(inputs):
        return {"y": inputs["x"] + 1}
"""


async def test_target_is_imported_from_the_search_path(
    write_module: WriteModule, tmp_path: Path
) -> None:
    module = write_module(PLUS_ONE)
    backend = CallableBackend(
        f"{module}:predict", inputs=INPUTS, outputs=OUTPUTS, search_path=tmp_path
    )

    response = await infer(backend)

    assert response.outputs[0].data.tolist() == [2.0, 3.0, 4.0]
    assert backend.name == f"python:{module}:predict"
    assert str(tmp_path) in sys.path


async def test_metadata_is_the_declared_signature(
    write_module: WriteModule, tmp_path: Path
) -> None:
    module = write_module(PLUS_ONE)
    backend = CallableBackend(
        f"{module}:predict", inputs=INPUTS, outputs=OUTPUTS, search_path=str(tmp_path)
    )
    await backend.load()
    metadata = backend.metadata()
    await backend.close()
    assert (metadata.name, metadata.platform) == (f"{module}:predict", "python")
    assert (metadata.inputs, metadata.outputs) == (tuple(INPUTS), tuple(OUTPUTS))


async def test_dotted_attribute_path(write_module: WriteModule, tmp_path: Path) -> None:
    module = write_module(
        """
        class Rules:
            class Scaled:
                @staticmethod
                def predict(inputs):
                    return {"y": inputs["x"] * 10}
        """
    )
    assert resolve(f"{module}:Rules.Scaled.predict", tmp_path).__qualname__ == (
        "Rules.Scaled.predict"
    )
    backend = CallableBackend(
        f"{module}:Rules.Scaled.predict", inputs=INPUTS, outputs=OUTPUTS, search_path=tmp_path
    )
    assert (await infer(backend)).outputs[0].data.tolist() == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("target", ["no_colon", ":predict", "module:", "a.b"])
async def test_target_of_the_wrong_form_is_a_config_error(target: str) -> None:
    backend = CallableBackend(target, inputs=INPUTS, outputs=OUTPUTS)
    with pytest.raises(ConfigError, match=re.escape("is not of the form 'module.path:function'")):
        await backend.load()
    assert not backend.ready()


async def test_missing_module_is_a_config_error() -> None:
    backend = CallableBackend("seawall_no_such_module_here:predict", inputs=INPUTS, outputs=OUTPUTS)
    with pytest.raises(
        ConfigError, match="target: cannot import module 'seawall_no_such_module_here'"
    ):
        await backend.load()


async def test_module_whose_own_import_fails_is_a_config_error(
    write_module: WriteModule, tmp_path: Path
) -> None:
    module = write_module("import seawall_missing_dependency\n")
    backend = CallableBackend(
        f"{module}:predict", inputs=INPUTS, outputs=OUTPUTS, search_path=tmp_path
    )
    with pytest.raises(ConfigError, match=f"cannot import module '{module}'") as raised:
        await backend.load()
    assert "seawall_missing_dependency" in str(raised.value)


async def test_missing_attribute_is_a_config_error(
    write_module: WriteModule, tmp_path: Path
) -> None:
    module = write_module(PLUS_ONE)
    for attr in ("predcit", "predict.nested"):
        backend = CallableBackend(
            f"{module}:{attr}", inputs=INPUTS, outputs=OUTPUTS, search_path=tmp_path
        )
        with pytest.raises(ConfigError) as raised:
            await backend.load()
        assert str(raised.value) == f"target: {module!r} has no attribute {attr!r}"


async def test_target_that_is_not_callable_is_a_config_error(
    write_module: WriteModule, tmp_path: Path
) -> None:
    module = write_module("THRESHOLD = 0.5\n")
    backend = CallableBackend(
        f"{module}:THRESHOLD", inputs=INPUTS, outputs=OUTPUTS, search_path=tmp_path
    )
    with pytest.raises(ConfigError, match="is a float, not callable"):
        await backend.load()


async def test_function_taking_parameters_receives_the_requests(
    write_module: WriteModule, tmp_path: Path
) -> None:
    module = write_module(
        """
        def predict(inputs, parameters):
            return {"y": inputs["x"] * parameters.get("scale", 1)}
        """
    )
    backend = CallableBackend(
        f"{module}:predict", inputs=INPUTS, outputs=OUTPUTS, search_path=tmp_path
    )
    response = await infer(backend, request(scale=3))
    assert response.outputs[0].data.tolist() == [3.0, 6.0, 9.0]


async def test_one_and_two_argument_callables_are_told_apart() -> None:
    seen: list[tuple[Any, ...]] = []

    def one(inputs: dict[str, Any]) -> dict[str, Any]:
        seen.append((sorted(inputs),))
        return {"y": inputs["x"]}

    def two(inputs: dict[str, Any], parameters: Parameters) -> dict[str, Any]:
        seen.append((sorted(inputs), parameters))
        return {"y": inputs["x"]}

    def variadic(*args: Any) -> dict[str, Any]:
        seen.append(args[1:])
        return {"y": args[0]["x"]}

    for fn in (one, two, variadic):
        await infer(CallableBackend(fn, inputs=INPUTS, outputs=OUTPUTS), request(k="v"))

    assert seen == [(["x"],), (["x"], {"k": "v"}), ({"k": "v"},)]


async def test_sync_functions_run_on_a_worker_thread() -> None:
    threads: list[int] = []

    def predict(inputs: dict[str, Any]) -> dict[str, Any]:
        threads.append(threading.get_ident())
        return {"y": inputs["x"]}

    await infer(CallableBackend(predict, inputs=INPUTS, outputs=OUTPUTS))
    assert threads
    assert threads[0] != threading.get_ident()


async def test_async_functions_run_on_the_event_loop() -> None:
    seen: list[tuple[int, asyncio.AbstractEventLoop]] = []

    async def predict(inputs: dict[str, Any], parameters: Parameters) -> dict[str, Any]:
        seen.append((threading.get_ident(), asyncio.get_running_loop()))
        await asyncio.sleep(0)
        return {"y": inputs["x"] - parameters["offset"]}

    response = await infer(
        CallableBackend(predict, inputs=INPUTS, outputs=OUTPUTS), request(offset=1)
    )

    assert seen == [(threading.get_ident(), asyncio.get_running_loop())]
    assert response.outputs[0].data.tolist() == [0.0, 1.0, 2.0]


class AsyncModel:
    """A callable object whose `__call__` is a coroutine function."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    async def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.threads.append(threading.get_ident())
        return {"y": -inputs["x"]}


async def test_callable_object_with_async_call_runs_on_the_event_loop() -> None:
    model = AsyncModel()
    response = await infer(CallableBackend(model, inputs=INPUTS, outputs=OUTPUTS))
    assert model.threads == [threading.get_ident()]
    assert response.outputs[0].data.tolist() == [-1.0, -2.0, -3.0]


class Threshold:
    """A plain callable object holding state, passed directly instead of an import path."""

    def __init__(self, cut: float) -> None:
        self.cut = cut

    def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"y": (inputs["x"] > self.cut).astype(np.float64)}


async def test_callable_object_passed_directly() -> None:
    backend = CallableBackend(Threshold(1.5), inputs=INPUTS, outputs=OUTPUTS)
    response = await infer(backend)
    assert response.outputs[0].data.tolist() == [0.0, 1.0, 1.0]
    assert backend.name == "python:callable"  # an instance has no __qualname__

    named = CallableBackend(test_callable_object_passed_directly, inputs=INPUTS, outputs=OUTPUTS)
    assert named.name == "python:test_callable_object_passed_directly"


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_returning_a_non_mapping_is_a_model_execution_error(is_async: bool) -> None:
    def sync_fn(inputs: dict[str, Any]) -> Any:
        return [1.0, 2.0]

    async def async_fn(inputs: dict[str, Any]) -> Any:
        return [1.0, 2.0]

    backend = CallableBackend(async_fn if is_async else sync_fn, inputs=INPUTS, outputs=OUTPUTS)
    with pytest.raises(ModelExecutionError, match="returned a list; expected a mapping"):
        await infer(backend)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_exceptions_are_translated_for_sync_and_async_functions(is_async: bool) -> None:
    def sync_fn(inputs: dict[str, Any]) -> Any:
        raise ValueError("negative lengths")

    async def async_fn(inputs: dict[str, Any]) -> Any:
        raise ValueError("negative lengths")

    def sync_crash(inputs: dict[str, Any]) -> Any:
        return {}["missing"]

    async def async_crash(inputs: dict[str, Any]) -> Any:
        return {}["missing"]

    rejecting = CallableBackend(async_fn if is_async else sync_fn, inputs=INPUTS, outputs=OUTPUTS)
    with pytest.raises(InvalidInputError, match="negative lengths") as raised:
        await infer(rejecting)
    assert raised.value.field == "inputs"

    crashing = CallableBackend(
        async_crash if is_async else sync_crash, inputs=INPUTS, outputs=OUTPUTS
    )
    with pytest.raises(ModelExecutionError, match="KeyError: 'missing'"):
        await infer(crashing)


@pytest.mark.parametrize(
    ("inputs", "outputs"), [([], OUTPUTS), (INPUTS, []), ([], [])], ids=["in", "out", "both"]
)
def test_inputs_and_outputs_must_be_declared(
    inputs: list[TensorSpec], outputs: list[TensorSpec]
) -> None:
    with pytest.raises(ConfigError, match="must declare its inputs and outputs"):
        CallableBackend("m:f", inputs=inputs, outputs=outputs)
