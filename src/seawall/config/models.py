"""Model settings: where each model runs (its backend) and the policies in front of it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from seawall.config.base import NAME_PATTERN, Settings
from seawall.config.policies import PolicySettings
from seawall.types import Datatype

__all__ = [
    "BACKEND_KINDS",
    "BackendSettings",
    "CallableBackendSettings",
    "MockBackendSettings",
    "ModelSettings",
    "OnnxBackendSettings",
    "SklearnBackendSettings",
    "TensorSpecSettings",
    "ValidationSettings",
]


class TensorSpecSettings(Settings):
    """One input or output of a model signature."""

    name: str = Field(min_length=1)
    """Tensor name."""
    datatype: Datatype
    """Open Inference Protocol datatype (FP32, INT64, BYTES...)."""
    shape: list[Annotated[int, Field(ge=-1)]]
    """Dimensions; -1 for any size."""


class _InProcessSettings(Settings):
    workers: int = Field(1, ge=1, le=256)
    """Threads running this model's inference."""
    max_queue: int = Field(64, ge=0)
    """Calls that may wait for a thread; beyond this they get 503 with Retry-After."""


class SklearnBackendSettings(_InProcessSettings):
    """A scikit-learn model saved with joblib or pickle."""

    kind: Literal["sklearn"]
    """Backend kind."""
    path: str = Field(min_length=1)
    """Model file (relative to the config file's directory)."""
    input_name: str = "input-0"
    """Name of the single 2-D input tensor."""
    input_datatype: Datatype = Datatype.FP64
    """Datatype the model takes; requests in another numeric type are converted when lossless."""


class OnnxBackendSettings(_InProcessSettings):
    """An ONNX model run by ONNX Runtime."""

    kind: Literal["onnx"]
    """Backend kind."""
    path: str = Field(min_length=1)
    """`.onnx` file (relative to the config file's directory)."""
    intra_op_threads: int = Field(1, ge=1, le=64)
    """ONNX Runtime threads per call."""


class CallableBackendSettings(_InProcessSettings):
    """A Python function: `fn(inputs)` or `fn(inputs, parameters)` returning named arrays."""

    kind: Literal["python"]
    """Backend kind."""
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    """Import path, `package.module:function`."""
    search_path: str | None = None
    """Directory added to the import path first (relative to the config file's directory)."""
    inputs: list[TensorSpecSettings] = Field(min_length=1)
    """Input signature."""
    outputs: list[TensorSpecSettings] = Field(min_length=1)
    """Output signature."""


class MockBackendSettings(Settings):
    """A scripted stand-in that echoes its inputs, for tests and chaos experiments."""

    kind: Literal["mock"]
    """Backend kind."""
    latency_ms: float = Field(0.0, ge=0)
    """Delay before each answer."""
    error_rate: float = Field(0.0, ge=0, le=1)
    """Share of calls that fail as an unavailable backend."""
    seed: int | None = None
    """Seed of the failure draw, for repeatable runs."""


BackendSettings = Annotated[
    SklearnBackendSettings | OnnxBackendSettings | CallableBackendSettings | MockBackendSettings,
    Field(discriminator="kind"),
]
BACKEND_KINDS = {"sklearn", "onnx", "python", "mock"}


class ValidationSettings(Settings):
    """Input validation against the model's signature."""

    convert_datatypes: bool = True
    """Convert inputs to the model's datatype when no value changes; false refuses mismatches."""


class ModelSettings(Settings):
    """One version of a served model."""

    name: str = Field(pattern=NAME_PATTERN)
    """Model name, as in /v2/models/{name}."""
    version: str = Field("1", pattern=NAME_PATTERN)
    """Version, as in /v2/models/{name}/versions/{version} (`version: 2` is read as "2")."""
    default: bool = False
    """Serve unversioned calls with this version (else the first listed)."""
    backend: BackendSettings
    """Where the model runs."""
    validation: ValidationSettings = ValidationSettings()
    """Input validation."""
    policies: PolicySettings = PolicySettings()
    """Resilience policies; sections given here replace those of `policy_defaults`."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # YAML reads `version: 2` as an integer; a version is a name, so take it as text.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
