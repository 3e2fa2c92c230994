"""Secrets from `NAME` or the file `NAME_FILE` names; messages never hold the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.errors import ConfigError
from seawall.security import secret_from_env


def test_nothing_set_is_none() -> None:
    assert secret_from_env({}, "TOKEN") is None
    assert secret_from_env({"TOKEN": ""}, "TOKEN") is None


def test_the_variable_itself_is_taken_as_is() -> None:
    assert secret_from_env({"TOKEN": " spaced \n"}, "TOKEN") == " spaced \n"


def test_a_file_loses_its_trailing_line_break_only(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  s3cret  \r\n")

    assert secret_from_env({"TOKEN_FILE": str(path)}, "TOKEN") == "  s3cret  "


def test_both_set_is_refused_without_echoing_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file")

    with pytest.raises(ConfigError, match="TOKEN and TOKEN_FILE are both set") as caught:
        secret_from_env({"TOKEN": "hunter2", "TOKEN_FILE": str(path)}, "TOKEN")
    assert "hunter2" not in str(caught.value)


def test_an_unreadable_or_empty_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")

    with pytest.raises(ConfigError, match=r"TOKEN_FILE: cannot read .*missing"):
        secret_from_env({"TOKEN_FILE": str(tmp_path / "missing")}, "TOKEN")
    with pytest.raises(ConfigError, match=r"TOKEN_FILE: the file .* is empty"):
        secret_from_env({"TOKEN_FILE": str(tmp_path / "empty")}, "TOKEN")
    with pytest.raises(ConfigError, match="is not UTF-8"):
        secret_from_env({"TOKEN_FILE": str(tmp_path / "binary")}, "TOKEN")
