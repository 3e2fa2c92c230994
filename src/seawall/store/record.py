"""`Record`: the base of the immutable records the control plane hands out, with `to_json()`."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

__all__ = ["Record", "jsonable"]


def jsonable(value: Any) -> Any:
    """`value` in plain JSON types: datetimes as ISO 8601, tuples as lists, recursively."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class Record:
    """Mixin for frozen, slotted dataclasses: `to_json()` for APIs, `--json` and audit details."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """The record's fields in plain JSON types."""
        out: dict[str, Any] = jsonable(asdict(self))  # type: ignore[call-overload]
        return out
