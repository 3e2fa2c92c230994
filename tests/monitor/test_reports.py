"""`DriftReportStore` on SQLite and PostgreSQL: save and read back real drift reports, newest
first and filtered, and the verdict over a version's windows (drifting, stable, no evidence)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from seawall.clock import FakeClock
from seawall.data.profile import profile
from seawall.errors import InvalidInputError
from seawall.monitor import DriftReport, drift_report
from seawall.monitor.reports import DriftReportStore
from seawall.store import Database

T0 = 1_800_000_000.0  # the first window's start (2027-01-15 08:00:00 UTC)
WINDOW_S = 300.0
COLORS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """The profile of 2000 rows: x ~ N(0, 1) and a colour."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 2000), "color": rng.choice(COLORS, 2000)})
    return profile(frame, {"x": "float", "color": "string"})


def report(
    reference: dict[str, Any],
    window: int,
    *,
    rows: int = 400,
    shift: float = 0.0,
    model: str = "iris",
    version: str = "2",
) -> DriftReport:
    """A real report of window number `window`: `rows` live rows with x shifted by `shift`."""
    rng = np.random.default_rng(window)
    live = [
        {"x": float(x), "color": str(c)}
        for x, c in zip(rng.normal(shift, 1, rows), rng.choice(COLORS, rows), strict=True)
    ]
    start = T0 + window * WINDOW_S
    return drift_report(
        reference, live, model=model, version=version, window=(start, start + WINDOW_S)
    )


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.fixture
def store(migrated: Database) -> DriftReportStore:
    return DriftReportStore(migrated, clock=FakeClock(wall_start=T0 + 3600))


async def save(store: DriftReportStore, drift: DriftReport, offered: int = 1000) -> int:
    return await store.save(drift, offered=offered, reference="snapshot:ab12cd", created_by="gw-1")


async def test_a_saved_report_reads_back_whole(
    store: DriftReportStore, reference: dict[str, Any]
) -> None:
    drifting = report(reference, 0, shift=1.5)
    assert drifting.verdict == "drifting"  # the fixture is what the test says it is

    row_id = await save(store, drifting, offered=5000)
    [record] = await store.latest()

    assert record.id == row_id
    assert (record.model, record.version) == ("iris", "2")
    assert record.window_start == at(T0)
    assert record.window_end == at(T0 + WINDOW_S)
    assert (record.offered, record.samples) == (5000, 400)
    assert record.verdict == "drifting"
    assert record.drifting is True
    assert record.score == pytest.approx(drifting.score)
    assert drifting.score > 0.2
    assert record.drifted_features == ("x",)
    assert (record.reference, record.created_by) == ("snapshot:ab12cd", "gw-1")
    assert record.created_at == at(T0 + 3600)  # the store's clock
    assert record.report == drifting.to_json()
    out = record.to_json()
    assert out["window_end"] == "2027-01-15T08:05:00+00:00"
    assert out["drifted_features"] == ["x"]


async def test_saving_a_window_again_keeps_the_first_row(
    store: DriftReportStore, reference: dict[str, Any]
) -> None:
    first = await save(store, report(reference, 0, shift=1.5), offered=10)
    again = await save(store, report(reference, 0, shift=1.5), offered=99)
    assert again == first
    [record] = await store.latest()
    assert record.offered == 10
    other_gateway = await store.save(
        report(reference, 0), offered=5, reference="snapshot:ab12cd", created_by="gw-2"
    )
    assert other_gateway != first
    assert len(await store.latest()) == 2


