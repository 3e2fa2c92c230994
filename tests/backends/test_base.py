"""The Backend protocol: every concrete backend satisfies it, and objects missing a part do not."""

from __future__ import annotations

from typing import Any

import pytest

from seawall.backends import (
    Backend,
    CallableBackend,
    MockBackend,
    OnnxBackend,
    SklearnBackend,
)
from seawall.types import Datatype, TensorSpec


def identity(inputs: dict[str, Any]) -> dict[str, Any]:
    return dict(inputs)


SPEC = [TensorSpec("x", Datatype.FP64, (-1,))]


@pytest.mark.parametrize(
    "backend",
    [
        MockBackend("m"),
        SklearnBackend("model.joblib"),
        OnnxBackend("model.onnx"),
        CallableBackend(identity, inputs=SPEC, outputs=SPEC),
        CallableBackend("package.module:predict", inputs=SPEC, outputs=SPEC),
    ],
    ids=["mock", "sklearn", "onnx", "callable-function", "callable-target"],
)
def test_concrete_backends_satisfy_the_protocol(backend: object) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(backend.name, str)
    assert backend.name


class NoInfer:
    name = "incomplete"

    async def load(self) -> None: ...

    def ready(self) -> bool:
        return False

    def metadata(self) -> None: ...

    async def close(self) -> None: ...


class Complete(NoInfer):
    async def infer(self, request: object, ctx: object) -> None: ...


def test_an_object_missing_a_method_is_not_a_backend() -> None:
    assert not isinstance(NoInfer(), Backend)
    assert isinstance(Complete(), Backend)
    assert not isinstance(object(), Backend)
