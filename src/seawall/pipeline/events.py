"""Events: policies describe what they did; telemetry subscribes."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["EventSink", "discard"]

#: Receives a policy's event dataclasses (`CircuitOpened`, `InputRejected`...); must not block.
EventSink = Callable[[object], None]


def discard(event: object) -> None:
    """An `EventSink` that drops everything."""
