"""Models that run inside the gateway's process: scikit-learn, ONNX Runtime, Python callables."""

from seawall.backends.inprocess.base import InProcessBackend, InProcessOptions
from seawall.backends.inprocess.callable import CallableBackend
from seawall.backends.inprocess.onnx import OnnxBackend
from seawall.backends.inprocess.sklearn import SklearnBackend

__all__ = [
    "CallableBackend",
    "InProcessBackend",
    "InProcessOptions",
    "OnnxBackend",
    "SklearnBackend",
]
