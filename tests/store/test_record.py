from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from seawall.store.record import Record, jsonable


@dataclass(frozen=True, slots=True)
class _Example(Record):
    name: str
    at: datetime
    tags: tuple[str, ...]
    details: dict[str, Any]


def test_jsonable_converts_datetimes_and_tuples_recursively() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = {"a": (1, at), "b": [{"c": at}], "d": None}
    assert jsonable(value) == {
        "a": [1, "2026-01-02T03:04:05+00:00"],
        "b": [{"c": "2026-01-02T03:04:05+00:00"}],
        "d": None,
    }


def test_record_to_json_is_strict_json_of_every_field() -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    record = _Example("x", at, ("p", "q"), {"when": at, "n": 1.5})
    out = record.to_json()
    assert out == {
        "name": "x",
        "at": "2026-01-02T00:00:00+00:00",
        "tags": ["p", "q"],
        "details": {"when": "2026-01-02T00:00:00+00:00", "n": 1.5},
    }
    assert json.loads(json.dumps(out, allow_nan=False)) == out
