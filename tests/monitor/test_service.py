"""DriftMonitor: sampled calls become rows by the version's layout; each closed window gives a
report per version against that version's reference; predictions too. FakeClock, no sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import numpy as np
import pandas as pd

from seawall.clock import FakeClock
from seawall.data.profile import profile
from seawall.monitor.options import DriftOptions
from seawall.monitor.report import DriftReport
from seawall.monitor.reservoir import WindowSample
from seawall.monitor.service import DriftMonitor, DriftReference, Sampled, call_rows
from seawall.types import InferenceRequest, InferenceResponse, Tensor

RNG = np.random.default_rng(11)
TRAINING = pd.DataFrame(
    {
        "a": RNG.normal(0, 1, 5000),
        "b": RNG.normal(10, 2, 5000),
        "label": pd.array(RNG.integers(0, 3, 5000), dtype="Int64"),
    }
)
PROFILE = profile(TRAINING, {"a": "float", "b": "float", "label": "int"})
REFERENCE = DriftReference(
    "snapshot abc",
    {**PROFILE, "columns": {k: PROFILE["columns"][k] for k in ("a", "b")}},
    (("a", "input-0", 0), ("b", "input-0", 1)),
    ("predict", PROFILE["columns"]["label"]),
)


def call(rows: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    request = InferenceRequest("m", [Tensor.from_numpy("input-0", rows)])
    response = InferenceResponse("m", [Tensor.from_numpy("predict", labels.astype(np.int64))])
    return request, response


def test_call_rows_follow_the_layout_and_carry_the_prediction() -> None:
    request, response = call(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([2, 0]))
    assert call_rows(request, response, REFERENCE) == [
        {"a": 1.0, "b": 2.0, "predict": 2},
        {"a": 3.0, "b": 4.0, "predict": 0},
    ]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[DriftReport, int, str]] = []

    async def __call__(
        self, report: DriftReport, window: WindowSample[Sampled], source: str
    ) -> None:
        self.seen.append((report, window.offered, source))


def monitor(
    clock: FakeClock, recorder: Recorder, versions: dict[str, DriftReference]
) -> DriftMonitor:
    return DriftMonitor(
        "m:1",
        DriftOptions(),
        window_s=60,
        sample_size=400,
        reference=versions.get,
        clock=clock,
        rng=random.Random(3),
        on_report=recorder,
    )


def send(
    target: DriftMonitor, version: str, calls: int, shift: float, rng: np.random.Generator
) -> None:
    for _ in range(calls):
        rows = np.column_stack([rng.normal(shift, 1, 2), rng.normal(10, 2, 2)])
        request, response = call(rows, rng.integers(0, 3, 2))
        target.offer(version, request, response)


async def test_each_closed_window_is_judged_per_version_against_its_reference() -> None:
    clock, recorder, rng = FakeClock(), Recorder(), np.random.default_rng(5)
    target = monitor(clock, recorder, {"1": REFERENCE, "2": REFERENCE})
    send(target, "1", 600, 0.0, rng)  # same distribution as training
    send(target, "2", 600, 1.0, rng)  # feature a shifted by one standard deviation
    send(target, "3", 50, 0.0, rng)  # no reference: not judged
    assert await target.analyse() == []  # the window is still open
    clock.advance(60)
    reports = {r.version: r for r in await target.analyse()}
    assert set(reports) == {"1", "2"}
    assert not reports["1"].drifting
    assert reports["2"].drifting
    assert reports["2"].drifted_features == ("a",)
    assert reports["2"].rows > 100
    assert {(r.version, offered, source) for r, offered, source in recorder.seen} == {
        ("1", 1250, "snapshot abc"),
        ("2", 1250, "snapshot abc"),
    }
    assert set(target.latest()) == {"1", "2"}
    assert await target.analyse() == []  # each window is judged once


async def test_prediction_drift_is_reported_as_the_output() -> None:
    clock, recorder, rng = FakeClock(), Recorder(), np.random.default_rng(8)
    target = monitor(clock, recorder, {"1": REFERENCE})
    for _ in range(600):
        request, response = call(rng.normal([0, 10], [1, 2], (2, 2)), np.array([2, 2]))
        target.offer("1", request, response)  # always predicts class 2
    clock.advance(60)
    (report,) = await target.analyse()
    assert report.prediction_drifting
    assert report.drifted_features == ("predict",)


async def test_the_loop_analyses_as_windows_close_and_survives_a_failing_store() -> None:
    clock, rng = FakeClock(), np.random.default_rng(2)

    async def broken(report: DriftReport, window: WindowSample[Sampled], source: str) -> None:
        raise OSError("database down")

    target = DriftMonitor(
        "m:1",
        DriftOptions(),
        window_s=60,
        sample_size=100,
        reference={"1": REFERENCE}.get,
        clock=clock,
        on_report=broken,
    )
    task = asyncio.create_task(target.run())
    await asyncio.sleep(0)
    for _ in range(3):
        send(target, "1", 200, 0.0, rng)
        for _ in range(4):
            clock.advance(15)
            await asyncio.sleep(0)
            await asyncio.sleep(0.01)  # the analysis runs in a worker thread
    # Three windows judged, each report's store failing: the loop is still running.
    assert not task.done()
    assert "1" in target.latest()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
