"""seawall: keeps AI services answering through traffic surges, outages, bad data and bad releases.

`import seawall` gives the pipeline, the policies and the backends, for use inside another app::

    from seawall import Pipeline, ValidationPolicy, SklearnBackend
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seawall")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

from seawall.backends import (
    Backend,
    CallableBackend,
    Fail,
    Hang,
    MockBackend,
    ModelRepository,
    OnnxBackend,
    Respond,
    SklearnBackend,
)
from seawall.clock import Clock, FakeClock, SystemClock
from seawall.context import CallContext
from seawall.pipeline import Handler, Pipeline, Policy
from seawall.policies import ValidationOptions, ValidationPolicy
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)

__all__ = [
    "Backend",
    "CallContext",
    "CallableBackend",
    "Clock",
    "Datatype",
    "Fail",
    "FakeClock",
    "Handler",
    "Hang",
    "InferenceRequest",
    "InferenceResponse",
    "MockBackend",
    "ModelMetadata",
    "ModelRepository",
    "OnnxBackend",
    "Pipeline",
    "Policy",
    "Respond",
    "SklearnBackend",
    "SystemClock",
    "Tensor",
    "TensorSpec",
    "ValidationOptions",
    "ValidationPolicy",
    "__version__",
]
