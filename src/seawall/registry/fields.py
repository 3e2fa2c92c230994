"""The registry's fields checked before anything is written: names, aliases, URIs, text, JSON.

Each refusal is an `InvalidInputError` naming the field (`name: must match ...`), so the admin
API answers 400 with the field and the CLI prints it. The patterns and bounds are the admin API's
too (`gateway/admin/records.py` repeats them, and its tests check they agree).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from seawall.errors import InvalidInputError
from seawall.registry.records import ArtifactInfo
from seawall.store.blobs import BlobStore, is_digest

__all__ = [
    "ALIAS_PATTERN",
    "MAX_JSON_DEPTH",
    "MAX_REQUIRED_APPROVALS",
    "MAX_TEXT",
    "MAX_VERSION",
    "MODEL_NAME_PATTERN",
    "check_alias",
    "check_artifact",
    "check_framework",
    "check_metrics",
    "check_name",
    "check_object",
    "check_optional_text",
    "check_required",
    "check_text",
    "new_version_columns",
    "parse_model_uri",
]

#: Model names, as in config and in /v2/models/{name}.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
#: Alias names: a lower-case word, never a number (a number is a version).
ALIAS_PATTERN = r"^[a-z][a-z0-9_\-]{0,63}$"
#: The largest version number (the columns are 32-bit integers on both databases).
MAX_VERSION = 2**31 - 1
#: At most this many approvals can be required (four eyes is 1; a committee is a few).
MAX_REQUIRED_APPROVALS = 10
#: The longest description, comment or other free text, in characters.
MAX_TEXT = 10_000
#: JSON values (tags, parameters, signatures) nest at most this deep.
MAX_JSON_DEPTH = 20

_NAME = re.compile(MODEL_NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[^/@]+))$")
_FRAMEWORK = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")


def parse_model_uri(uri: str) -> tuple[str, int | None, str | None]:
    """`models:/name/3` → (name, 3, None); `models:/name@champion` → (name, None, "champion")."""
    match = _URI.fullmatch(uri)
    if match is None:
        raise InvalidInputError(
            "uri", f"expected models:/<name>/<version> or models:/<name>@<alias>, got {uri!r}"
        )
    name, version, alias = match["name"], match["version"], match["alias"]
    check_name(name)
    if alias is not None:
        check_alias(alias)
    return name, None if version is None else int(version), alias


def check_framework(framework: str) -> None:
    """Refuse a framework name that no version may have (before its artifact is stored)."""
    if not isinstance(framework, str) or not _FRAMEWORK.fullmatch(framework):
        raise InvalidInputError(
            "framework", f"a lower-case name (sklearn, onnx, ...), got {framework!r}"
        )


def check_name(name: str) -> None:
    """Refuse a model name that does not match `MODEL_NAME_PATTERN`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError("name", f"must match {MODEL_NAME_PATTERN}, got {name!r}")


def check_alias(alias: str) -> None:
    """Refuse an alias that does not match `ALIAS_PATTERN` (a number, an upper-case name)."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidInputError(
            "alias", f"a lower-case word (champion, challenger), not a number; got {alias!r}"
        )


def check_required(value: int) -> int:
    """`value` as a model's required approvals: a whole number, 0 to `MAX_REQUIRED_APPROVALS`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError("required_approvals", f"a whole number, got {value!r}")
    if not 0 <= value <= MAX_REQUIRED_APPROVALS:
        raise InvalidInputError("required_approvals", f"0 to {MAX_REQUIRED_APPROVALS}, got {value}")
    return value


