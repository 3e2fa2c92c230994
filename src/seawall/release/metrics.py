"""Metric sources: where a guardrail's values come from.

A `MetricSource` answers one question, "what is this metric for this version over the last
`window_s` seconds", or raises `MetricUnavailableError`. `MetricRouter` picks the source from the
metric's origin (PromQL, a function, pushed values, or a built-in kind). Sources translate every
failure of their own (an exception in a user function, a value that is not a finite number) into
`MetricUnavailableError`, so an analysis sees values or unavailability, nothing else.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from seawall.clock import Clock
from seawall.release.errors import MetricUnavailableError
from seawall.release.plan import MetricKind, MetricRef, Origin

if TYPE_CHECKING:
    from seawall.monitor.report import DriftReport

__all__ = [
    "DEFAULT_MAX_PUSHED_SERIES",
    "CallableSource",
    "DriftSource",
    "MetricRouter",
    "MetricSource",
    "PushedSource",
    "StaticSource",
    "drift_score",
    "finite",
    "resolve_function",
]

#: Distinct (name, version) series a `PushedSource` keeps; pushes of further ones are refused.
DEFAULT_MAX_PUSHED_SERIES = 10_000

#: `function(model, version, window_s)`: a number, None for "no data", or an awaitable of either.
MetricFunction = Callable[[str, str, float], Any]


class MetricSource(Protocol):
    """Values of metrics per model version."""

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        """`metric` of `variant_version` over the last `window_s`, or `MetricUnavailableError`."""
        ...


def finite(metric: MetricRef, value: object) -> float:
    """`value` as a float, or `MetricUnavailableError` unless it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetricUnavailableError(f"{metric.name}: not a number ({type(value).__name__})")
    if not math.isfinite(value):
        raise MetricUnavailableError(f"{metric.name}: not a finite number ({value})")
    return float(value)


class StaticSource:
    """Values set by hand per (metric name, version): tests, demos, fixed baselines."""

    def __init__(self, values: Mapping[tuple[str, str], float] | None = None) -> None:
        self._values = dict(values or {})

    def set(self, name: str, version: str, value: float | None) -> None:
        """Set the value (None: unavailable from now on)."""
        if value is None:
            self._values.pop((name, version), None)
        else:
            self._values[(name, version)] = value

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        found = self._values.get((metric.name, variant_version))
        if found is None:
            raise MetricUnavailableError(f"{metric.name}: no value for version {variant_version!r}")
        return finite(metric, found)


class PushedSource:
    """The latest value pushed per (metric name, version); older than the window is unavailable."""

    def __init__(self, *, clock: Clock, max_series: int = DEFAULT_MAX_PUSHED_SERIES) -> None:
        self._clock = clock
        self._max_series = max_series
        self._latest: dict[tuple[str, str], tuple[float, float]] = {}

    def push(self, name: str, version: str, value: float, *, at: float | None = None) -> None:
        """Record `value` measured at wall time `at` (now by default); an older one is ignored."""
        if not name or not version:
            raise ValueError("name/version: must not be empty")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"value: must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"value: must be a finite number, got {value}")
        when = self._clock.time() if at is None else at
        key = (name, version)
        if key not in self._latest and len(self._latest) >= self._max_series:
            raise ValueError(f"name: already {self._max_series} series pushed; refusing {key}")
        current = self._latest.get(key)
        if current is None or when >= current[0]:
            self._latest[key] = (when, float(value))

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        found = self._latest.get((metric.name, variant_version))
        if found is None:
            raise MetricUnavailableError(f"{metric.name}: nothing pushed for {variant_version!r}")
        at, value = found
        age_s = self._clock.time() - at
        if age_s > window_s:
            raise MetricUnavailableError(
                f"{metric.name}: last pushed {age_s:g} s ago, before the window ({window_s:g} s)"
            )
        return value


class CallableSource:
    """Python functions named `module:function`, imported once when the source is built.

    Each is called as `function(model, version, window_s)` and returns a number, or None when it
    has no data. `async def` functions run on the event loop, others in a worker thread.
    """

    def __init__(self, functions: Iterable[str], *, model: str) -> None:
        self._model = model
        self._functions = {path: resolve_function(path) for path in functions}

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        function = self._functions.get(metric.function or "")
        if function is None:
            raise MetricUnavailableError(f"{metric.name}: function {metric.function!r} not loaded")
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(self._model, variant_version, window_s)
            else:
                result = await asyncio.to_thread(function, self._model, variant_version, window_s)
        except Exception as exc:  # user code: any failure means "no value now"
            raise MetricUnavailableError(
                f"{metric.name}: {metric.function} raised {exc!r}"
            ) from exc
        if result is None:
            raise MetricUnavailableError(f"{metric.name}: {metric.function} has no data")
        return finite(metric, result)


def resolve_function(path: str) -> MetricFunction:
    """Import `module.path:attribute.path`; ValueError naming the path when it cannot."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"function: expected 'module.path:function', got {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"function: cannot import {module_name!r} ({path}): {exc}") from exc
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ValueError(f"function: {module_name!r} has no attribute {attribute!r}")
    if not callable(target):
        raise ValueError(f"function: {path!r} is not callable")
    return target  # type: ignore[no-any-return]


def drift_score(report: DriftReport) -> float:
    """1.0 when the report says drifting, else its score (largest PSI) capped at 1.0."""
    return 1.0 if report.drifting else min(report.score, 1.0)


class DriftSource:
    """`drift_score` of each version's latest drift report (`seawall.monitor`)."""

    def __init__(self, latest: Callable[[str], Awaitable[DriftReport | None]]) -> None:
        self._latest = latest

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        report = await self._latest(variant_version)
        if report is None:
            raise MetricUnavailableError(f"{metric.name}: no drift report for {variant_version!r}")
        if report.tests == 0:
            raise MetricUnavailableError(
                f"{metric.name}: the drift report of {variant_version!r} has too little data "
                f"({report.rows} rows)"
            )
        return drift_score(report)


class MetricRouter:
    """Sends each metric to the source its origin names; built-in kinds by kind."""

    def __init__(
        self,
        *,
        builtin: Mapping[MetricKind, MetricSource] | None = None,
        prometheus: MetricSource | None = None,
        callables: MetricSource | None = None,
        pushed: MetricSource | None = None,
    ) -> None:
        self._builtin = dict(builtin or {})
        self._by_origin = {
            Origin.PROMQL: prometheus,
            Origin.CALLABLE: callables,
            Origin.PUSHED: pushed,
        }

    def source(self, metric: MetricRef) -> MetricSource | None:
        """The source that answers for `metric`, if one is configured."""
        if metric.origin is Origin.BUILTIN:
            return self._builtin.get(metric.kind)
        return self._by_origin[metric.origin]

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        source = self.source(metric)
        if source is None:
            where = metric.kind.value if metric.origin is Origin.BUILTIN else metric.origin.value
            raise MetricUnavailableError(f"{metric.name}: no {where} source is configured")
        return await source.value(metric, variant_version, window_s)
