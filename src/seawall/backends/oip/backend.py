"""`OipBackend`: a model served by a remote Open Inference Protocol v2 server.

Triton, KServe, Seldon MLServer or another seawall: `load()` reads the upstream model's metadata
(`GET /v2/models/{m}[/versions/{v}]`) and fails with the reason if the upstream is down or does
not know the model; `infer()` posts the request (JSON, or binary tensors with `binary`) within
the call's deadline and decodes the answer, JSON or binary; `check_health()` asks the model's
readiness URL, so an `EndpointPool` can probe it. One `OipBackend` is one endpoint: a pool of
them balances a model over replicas.

Failures arrive as the `BackendError` tree (see `seawall.backends.http`): an upstream that cannot
be reached or answers 429/502/503/504 is `BackendUnavailableError` with its `Retry-After`, one that
refuses the input (400, 422...) is `InvalidInputError`, a body that is not a valid response is
`BadResponseError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from seawall.backends.http import HttpResponse, HttpUpstream, error_for_status
from seawall.backends.oip.codec import decode_infer_response, encode_infer_request
from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BadResponseError,
    ConfigError,
    InvalidInputError,
    ModelNotReadyError,
    NotFoundError,
)
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    TensorSpec,
)

__all__ = ["DEFAULT_HEALTH_TIMEOUT_S", "OipBackend"]

#: Longest a health check (the upstream's readiness URL) may take.
DEFAULT_HEALTH_TIMEOUT_S = 1.0
_JSON = "application/json"
_BINARY = "application/octet-stream"
_LENGTH_HEADER = "inference-header-content-length"


class OipBackend:
    """One model on one upstream OIP v2 server, as a `Backend` (and `HealthChecked`).

    `model` and `version` name the model on the upstream (no version: the upstream's default).
    `clock` must be the one `ctx.deadline` is measured on and the one `upstream` was given.
    """

    def __init__(
        self,
        upstream: HttpUpstream,
        model: str,
        version: str | None = None,
        *,
        binary: bool = False,
        health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
        signature: ModelMetadata | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not model:
            raise ValueError("model: the upstream model's name must not be empty")
        if not health_timeout_s > 0:
            raise ValueError(f"health_timeout_s: must be more than 0, got {health_timeout_s}")
        self.upstream = upstream
        self.model = model
        self.version = version or None
        self.binary = binary
        self._health_timeout_s = health_timeout_s
        self._clock = clock or SystemClock()
        path = f"/v2/models/{quote(model, safe='')}"
        if self.version is not None:
            path += f"/versions/{quote(self.version, safe='')}"
        self._path = path
        self.name = f"oip:{upstream.base_url}{path.removeprefix('/v2/models')}"
        self._metadata: ModelMetadata | None = None
        self._signature = signature

    def __repr__(self) -> str:
        return f"OipBackend({self.name!r}, binary={self.binary})"

    async def load(self) -> None:
        """Open the connection pool and read the upstream model's metadata (unless declared)."""
        self._metadata = None
        try:
            await self.upstream.start()
        except (OSError, ValueError) as exc:  # ssl: a CA, certificate or key file it cannot use
            raise ConfigError(f"{self.name}: cannot set up TLS: {exc}") from exc
        if self._signature is not None:
            self._metadata = self._signature
            return
        try:
            response = await self.upstream.request("GET", self._path)
        except BackendError as exc:
            raise _reworded(exc, f"{self.name}: cannot read the model's metadata: {exc}") from exc
        if response.status != 200:
            raise self._load_error(response)
        self._metadata = _metadata(response.json(), self.name)

    def _load_error(self, response: HttpResponse) -> Exception:
        error = error_for_status(response.status, response.headers, response.body, self.upstream)
        if isinstance(error, InvalidInputError):  # 404 (or 400, Triton's "unknown model")
            version = f" version {self.version!r}" if self.version else ""
            return NotFoundError(
                f"{self.name}: the upstream has no model {self.model!r}{version} "
                f"({response.status}: {error.reason})"
            )
        return _reworded(error, f"{self.name}: cannot read the model's metadata: {error}")

    def ready(self) -> bool:
        return self._metadata is not None

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise ModelNotReadyError(f"{self.name}: not loaded")
        return self._metadata

    async def infer(self, request: InferenceRequest, ctx: CallContext) -> InferenceResponse:
        """Forward one call; the answer keeps the caller's `id` and the upstream's version."""
        if self._metadata is None:
            raise ModelNotReadyError(f"{self.name}: not loaded")
        body, json_length = encode_infer_request(request, binary=self.binary)
        headers = {"content-type": _JSON, "x-request-id": ctx.request_id}
        if json_length is not None:
            headers["content-type"] = _BINARY
            headers[_LENGTH_HEADER] = str(json_length)
        response = await self.upstream.request(
            "POST", f"{self._path}/infer", body=body, headers=headers, deadline=ctx.deadline
        )
        if response.status != 200:
            raise error_for_status(response.status, response.headers, response.body, self.upstream)
        try:
            result = decode_infer_response(
                response.body, _json_length(response.headers), request.model
            )
        except BadResponseError as exc:
            raise BadResponseError(f"{self.name}: {exc}") from None
        result.id = request.id
        return result

    async def check_health(self) -> bool:
        """True if the upstream says the model is ready (200 from its readiness URL) in time."""
        if self._metadata is None:
            return False
        try:
            async with self._clock.timeout(self._health_timeout_s):
                response = await self.upstream.request("GET", f"{self._path}/ready")
        except (BackendError, TimeoutError):
            return False
        return response.status == 200

    async def close(self) -> None:
        self._metadata = None
        await self.upstream.close()


def _reworded(error: BackendError, message: str) -> BackendError:
    """The same error (class, Retry-After, retryable) with a message that names the backend."""
    copy = type(error)(message, retry_after_s=error.retry_after_s)
    copy.retryable = error.retryable
    return copy


def _json_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get(_LENGTH_HEADER)
    if value is None:
        return None
    if not (value.isascii() and value.strip().isdigit()):
        raise BadResponseError(f"{_LENGTH_HEADER}: expected a byte count, got {value!r}")
    return int(value)


def _metadata(document: Any, where: str) -> ModelMetadata:
    """The model metadata document of OIP v2; `BadResponseError` naming the field if invalid."""
    if not isinstance(document, dict):
        raise BadResponseError(f"{where}: invalid model metadata: expected a JSON object")
    name = document.get("name")
    platform = document.get("platform", "")
    versions = document.get("versions") or []
    if not isinstance(name, str) or not name:
        raise BadResponseError(f"{where}: invalid model metadata: name: expected a string")
    if not isinstance(platform, str):
        raise BadResponseError(f"{where}: invalid model metadata: platform: expected a string")
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise BadResponseError(
            f"{where}: invalid model metadata: versions: expected a list of strings"
        )
    return ModelMetadata(
        name=name,
        platform=platform,
        inputs=_specs(document.get("inputs"), "inputs", where),
        outputs=_specs(document.get("outputs"), "outputs", where),
        versions=tuple(versions),
    )


def _specs(value: Any, field: str, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list):
        raise BadResponseError(f"{where}: invalid model metadata: {field}: expected a list")
    specs = []
    for i, item in enumerate(value):
        at = f"{where}: invalid model metadata: {field}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadResponseError(f"{at}.name: expected a string")
        datatype = item.get("datatype")
        try:
            parsed = Datatype(datatype.upper()) if isinstance(datatype, str) else None
        except ValueError:
            parsed = None
        if parsed is None:
            raise BadResponseError(f"{at}.datatype: unknown datatype {datatype!r}")
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise BadResponseError(f"{at}.shape: expected a list of integers (-1 for any size)")
        specs.append(TensorSpec(item["name"], parsed, tuple(shape)))
    return tuple(specs)
