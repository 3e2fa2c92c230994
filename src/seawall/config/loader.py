"""Loading: one YAML file, `${VAR}` interpolation, `SEAWALL_*` overrides, pydantic validation.

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
from typing import Any

import yaml
from pydantic import ValidationError

from seawall.config.document import SeawallConfig
from seawall.config.models import BACKEND_KINDS
from seawall.errors import ConfigError

__all__ = ["ENV_PREFIX", "load_config", "parse_config"]

ENV_PREFIX = "SEAWALL_"
_ALTERNATIVES = {"model", "python", "static", "cached"}
_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> SeawallConfig:
    """Read, interpolate, override and validate a config file; `ConfigError` on any problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    config = parse_config(text, base_dir=file.resolve().parent, environ=environ, source=str(file))
    config._source = file.resolve()
    return config


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
        elif _is_tag(loc, i):
            continue  # the discriminator tag pydantic inserts; not a field the user wrote
        else:
            parts.append(f".{part}" if parts else str(part))
    where = "".join(parts)
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see `seawall config schema`)"
    elif error["type"] == "union_tag_invalid":
        message = f"unknown backend kind; expected one of {', '.join(sorted(BACKEND_KINDS))}"
    elif error["type"] == "union_tag_not_found":
        message = f"`kind` is required: one of {', '.join(sorted(BACKEND_KINDS))}"
    elif error["type"] == "value_error":  # our own validators: drop pydantic's "Value error, "
        message = str(error.get("ctx", {}).get("error", message))
        if not where:  # a whole-file check: its message starts with the path it is about
            return message
    return f"{where or '(top level)'}: {message}"


def _is_tag(loc: list[Any], i: int) -> bool:
    part = loc[i]
    if i > 0 and loc[i - 1] == "backend":
        return part in BACKEND_KINDS
    return i > 1 and isinstance(loc[i - 1], int) and loc[i - 2] == "chain" and part in _ALTERNATIVES


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
