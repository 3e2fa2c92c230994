"""`echo_table`, `echo_json`, `when`: what every CLI listing prints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from seawall.cli.output import echo_json, echo_table, when


def test_columns_are_as_wide_as_their_widest_cell(capsys: pytest.CaptureFixture[str]) -> None:
    echo_table(("name", "v", "note"), [("iris", "12", "a b"), ("x", "3", "")])

    assert capsys.readouterr().out == "name  v   note\niris  12  a b\nx     3\n"


def test_a_table_without_rows_is_its_header(capsys: pytest.CaptureFixture[str]) -> None:
    echo_table(("name", "version"), [])

    assert capsys.readouterr().out == "name  version\n"


def test_json_is_indented_and_keeps_unicode(capsys: pytest.CaptureFixture[str]) -> None:
    echo_json({"stage": "none → staging", "n": [1]})

    out = capsys.readouterr().out
    assert json.loads(out) == {"stage": "none → staging", "n": [1]}
    assert "→" in out
    assert out.startswith('{\n  "stage"')


def test_times_are_to_the_second_with_their_offset() -> None:
    moment = datetime(2026, 11, 26, 10, 31, 42, 123456, tzinfo=UTC)

    assert when(moment) == "2026-11-26T10:31:42+00:00"
    assert when(moment.astimezone(timezone(timedelta(hours=2)))) == "2026-11-26T12:31:42+02:00"
    assert when(None) == "-"
