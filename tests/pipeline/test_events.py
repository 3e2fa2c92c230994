"""Event sinks: `discard` accepts and drops anything."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from seawall.pipeline import EventSink, discard


@dataclass(frozen=True)
class Happened:
    what: str


@pytest.mark.parametrize("event", [Happened("x"), None, 42, "text", object(), [1, 2]])
def test_discard_accepts_anything_and_returns_nothing(event: object) -> None:
    assert discard(event) is None


def test_a_list_append_is_an_event_sink() -> None:
    received: list[object] = []
    sink: EventSink = received.append
    sink(Happened("a"))
    sink(Happened("b"))
    assert received == [Happened("a"), Happened("b")]
