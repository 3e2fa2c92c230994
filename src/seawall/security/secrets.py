"""Secrets from the environment: `NAME` itself, or the file `NAME_FILE` names (a mounted secret).

A secret never appears in a message: errors name the variable and the file, not the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from seawall.errors import ConfigError

__all__ = ["FILE_SUFFIX", "secret_from_env"]

#: Appended to a variable's name to name the variable that holds a file path instead.
FILE_SUFFIX = "_FILE"


def secret_from_env(environ: Mapping[str, str], name: str) -> str | None:
    """The value of `name`, or the content of the file `name_FILE` names; None if neither is set.

    Both set is a `ConfigError`: silently preferring one hides a deployment mistake. A file's
    trailing line break is dropped (editors and `kubectl create secret` add one); other
    whitespace is kept, since it may be part of the secret.
    """
    file_name = name + FILE_SUFFIX
    value = environ.get(name, "")
    path = environ.get(file_name, "").strip()
    if value and path:
        raise ConfigError(f"{name} and {file_name} are both set: set only one of them")
    if not path:
        return value or None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file_name}: cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{file_name}: {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise ConfigError(f"{file_name}: the file {path} is empty")
    return text
