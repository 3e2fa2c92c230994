"""A model's drift monitor (`drift`), built from config: its sampler policy, its loop, its reports.

The monitor compares each version's sampled calls with that version's training reference
(`TrainingReference`): the features it checks, restricted from the profile, and, with
`training.target`, the model's first output against the target's distribution. Each report is
kept for `/metrics` (`seawall_feature_drift`) and, with `drift.store` and a database, saved for
`seawall monitor drift` and rollout guardrails.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

from seawall.assemble.parts import Assembly
from seawall.assemble.reference import TrainingReference
from seawall.backends.base import Backend
from seawall.backends.swap import VERSION_HEADER
from seawall.clock import Clock
from seawall.config import DriftSettings, ModelSettings
from seawall.context import CallContext
from seawall.monitor.options import DriftOptions, DriftThresholds
from seawall.monitor.service import DriftMonitor, DriftReference, Sampled
from seawall.policies.sample import SamplePolicy

if TYPE_CHECKING:
    from seawall.monitor.report import DriftReport
    from seawall.monitor.reservoir import WindowSample

__all__ = ["drift_options", "drift_sampler"]


def drift_options(drift: DriftSettings) -> DriftOptions:
    """The statistics' thresholds as `drift` gives them."""
    base = DriftThresholds(psi=drift.psi, js=drift.js, alpha=drift.alpha)
    per_feature = {
        name: DriftThresholds(
            psi=limits.psi or base.psi, js=limits.js or base.js, alpha=limits.alpha or base.alpha
        )
        for name, limits in drift.features.items()
    }
    return DriftOptions(
        thresholds=base,
        per_feature=per_feature,
        min_samples=drift.min_samples,
        exclude=frozenset(drift.exclude),
    )


def drift_sampler(
    settings: ModelSettings,
    assembly: Assembly,
    backend: Backend,
    reference: TrainingReference | None,
    *,
    clock: Clock,
) -> SamplePolicy | None:
    """The model's sampler policy (None: `drift` is off), its monitor in `assembly.monitors`."""
    drift = settings.drift
    if drift is None or reference is None:
        return None
    label = f"{settings.name}:{settings.version}"
    target = settings.training.target if settings.training is not None else None
    monitor = DriftMonitor(
        label,
        drift_options(drift),
        window_s=drift.window_s,
        sample_size=drift.sample_size,
        reference=_references(reference, backend, target),
        clock=clock,
        on_report=_store(assembly, drift) if drift.store else None,
    )
    assembly.monitors[label] = monitor
    _run_while_started(assembly, monitor)
    fixed = settings.version

    def version(ctx: CallContext) -> str:
        return ctx.response_headers.get(VERSION_HEADER, fixed)

    return SamplePolicy(monitor.offer, version)


def _references(reference: TrainingReference, backend: Backend, target: str | None) -> Any:
    built: dict[str, DriftReference] = {}

    def reference_for(version: str) -> DriftReference | None:
        if version in built:
            return built[version]
        known, layout = reference.profile(version), reference.layout(version)
        if known is None or layout is None:
            return None
        source, profile = known
        columns = profile["columns"]
        restricted = {**profile, "columns": {f: columns[f] for f, _, _ in layout}}
        prediction = None
        outputs = backend.metadata().outputs
        if target is not None and target in columns and outputs:
            prediction = (outputs[0].name, columns[target])
        built[version] = DriftReference(source, restricted, layout, prediction)
        return built[version]

    return reference_for


def _store(assembly: Assembly, drift: DriftSettings) -> Any:
    control = assembly.shared.control if assembly.shared is not None else None
    if control is None:
        return None
    host = f"gateway@{socket.gethostname()}"

    async def save(report: DriftReport, window: WindowSample[Sampled], source: str) -> None:
        from seawall.monitor.reports import DriftReportStore

        store = DriftReportStore(await control.database())
        await store.save(report, offered=window.offered, reference=source, created_by=host)

    return save


def _run_while_started(assembly: Assembly, monitor: DriftMonitor) -> None:
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(monitor.run(), name=f"drift {monitor.target}"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks.clear()

    assembly.starters.append(start)
    assembly.closers.append(stop)
