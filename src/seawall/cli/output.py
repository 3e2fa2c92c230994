"""How the CLI prints records: aligned columns for people, `--json` for programs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import typer

__all__ = ["echo_json", "echo_table", "when"]


def when(moment: datetime | None) -> str:
    """A time to the second, with its offset; `-` for none."""
    return "-" if moment is None else moment.isoformat(timespec="seconds")


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print `rows` under `headers`, each column as wide as its widest cell (the last unpadded)."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=False)]
        typer.echo("  ".join([*cells, line[-1]]).rstrip())


def echo_json(value: Any) -> None:
    """Print `value` as indented JSON (times already ISO 8601 text, as `to_json()` gives)."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))
