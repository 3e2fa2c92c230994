"""Backends: where the pipeline's calls end (in-process models, remote servers, test doubles)."""

from seawall.backends.base import Backend
from seawall.backends.executor import BoundedExecutor
from seawall.backends.inprocess import (
    CallableBackend,
    InProcessBackend,
    InProcessOptions,
    OnnxBackend,
    SklearnBackend,
)
from seawall.backends.mock import Fail, Hang, MockBackend, Respond
from seawall.backends.repository import ModelRepository, ModelState, ServedModel

__all__ = [
    "Backend",
    "BoundedExecutor",
    "CallableBackend",
    "Fail",
    "Hang",
    "InProcessBackend",
    "InProcessOptions",
    "MockBackend",
    "ModelRepository",
    "ModelState",
    "OnnxBackend",
    "Respond",
    "ServedModel",
    "SklearnBackend",
]