async def test_latest_is_newest_window_first_and_filters(
    store: DriftReportStore, reference: dict[str, Any]
) -> None:
    for window in (2, 0, 1):  # saved out of order: the window, not the id, orders them
        await save(store, report(reference, window, rows=10))
    await save(store, report(reference, 3, rows=10, version="3"))
    await save(store, report(reference, 4, rows=10, model="wine", version="2"))

    everything = await store.latest()
    iris = await store.latest("iris")
    iris2 = await store.latest("iris", "2")
    top2 = await store.latest("iris", "2", limit=2)
    version2 = await store.latest(version="2")

    assert [(r.model, r.version, r.window_start) for r in everything] == [
        ("wine", "2", at(T0 + 4 * WINDOW_S)),
        ("iris", "3", at(T0 + 3 * WINDOW_S)),
        ("iris", "2", at(T0 + 2 * WINDOW_S)),
        ("iris", "2", at(T0 + 1 * WINDOW_S)),
        ("iris", "2", at(T0)),
    ]
    assert [r.version for r in iris] == ["3", "2", "2", "2"]
    assert [r.window_start for r in iris2] == [at(T0 + w * WINDOW_S) for w in (2, 1, 0)]
    assert [r.window_start for r in top2] == [at(T0 + w * WINDOW_S) for w in (2, 1)]
    assert [r.model for r in version2] == ["wine", "iris", "iris", "iris"]
    assert await store.latest("nope") == []


async def test_verdict_adds_up_the_windows_since(
    store: DriftReportStore, reference: dict[str, Any]
) -> None:
    old = report(reference, 0, shift=3.0)  # ended before `since`: not counted
    stable = report(reference, 1)
    drifting = report(reference, 2, shift=1.5)
    thin = report(reference, 3, rows=10)
    other = report(reference, 4, shift=3.0, version="3")
    for each in (old, stable, drifting, thin, other):
        await save(store, each)
    assert [r.verdict for r in (stable, drifting, thin)] == [
        "stable",
        "drifting",
        "insufficient_data",
    ]

    since = at(T0 + 2 * WINDOW_S)  # window 1 ends exactly here: at/after counts
    verdict = await store.verdict("iris", "2", since=since)

    assert (verdict.windows, verdict.judged, verdict.drifting_windows) == (3, 2, 1)
    assert verdict.drifting is True
    assert verdict.max_score == pytest.approx(drifting.score)
    assert verdict.drifted_features == ("x",)
    assert verdict.last_window_end == at(T0 + 4 * WINDOW_S)
    assert verdict.since == since
    assert verdict.checked_at == at(T0 + 3600)
    assert verdict.to_json()["last_window_end"] == "2027-01-15T08:20:00+00:00"

    later = await store.verdict("iris", "2", since=at(T0 + 3 * WINDOW_S + 1))
    assert (later.windows, later.judged, later.drifting) == (1, 0, None)
    assert later.max_score is None


async def test_stable_windows_are_not_drifting_and_no_reports_are_no_evidence(
    store: DriftReportStore, reference: dict[str, Any]
) -> None:
    for window in (0, 1):
        await save(store, report(reference, window))

    stable = await store.verdict("iris", "2", since=at(T0))
    none = await store.verdict("iris", "9", since=at(T0))

    assert (stable.windows, stable.judged, stable.drifting_windows) == (2, 2, 0)
    assert stable.drifting is False
    assert stable.drifted_features == ()
    assert stable.max_score is not None
    assert 0 < stable.max_score < 0.2
    assert (none.windows, none.drifting, none.last_window_end) == (0, None, None)


async def test_bad_input_names_the_field(
    store: DriftReportStore, reference: dict[str, Any]
) -> None:
    drift = report(reference, 0, rows=10)
    cases: list[tuple[str, Any]] = [
        ("offered", store.save(drift, offered=-1, reference="r", created_by="gw")),
        ("reference", store.save(drift, offered=10, reference="", created_by="gw")),
        ("report.version", save(store, report(reference, 0, rows=10, version="v" * 65))),
        ("limit", store.latest(limit=0)),
        ("since", store.verdict("iris", "2", since=datetime(2027, 1, 1))),
    ]
    for field, call in cases:
        with pytest.raises(InvalidInputError) as caught:
            await call
        assert caught.value.field == field
    assert await store.latest() == []
