"""Model settings: where each model runs (its backend) and the policies in front of it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from seawall.config.base import NAME_PATTERN, Settings
from seawall.config.policies import PolicySettings
from seawall.types import Datatype

__all__ = [
    "BACKEND_KINDS",
    "BackendSettings",
    "CallableBackendSettings",
    "DriftSettings",
    "DriftThresholdSettings",
    "EndpointSettings",
    "HealthCheckSettings",
    "HttpClientSettings",
    "MockBackendSettings",
    "ModelSettings",
    "OipBackendSettings",
    "OnnxBackendSettings",
    "OutlierSettings",
    "ProfileCheckSettings",
    "RegistryBackendSettings",
    "SklearnBackendSettings",
    "TensorSpecSettings",
    "TrainingSettings",
    "ValidationSettings",
]

#: An endpoint's base URL: scheme, host (and port), maybe a path; no query or fragment.
_URL = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")


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


class HttpClientSettings(Settings):
    """How the gateway reaches an upstream over HTTP: timeouts, connections, TLS, headers."""

    connect_timeout_ms: float = Field(2000.0, gt=0)
    """Longest TCP (and TLS) connection set-up."""
    first_byte_timeout_ms: float = Field(30000.0, gt=0)
    """Longest wait from sending a request to the response's headers (a silent upstream is cut
    here)."""
    idle_read_timeout_ms: float = Field(30000.0, gt=0)
    """Longest gap between two chunks of a response body."""
    total_timeout_ms: float | None = Field(None, gt=0)
    """Longest a whole exchange may take (null: only the request's deadline)."""
    max_connections: int = Field(100, ge=1)
    """Connections open at once to one endpoint; calls beyond wait for one."""
    keepalive_s: float = Field(30.0, gt=0)
    """How long an idle connection is kept for reuse."""
    verify_tls: bool = True
    """Verify the upstream's TLS certificate (https URLs)."""
    ca_file: str | None = None
    """CA bundle (PEM) to verify it with (relative to the config file's directory; null: the
    system's)."""
    client_cert: str | None = None
    """Client certificate (PEM) for mutual TLS; needs `client_key`."""
    client_key: str | None = None
    """Private key (PEM) of `client_cert`."""
    headers: dict[str, str] = {}
    """Headers sent with every request, e.g. an upstream API key (`${VAR}` interpolation
    works)."""

    @model_validator(mode="after")
    def _cert_and_key(self) -> HttpClientSettings:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert: give both client_cert and client_key, or neither")
        return self


class HealthCheckSettings(Settings):
    """Active health checks: each endpoint's readiness URL, probed on an interval."""

    interval_s: float = Field(5.0, gt=0)
    """Seconds between two rounds of probes."""
    timeout_ms: float = Field(1000.0, gt=0)
    """Longest a probe may take; a slower one has failed."""
    unhealthy_threshold: int = Field(3, ge=1)
    """Failed probes in a row that take an endpoint out of rotation."""
    healthy_threshold: int = Field(2, ge=1)
    """Passed probes in a row that put it back."""


class OutlierSettings(Settings):
    """Passive outlier ejection (Envoy's): an endpoint whose calls keep failing sits out."""

    consecutive_5xx: int = Field(5, ge=1)
    """Failed calls in a row (unreachable, timeouts, 5xx) that eject an endpoint."""
    base_ejection_s: float = Field(30.0, gt=0)
    """How long the first ejection lasts; the n-th lasts n times this."""
    max_ejection_s: float = Field(300.0, gt=0)
    """Longest an ejection lasts."""
    max_ejection_percent: float = Field(10.0, ge=0, le=100)
    """Most of the endpoints ejected at once, in percent (one is always allowed, the last one
    never)."""

    @model_validator(mode="after")
    def _max_over_base(self) -> OutlierSettings:
        if self.max_ejection_s < self.base_ejection_s:
            raise ValueError(
                f"max_ejection_s: must be at least base_ejection_s ({self.base_ejection_s:g})"
            )
        return self


class EndpointSettings(Settings):
    """One replica of the upstream model."""

    url: str
    """Base URL of an OIP v2 server, e.g. `http://triton:8000` (`${VAR}` interpolation works)."""
    weight: int = Field(1, ge=1, le=1000)
    """Share of calls relative to the other endpoints (`balancer: weighted`)."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not _URL.match(value):
            raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        return value


class OipBackendSettings(Settings):
    """A model on remote Open Inference Protocol v2 servers (Triton, KServe, MLServer, seawall)."""

    kind: Literal["oip"]
    """Backend kind."""
    model: str | None = Field(None, min_length=1)
    """The model's name on the upstream (null: the name it is served under here)."""
    version: str | None = Field(None, min_length=1)
    """The model's version on the upstream (null: the upstream's default)."""
    endpoints: list[EndpointSettings] = Field(min_length=1)
    """Servers that serve the model; calls are balanced over them."""
    balancer: Literal["round_robin", "least_outstanding", "weighted"] = "round_robin"
    """How the next endpoint is chosen: in turn, the one with the fewest calls in flight, or
    in proportion to `weight`."""
    binary: bool = False
    """Send tensors to the upstream in the binary tensor extension (else JSON)."""
    http: HttpClientSettings = HttpClientSettings()
    """Timeouts, connections, TLS and headers for the endpoints."""
    health_check: HealthCheckSettings | None = HealthCheckSettings()
    """Probe each endpoint's readiness URL; endpoints that fail sit out (null: off)."""
    outlier: OutlierSettings | None = OutlierSettings()
    """Eject endpoints whose calls keep failing (null: off)."""
    inputs: list[TensorSpecSettings] | None = Field(None, min_length=1)
    """Input signature, for upstreams that serve no metadata (null: read it from the upstream
    at start-up). Set both `inputs` and `outputs`, or neither."""
    outputs: list[TensorSpecSettings] | None = Field(None, min_length=1)
    """Output signature (see `inputs`)."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _both_halves_of_the_signature(self) -> OipBackendSettings:
        if (self.inputs is None) != (self.outputs is None):
            missing = "outputs" if self.outputs is None else "inputs"
            raise ValueError(f"{missing}: a declared signature needs both inputs and outputs")
        return self

    @model_validator(mode="after")
    def _weights_need_the_weighted_balancer(self) -> OipBackendSettings:
        if self.balancer != "weighted":
            for i, endpoint in enumerate(self.endpoints):
                if endpoint.weight != 1:
                    raise ValueError(
                        f"endpoints[{i}].weight: only `balancer: weighted` uses weights "
                        f"(balancer is {self.balancer})"
                    )
        return self


class RegistryBackendSettings(_InProcessSettings):
    """A model version from the registry, followed as its alias moves (sklearn or ONNX)."""

    kind: Literal["registry"]
    """Backend kind."""
    uri: str = Field(
        pattern=r"^models:/[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}(/[0-9]+|@[a-z][a-z0-9_\-]{0,63})$"
    )
    """`models:/<name>@<alias>` (follows the alias: a promotion swaps versions without dropping
    a call) or `models:/<name>/<version>` (pinned)."""
    input_name: str = "input-0"
    """scikit-learn models: name of the single 2-D input tensor."""
    input_datatype: Datatype = Datatype.FP64
    """scikit-learn models: datatype the model takes."""
    intra_op_threads: int = Field(1, ge=1, le=64)
    """ONNX models: ONNX Runtime threads per call."""


BackendSettings = Annotated[
    SklearnBackendSettings
    | OnnxBackendSettings
    | CallableBackendSettings
    | MockBackendSettings
    | OipBackendSettings
    | RegistryBackendSettings,
    Field(discriminator="kind"),
]
BACKEND_KINDS = {"sklearn", "onnx", "python", "mock", "oip", "registry"}


class TrainingSettings(Settings):
    """Where the model's training data profile comes from: the reference that request-time
    checks (`validation.profile`) and drift monitors (`drift`) compare live inputs against."""

    snapshot: str | None = Field(None, pattern=r"^[0-9a-f]{6,64}$")
    """Id (or 6+ leading hex digits) of the data snapshot the model was trained on (`seawall
    data snapshots`). Null: for `kind: registry` models, the served version's training snapshot
    (`--dataset-snapshot` at registration), followed as versions swap."""
    file: str | None = Field(None, min_length=1)
    """A profile JSON file instead (relative to the config file's directory): the output of
    `seawall data show --json`, or its `profile` alone."""
    features: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1)
    """The columns of a model's single 2-D input, in order (null: the profile's columns but
    `target`). A model with several inputs takes each input as the feature of its name."""
    target: str | None = Field(None, min_length=1)
    """The profile's label column: the model's predictions are compared with its distribution
    (prediction drift; null: predictions are not compared with training)."""

    @model_validator(mode="after")
    def _one_source(self) -> TrainingSettings:
        if self.snapshot is not None and self.file is not None:
            raise ValueError("snapshot, file: give one profile, not both")
        return self


class ProfileCheckSettings(Settings):
    """Checks of each request against the training profile: ranges, categories, nulls."""

    mode: Literal["reject", "flag"] = "reject"
    """`reject`: a 400 naming the value's place, the feature and the rule; `flag`: served,
    counted in `seawall_input_out_of_profile_total` and logged."""
    margin: float = Field(0.0, ge=0, le=100)
    """Share of a numeric feature's training range accepted beyond its minimum and maximum."""


class DriftThresholdSettings(Settings):
    """What counts as drift for one feature (null: the model's `drift` defaults)."""

    psi: float | None = Field(None, gt=0)
    """Population stability index above which (if significant) a feature drifted."""
    js: float | None = Field(None, gt=0, le=1)
    """Jensen-Shannon distance (base 2) above which (if significant) a feature drifted."""
    alpha: float | None = Field(None, gt=0, lt=1)
    """Significance level of the tests, before it is divided among them (Bonferroni)."""


class DriftSettings(Settings):
    """Drift monitoring: a uniform sample of each window's calls, compared with the training
    profile (`training`) per feature and for the predictions (`training.target`)."""

    window_s: float = Field(300.0, ge=1, le=86_400)
    """Length of a window; each closed window gives one report per version served."""
    sample_size: int = Field(1000, ge=10, le=100_000)
    """Calls kept per window (a uniform reservoir sample, taken off the request path)."""
    min_samples: int = Field(100, ge=1, le=100_000)
    """Values below which a feature's statistics say `insufficient data`, not drift."""
    psi: float = Field(0.2, gt=0)
    """Population stability index above which (if significant) a feature drifted."""
    js: float = Field(0.1, gt=0, le=1)
    """Jensen-Shannon distance (base 2) above which (if significant) a feature drifted."""
    alpha: float = Field(0.01, gt=0, lt=1)
    """Chance that a report of same-distribution traffic says `drifting` (divided among its
    tests: Bonferroni)."""
    features: dict[str, DriftThresholdSettings] = {}
    """Thresholds of particular features (or the prediction output), by name."""
    exclude: list[Annotated[str, Field(min_length=1)]] = []
    """Features not to monitor."""
    store: bool = True
    """Keep each report in the database (`seawall monitor drift`, rollout guardrails), when the
    gateway has one (`database_url`)."""


class ValidationSettings(Settings):
    """Input validation against the model's signature (and, optionally, its training data)."""

    convert_datatypes: bool = True
    """Convert inputs to the model's datatype when no value changes; false refuses mismatches."""
    profile: ProfileCheckSettings | None = None
    """Check inputs against the training profile (`training`; null: off)."""


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
    training: TrainingSettings | None = None
    """The training data's profile (null: a registry model's own training snapshot, else
    none); needed by `validation.profile` and `drift`."""
    validation: ValidationSettings = ValidationSettings()
    """Input validation."""
    drift: DriftSettings | None = None
    """Drift monitoring against the training profile (null: off)."""
    policies: PolicySettings = PolicySettings()
    """Resilience policies; sections given here replace those of `policy_defaults`."""
    signature: str | None = Field(None, min_length=1)
    """Signed manifest of the model file (relative to the config file's directory; null:
    `<backend.path>.manifest.json`, checked if present or if `security.require_signed`). A
    manifest named here must exist and verify. Only for models loaded from a file."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # YAML reads `version: 2` as an integer; a version is a name, so take it as text.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _reference_has_a_source(self) -> ModelSettings:
        training = self.training
        if self.validation.profile is None and self.drift is None:
            return self
        if training is not None and (training.snapshot or training.file):
            return self
        if not isinstance(self.backend, RegistryBackendSettings):
            raise ValueError(
                "validation.profile, drift: need `training.snapshot` or `training.file` (only "
                f"registry models default to their training snapshot; this one is "
                f"{self.backend.kind})"
            )
        return self

    @model_validator(mode="after")
    def _signature_needs_a_file(self) -> ModelSettings:
        if self.signature is not None and not isinstance(
            self.backend, SklearnBackendSettings | OnnxBackendSettings
        ):
            raise ValueError(
                "signature: only models loaded from a file (sklearn, onnx) are signed; "
                f"this one is {self.backend.kind}"
            )
        return self
