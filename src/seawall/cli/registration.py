"""`seawall models register`: its options parsed, then sign, store and register, in that order.

A signed manifest names the version it was signed for, so the number is chosen before signing:
`--version`, else the model's latest + 1. If another client registers that number first, the
artifact is signed again for the next number and registered once more; a second clash, or a
clash on an explicit `--version`, is reported.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, ValidationError

from seawall.cli.actor import cli_actor
from seawall.config import TensorSpecSettings
from seawall.config.base import Settings
from seawall.errors import ConflictError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from seawall.registry import Registry, VersionRecord

__all__ = [
    "VersionRequest",
    "json_value",
    "key_values",
    "number_value",
    "read_signature",
    "text_value",
]


@dataclass(frozen=True, slots=True)
class VersionRequest:
    """A version to register: the artifact, how to sign it, and `register_version`'s fields."""

    name: str
    path: Path
    framework: str
    #: The number to take (None: the next one).
    version: int | None = None
    signing_key: Ed25519PrivateKey | None = None
    #: Without a key: a manifest signed beforehand (default: beside the artifact).
    manifest: Path | None = None
    #: metrics, parameters, tags, signature, dataset_snapshot, code_version, parent_version...
    fields: dict[str, Any] = field(default_factory=dict)

    async def register(self, registry: Registry) -> tuple[VersionRecord, bool]:
        """The registered version, and whether the model was created for it."""
        from seawall.registry.fields import check_framework

        check_framework(self.framework)  # before the artifact is signed and stored for nothing
        latest, created = await _latest(registry, self.name)
        number = self.version or latest + 1
        for attempt in range(2):
            try:
                return await self._register(registry, number), created
            except ConflictError:
                if self.version is not None or attempt:
                    raise
                number = (await _latest(registry, self.name))[0] + 1
        raise AssertionError("unreachable")  # pragma: no cover

    async def _register(self, registry: Registry, number: int) -> VersionRecord:
        from seawall.registry import store_artifact

        assert registry.blobs is not None, "run_registry(..., blobs=True)"
        artifact = await asyncio.to_thread(
            store_artifact,
            registry.blobs,
            self.path,
            name=self.name,
            version=number,
            signing_key=self.signing_key,
            manifest=self.manifest,
        )
        return await registry.register_version(
            self.name,
            artifact,
            actor=cli_actor(),
            framework=self.framework,
            version=number,
            **self.fields,
        )


async def _latest(registry: Registry, name: str) -> tuple[int, bool]:
    """The model's latest version number (0: none yet), and whether it is not registered."""
    try:
        return (await registry.get_model(name)).latest_version or 0, False
    except NotFoundError:
        return 0, True


def key_values(
    option: str, items: list[str] | None, value: Callable[[str, str, str], Any]
) -> dict[str, Any]:
    """`["a=1", "b=x"]` → `{"a": value(...), "b": ...}`; InvalidInputError naming `option`."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(option, f"KEY=VALUE, got {item!r}")
        if key in out:
            raise InvalidInputError(option, f"{key!r} is given twice")
        out[key] = value(option, key, text)
    return out


def number_value(option: str, key: str, text: str) -> float:
    """A finite number (a metric)."""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InvalidInputError(option, f"{key}: a number, got {text!r}")
    return number


def json_value(option: str, key: str, text: str) -> Any:
    """JSON (`3`, `0.1`, `true`, `[1, 2]`) if it parses as JSON, else the text itself."""
    del option, key

    def no_constants(name: str) -> Any:
        raise ValueError(name)  # NaN and Infinity are not JSON: keep them as text

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError:
        return text


def text_value(option: str, key: str, text: str) -> str:
    """The text as given (a tag)."""
    del option, key
    return text


class _Signature(Settings):
    """What a model takes and gives, as in the config's `inputs` and `outputs`."""

    inputs: list[TensorSpecSettings] = Field(min_length=1)
    """Input tensors."""
    outputs: list[TensorSpecSettings] = Field(min_length=1)
    """Output tensors."""


def read_signature(path: Path) -> dict[str, Any]:
    """A `--signature` file (JSON or YAML), checked; InvalidInputError naming what is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError("--signature", f"{path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInputError("--signature", f"{path}: not JSON or YAML: {exc}") from None
    try:
        signature = _Signature.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise InvalidInputError("--signature", f"{path}: {where}: {error['msg']}") from None
    dumped: dict[str, Any] = signature.model_dump(mode="json")
    return dumped
