"""`cli_actor`: `cli:<login name>`, and a stable stand-in where there is none."""

from __future__ import annotations

import getpass

import pytest

from seawall.cli.actor import cli_actor


def test_the_actor_is_the_login_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "alice")

    assert cli_actor() == "cli:alice"


@pytest.mark.parametrize("error", [KeyError("uid 1234"), OSError("no passwd")])
def test_no_user_name_is_cli_unknown(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    def fail() -> str:
        raise error

    monkeypatch.setattr(getpass, "getuser", fail)

    assert cli_actor() == "cli:unknown"
