"""`DriftMonitor`: one served model's live traffic, sampled per window, judged for drift.

`offer(version, request, response)` runs on the request path and does one O(1) reservoir offer
of the call, by reference: no tensor is copied or converted there. When a window closes,
`analyse()` (the monitor's loop calls it) takes the window's sample to a worker thread, turns
each sampled call into rows (feature -> value, by the version's layout, plus the prediction)
and compares them with the version's training profile (`drift_report`). Each report is kept
(`latest`, for gauges and the admin side) and handed to `on_report` (the database).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from seawall.clock import Clock, SystemClock
from seawall.monitor.options import DriftOptions
from seawall.monitor.report import DriftReport, drift_report
from seawall.monitor.reservoir import WindowedReservoir, WindowSample
from seawall.types import InferenceRequest, InferenceResponse

__all__ = ["DriftMonitor", "DriftReference", "Sampled"]

logger = logging.getLogger("seawall.monitor")

#: Rows taken from one sampled call (a large batch must not outweigh the rest of the window).
MAX_ROWS_PER_CALL = 64
#: Versions whose latest report is kept (a model serves one or two at a time).
MAX_VERSIONS = 4

#: One sampled call: the version that answered, the request and the response.
Sampled = tuple[str, InferenceRequest, InferenceResponse]


@dataclass(frozen=True, slots=True)
class DriftReference:
    """What one version's live rows are compared with."""

    #: Where the profile came from (a snapshot, a file), for reports.
    source: str
    #: The training profile, restricted to the monitored features.
    profile: Mapping[str, Any]
    #: (feature, input tensor, column or None) of each feature.
    layout: tuple[tuple[str, str, int | None], ...]
    #: The output tensor holding the prediction, and the profile of what it predicts (the
    #: training target's column), or None: predictions are not compared.
    prediction: tuple[str, Mapping[str, Any]] | None = None


class DriftMonitor:
    """Samples one model's calls per window and reports its drift (see the module doc)."""

    def __init__(
        self,
        target: str,
        options: DriftOptions,
        *,
        window_s: float,
        sample_size: int,
        reference: Callable[[str], DriftReference | None],
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_report: Callable[[DriftReport, WindowSample[Sampled], str], Awaitable[None]]
        | None = None,
    ) -> None:
        """`reference(version)`: what `version` is compared with (None: not monitored);
        `on_report(report, window, source)`: told each report (errors are logged)."""
        self.target = target
        self.options = options
        self._clock = clock or SystemClock()
        self._reservoir: WindowedReservoir[Sampled] = WindowedReservoir(
            sample_size, window_s, clock=self._clock, rng=rng or random.Random()
        )
        self._reference = reference
        self._on_report = on_report
        self._latest: OrderedDict[str, DriftReport] = OrderedDict()

    @property
    def window_s(self) -> float:
        return self._reservoir.window_s

    def offer(self, version: str, request: InferenceRequest, response: InferenceResponse) -> None:
        """Offer an answered call to the current window's sample. O(1), on the request path."""
        self._reservoir.offer((version, request, response))

    def latest(self) -> dict[str, DriftReport]:
        """The latest report of each recently served version."""
        return dict(self._latest)

    async def analyse(self) -> list[DriftReport]:
        """Judge every closed window not judged yet (in a worker thread); the reports."""
        windows = self._reservoir.take_closed()
        if not windows:
            return []
        judged = await asyncio.to_thread(self._judge_all, windows)
        for report, window, source in judged:
            self._latest[report.version] = report
            self._latest.move_to_end(report.version)
            while len(self._latest) > MAX_VERSIONS:
                self._latest.popitem(last=False)
            if self._on_report is not None:
                try:
                    await self._on_report(report, window, source)
                except Exception:  # a report that cannot be stored is still a report
                    logger.exception(
                        "could not record a drift report", extra={"target": self.target}
                    )
        return [report for report, _, _ in judged]

    async def run(self) -> None:
        """Analyse each window as it closes, until cancelled."""
        while True:
            await self._clock.sleep(min(self.window_s / 4, 5.0))
            try:
                await self.analyse()
            except asyncio.CancelledError:
                raise
            except Exception:  # the monitor must outlive one bad window
                logger.exception("drift analysis failed", extra={"target": self.target})

    def _judge_all(
        self, windows: Sequence[WindowSample[Sampled]]
    ) -> list[tuple[DriftReport, WindowSample[Sampled], str]]:
        out = []
        for window in windows:
            by_version: dict[str, list[Sampled]] = {}
            for call in window.rows:
                by_version.setdefault(call[0], []).append(call)
            for version, calls in by_version.items():
                reference = self._reference(version)
                if reference is None:
                    continue
                report = self._judge(version, calls, window, reference)
                out.append((report, window, reference.source))
        return out

    def _judge(
        self,
        version: str,
        calls: list[Sampled],
        window: WindowSample[Sampled],
        reference: DriftReference,
    ) -> DriftReport:
        rows: list[dict[str, Any]] = []
        for _, request, response in calls:
            rows += call_rows(request, response, reference)
        outputs = None
        if reference.prediction is not None:
            name, column = reference.prediction
            outputs = {"format": reference.profile.get("format"), "columns": {name: column}}
        return drift_report(
            reference.profile,
            rows,
            model=self.target,
            version=version,
            window=(window.start, window.end),
            options=self.options,
            outputs=outputs,
        )


def call_rows(
    request: InferenceRequest, response: InferenceResponse, reference: DriftReference
) -> list[dict[str, Any]]:
    """One sampled call's rows: each feature's value (and the prediction) per row."""
    tensors = {t.name: t.data for t in request.inputs}
    columns: dict[str, list[Any]] = {}
    for feature, input_name, column in reference.layout:
        data = tensors.get(input_name)
        if data is None:
            continue
        values = data.reshape(-1) if column is None else data[:, column]
        columns[feature] = _plain(values[:MAX_ROWS_PER_CALL].tolist())
    if reference.prediction is not None:
        name = reference.prediction[0]
        output = next((t.data for t in response.outputs if t.name == name), None)
        if output is not None:
            columns[name] = _plain(output.reshape(-1)[:MAX_ROWS_PER_CALL].tolist())
    count = max((len(v) for v in columns.values()), default=0)
    return [
        {name: values[i] for name, values in columns.items() if i < len(values)}
        for i in range(count)
    ]


def _plain(values: list[Any]) -> list[Any]:
    """Bytes (BYTES tensors) as text, as the profile holds categories."""
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
