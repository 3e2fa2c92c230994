"""`CallableBackend`: a Python function named by import path, e.g. ``mypkg.rules:predict``."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from seawall.backends.inprocess.base import Arrays, InProcessBackend, InProcessOptions
from seawall.clock import Clock
from seawall.errors import ConfigError, InvalidInputError, ModelExecutionError, SeawallError
from seawall.types import ModelMetadata, Parameters, TensorSpec

__all__ = ["CallableBackend", "resolve"]

#: Signature of the function: named input arrays (and, optionally, the request's parameters)
#: in, named outputs out. `async def` functions run on the event loop; others on the executor.
ModelFunction = Callable[..., Any]


def resolve(target: str, search_path: str | Path | None = None) -> Any:
    """Import ``module.path:attribute.path`` and return the attribute."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"target: {target!r} is not of the form 'module.path:function'")
    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"target: cannot import module {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"target: {module_name!r} has no attribute {attr_path!r}") from None
    return obj


class CallableBackend(InProcessBackend):
    """Inputs and outputs are declared in config, since a function has no signature to read."""

    platform = "python"

    def __init__(
        self,
        target: str | ModelFunction,
        *,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        search_path: str | Path | None = None,
        options: InProcessOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        label = target if isinstance(target, str) else getattr(target, "__qualname__", "callable")
        super().__init__(f"python:{label}", options=options, clock=clock)
        if not inputs or not outputs:
            raise ConfigError(f"{self.name}: a python model must declare its inputs and outputs")
        self._target = target
        self._search_path = search_path
        self._inputs = tuple(inputs)
        self._outputs = tuple(outputs)
        self._fn: ModelFunction | None = None
        self._pass_parameters = False
        self._is_async = False

    def _load_sync(self) -> ModelMetadata:
        fn = (
            resolve(self._target, self._search_path)
            if isinstance(self._target, str)
            else self._target
        )
        if not callable(fn):
            raise ConfigError(f"target: {self._target!r} is a {type(fn).__name__}, not callable")
        self._pass_parameters = _takes_two_arguments(fn)
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - instances with an async __call__
        )
        self._fn = fn
        name = self._target if isinstance(self._target, str) else self.name
        return ModelMetadata(
            name=name, platform=self.platform, inputs=self._inputs, outputs=self._outputs
        )

    async def _run(
        self, inputs: Arrays, wanted: Sequence[str], parameters: Parameters, deadline: float | None
    ) -> Arrays:
        if not self._is_async:
            return await super()._run(inputs, wanted, parameters, deadline)
        try:
            result = await self._call(inputs, parameters)
        except (SeawallError, asyncio.CancelledError):
            raise
        except ValueError as exc:
            raise InvalidInputError("inputs", f"the model rejected the input: {exc}") from exc
        except Exception as exc:  # model code is foreign: translate whatever it raises
            raise ModelExecutionError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        return self._check_result(result)

    def _predict_sync(
        self, inputs: Arrays, wanted: Sequence[str], parameters: Parameters
    ) -> Arrays:
        return self._check_result(self._call(inputs, parameters))

    def _call(self, inputs: Arrays, parameters: Parameters) -> Any:
        assert self._fn is not None, "called before load()"
        return (
            self._fn(dict(inputs), parameters) if self._pass_parameters else self._fn(dict(inputs))
        )

    def _check_result(self, result: Any) -> Arrays:
        if not isinstance(result, Mapping):
            raise ModelExecutionError(
                f"{self.name}: returned a {type(result).__name__}; "
                "expected a mapping of output name to array"
            )
        return result


def _takes_two_arguments(fn: Any) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