def check_text(field: str, value: str) -> str:
    """`value` as free text: at most `MAX_TEXT` characters, no NUL."""
    if not isinstance(value, str):
        raise InvalidInputError(field, f"text, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise InvalidInputError(field, f"at most {MAX_TEXT} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidInputError(field, "contains a NUL character")
    return value


def check_optional_text(field: str, value: str | None) -> str | None:
    """`check_text`, with None passed through."""
    return None if value is None else check_text(field, value)


def check_object(field: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """`value` as a JSON object with text keys (None: empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInputError(field, "a JSON object with text keys")
    _check_json(field, value)
    return dict(value)


def _check_json(field: str, value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(field, f"nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(field, f"{value} is not a JSON number")
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInputError(field, "contains a NUL character")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str) or "\x00" in k:
                raise InvalidInputError(field, f"key {k!r} is not text")
            _check_json(field, v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_json(field, v, depth + 1)
    elif not isinstance(value, str | int | float | bool) and value is not None:
        raise InvalidInputError(field, f"{type(value).__name__} is not JSON")


def check_metrics(value: Mapping[str, Any] | None) -> dict[str, float]:
    """`value` as a version's metrics: name → number (`metrics.<name>` names a bad one)."""
    metrics = check_object("metrics", value)
    for key, number in metrics.items():
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise InvalidInputError(f"metrics.{key}", f"a number, got {number!r}")
    return {k: float(v) for k, v in metrics.items()}


def check_artifact(artifact: ArtifactInfo, blobs: BlobStore | None = None) -> None:
    """Refuse an artifact with bad paths or digests, or (with `blobs`) blobs not in the store."""
    if artifact.kind not in ("file", "directory"):
        raise InvalidInputError("artifact.kind", f"'file' or 'directory', got {artifact.kind!r}")
    if not artifact.files:
        raise InvalidInputError("artifact.files", "at least one file")
    if artifact.kind == "file" and len(artifact.files) != 1:
        raise InvalidInputError("artifact.files", "a one-file artifact has exactly one file")
    for path, digest in artifact.files.items():
        if not path or path.startswith("/") or ".." in path.split("/") or "\\" in path:
            raise InvalidInputError("artifact.files", f"{path!r} is not a relative POSIX path")
        if not is_digest(digest):
            raise InvalidInputError("artifact.files", f"{path}: {digest!r} is not a sha256")
    if artifact.manifest_digest is not None and not is_digest(artifact.manifest_digest):
        raise InvalidInputError("artifact.manifest_digest", "not a sha256")
    if artifact.total_bytes < 0:
        raise InvalidInputError("artifact.total_bytes", "must be >= 0")
    if blobs is not None:
        _check_stored(artifact, blobs)


def _check_stored(artifact: ArtifactInfo, blobs: BlobStore) -> None:
    wanted = list(artifact.files.items())
    if artifact.manifest_digest is not None:
        wanted.append(("manifest", artifact.manifest_digest))
    for path, digest in wanted:
        if not blobs.has(digest):
            raise InvalidInputError(
                "artifact.files",
                f"{path}: blob {digest} is not in the artifact store {blobs.root}",
            )


def _check_number(field: str, value: int | None, reason: str) -> None:
    if value is not None and not (isinstance(value, int) and 1 <= value <= MAX_VERSION):
        raise InvalidInputError(field, f"{reason}, got {value!r}")


def new_version_columns(
    name: str,
    version: int | None,
    artifact: ArtifactInfo,
    blobs: BlobStore | None,
    *,
    framework: str,
    signature: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    tags: Mapping[str, Any] | None,
    dataset_snapshot: str | None,
    code_version: str | None,
    parent_version: int | None,
    description: str,
    author: str,
) -> dict[str, Any]:
    """A new version's fields checked, the first bad one refused; its row's columns."""
    check_name(name)
    _check_number("version", version, f"a whole number, 1 to {MAX_VERSION}")
    _check_number("parent_version", parent_version, "a version number")
    check_framework(framework)
    check_artifact(artifact, blobs)
    return {
        "framework": framework,
        **_artifact_columns(artifact),
        "signature": None if signature is None else check_object("signature", signature),
        "parameters": check_object("parameters", parameters),
        "metrics": check_metrics(metrics),
        "tags": check_object("tags", tags),
        "dataset_snapshot": check_optional_text("dataset_snapshot", dataset_snapshot),
        "code_version": check_optional_text("code_version", code_version),
        "parent_version": parent_version,
        "description": check_text("description", description),
        "author": author,
    }


def _artifact_columns(artifact: ArtifactInfo) -> dict[str, Any]:
    return {
        "artifact_kind": artifact.kind,
        "artifact_files": dict(artifact.files),
        "artifact_bytes": artifact.total_bytes,
        "artifact_uri": artifact.uri,
        "manifest_digest": artifact.manifest_digest,
        "signed_by": artifact.signed_by,
    }
