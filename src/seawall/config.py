"""Settings: one YAML file, `${VAR}` interpolation, `SEAWALL_*` overrides, pydantic validation.

Load order: the YAML file; then `${VAR}` / `${VAR:-default}` in string values, from the
environment (`$${` is a literal `${`); then overrides from environment variables named
`SEAWALL_<SECTION>__<FIELD>[__<FIELD>...]`, e.g. `SEAWALL_SERVER__PORT=9000` or
`SEAWALL_MODELS__0__BACKEND__WORKERS=4`, whose values are read as YAML scalars. Only variables
whose first part is a top-level section are overrides; others (`SEAWALL_EXAMPLE_KEY`) are left
for interpolation. Then every field is validated; an invalid file fails with each bad field's
path and the reason. Relative paths in the file are relative to the file's directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from seawall.errors import ConfigError
from seawall.types import Datatype

__all__ = [
    "BackendSettings",
    "CallableBackendSettings",
    "MockBackendSettings",
    "ModelSettings",
    "OnnxBackendSettings",
    "SeawallConfig",
    "ServerSettings",
    "SklearnBackendSettings",
    "TensorSpecSettings",
    "ValidationSettings",
    "load_config",
    "parse_config",
]

ENV_PREFIX = "SEAWALL_"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ServerSettings(_Settings):
    """The HTTP server and its lifecycle."""

    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port to listen on (0 picks a free one)."""
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1)
    """Largest request body accepted, after decompression; larger ones get 413."""
    shutdown_grace_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long in-flight requests may take to finish before they are cancelled."""
    shutdown_delay_s: float = Field(0.0, ge=0)
    """On SIGTERM, how long to keep serving with readiness false before closing the listener."""
    strict_readiness: bool = False
    """If true, /v2/health/ready is true only when every model is ready; else when one is."""
    access_log: bool = False
    """Write one JSON log line per request."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level of log records written."""
    log_format: Literal["json", "text"] = "json"
    """`json`: one JSON object per line; `text`: human-readable lines."""


class TensorSpecSettings(_Settings):
    """One input or output of a model signature."""

    name: str = Field(min_length=1)
    """Tensor name."""
    datatype: Datatype
    """Open Inference Protocol datatype (FP32, INT64, BYTES...)."""
    shape: list[Annotated[int, Field(ge=-1)]]
    """Dimensions; -1 for any size."""


class _InProcessSettings(_Settings):
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


class MockBackendSettings(_Settings):
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
_BACKEND_KINDS = {"sklearn", "onnx", "python", "mock"}


class ValidationSettings(_Settings):
    """Input validation against the model's signature."""

    convert_datatypes: bool = True
    """Convert inputs to the model's datatype when no value changes; false refuses mismatches."""


class ModelSettings(_Settings):
    """One version of a served model."""

    name: str = Field(pattern=_NAME)
    """Model name, as in /v2/models/{name}."""
    version: str = Field("1", pattern=_NAME)
    """Version, as in /v2/models/{name}/versions/{version} (`version: 2` is read as "2")."""
    default: bool = False
    """Serve unversioned calls with this version (else the first listed)."""
    backend: BackendSettings
    """Where the model runs."""
    validation: ValidationSettings = ValidationSettings()
    """Input validation."""

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: object) -> object:
        # YAML reads `version: 2` as an integer; a version is a name, so take it as text.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class SeawallConfig(_Settings):
    """The whole configuration file."""

    server: ServerSettings = ServerSettings()
    """HTTP server and lifecycle."""
    models: list[ModelSettings] = []
    """Models served by the gateway."""

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("models")
    @classmethod
    def _unique_versions(cls, models: list[ModelSettings]) -> list[ModelSettings]:
        # A field validator, so the error's path is `models`; the message names both entries.
        seen: dict[tuple[str, str], int] = {}
        defaults: dict[str, int] = {}
        for i, model in enumerate(models):
            key = (model.name, model.version)
            if key in seen:
                raise ValueError(
                    f"model {model.name!r} version {model.version!r} is listed twice "
                    f"(models[{seen[key]}] and models[{i}])"
                )
            seen[key] = i
            if model.default:
                if model.name in defaults:
                    raise ValueError(
                        f"model {model.name!r} has more than one default version "
                        f"(models[{defaults[model.name]}] and models[{i}])"
                    )
                defaults[model.name] = i
        return models

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the file are relative to."""
        return self._base_dir

    def resolve_path(self, path: str) -> Path:
        """`path` made absolute against the config file's directory."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else (self._base_dir / candidate)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> SeawallConfig:
    """Read, interpolate, override and validate a config file; `ConfigError` on any problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_config(text, base_dir=file.resolve().parent, environ=environ, source=str(file))


def parse_config(
    text: str,
    *,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    source: str = "<config>",
) -> SeawallConfig:
    """Like `load_config`, from YAML text."""
    env = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    problems: list[str] = []
    data = _interpolate(raw, "", env, problems)
    _apply_overrides(data, env, problems)
    if problems:
        raise ConfigError(_summary(source, problems), problems)
    try:
        config = SeawallConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        raise ConfigError(_summary(source, problems), problems) from None
    config._base_dir = base_dir or Path.cwd()
    return config


def _summary(source: str, problems: list[str]) -> str:
    lines = "\n".join(f"  {p}" for p in problems)
    return f"{source}: {len(problems)} problem(s):\n{lines}"


def _describe(error: Mapping[str, Any]) -> str:
    parts: list[str] = []
    loc = list(error["loc"])
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif i > 0 and loc[i - 1] == "backend" and part in _BACKEND_KINDS:
            continue  # the discriminator tag pydantic inserts; not a field the user wrote
        else:
            parts.append(f".{part}" if parts else str(part))
    where = "".join(parts) or "(top level)"
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see `seawall config schema`)"
    elif error["type"] == "union_tag_invalid":
        message = f"unknown backend kind; expected one of {', '.join(sorted(_BACKEND_KINDS))}"
    elif error["type"] == "union_tag_not_found":
        message = f"`kind` is required: one of {', '.join(sorted(_BACKEND_KINDS))}"
    elif error["type"] == "value_error":  # our own validators: drop pydantic's "Value error, "
        message = str(error.get("ctx", {}).get("error", message))
    return f"{where}: {message}"


def _interpolate(node: Any, where: str, env: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(node, str):
        return _substitute(node, where, env, problems)
    if isinstance(node, list):
        return [_interpolate(v, f"{where}[{i}]", env, problems) for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {
            k: _interpolate(v, f"{where}.{k}" if where else str(k), env, problems)
            for k, v in node.items()
        }
    return node


def _substitute(value: str, where: str, env: Mapping[str, str], problems: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name in env and (env[name] or default is None):
            return env[name]
        if default is not None:
            return default
        problems.append(
            f"{where or '(top level)'}: environment variable {name} is not set "
            f"(write ${{{name}:-default}} to give a default)"
        )
        return ""

    return _VAR.sub(replace, value) if "$" in value else value


def _apply_overrides(data: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    sections = set(SeawallConfig.model_fields)
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        if path[0] not in sections or not all(path):
            continue
        try:
            value = yaml.safe_load(env[var])
        except yaml.YAMLError:
            value = env[var]
        try:
            _set_path(data, path, value)
        except (KeyError, IndexError, TypeError) as exc:
            problems.append(f"{var}: cannot override {'.'.join(path)}: {exc}")


def _set_path(node: Any, path: list[str], value: Any) -> None:
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise IndexError(f"no item {part} in a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:  # a missing list is empty, so an index into it is out of range
                node = node.setdefault(part, [] if path[i + 1].isdigit() else {})
        else:
            raise TypeError(f"{'.'.join(path[:i])} is a {type(node).__name__}, not a section")
