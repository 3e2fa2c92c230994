"""`PrometheusSource`: guardrail values from a Prometheus server's HTTP API (`/api/v1/query`).

The metric's PromQL text is templated (`{model}`, `{version}`, `{window}` as a duration such as
`30s`) and evaluated as an instant query. The answer must be exactly one sample (a vector of one
series, or a scalar) holding a finite number; no series, several series, NaN, an error from
Prometheus, an HTTP error, a timeout or an unreachable server all make the metric unavailable.
Only those three placeholders are replaced, so PromQL's own braces need no escaping.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import orjson
from yarl import URL

from seawall.release.errors import MetricUnavailableError
from seawall.release.plan import MetricRef

__all__ = ["DEFAULT_PROMETHEUS_TIMEOUT_S", "PrometheusSource", "duration", "render_query"]

#: Longest wait for one query's answer.
DEFAULT_PROMETHEUS_TIMEOUT_S = 5.0
#: Largest answer read; an instant query of one sample is a few hundred bytes.
_MAX_BODY_BYTES = 1024 * 1024


def duration(seconds: float) -> str:
    """`seconds` as a PromQL duration: whole seconds as `30s`, anything finer in `ms`."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"window_s: must be a positive number, got {seconds}")
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def render_query(query: str, *, model: str, version: str, window_s: float) -> str:
    """`query` with `{model}`, `{version}` and `{window}` filled in."""
    return (
        query.replace("{model}", model)
        .replace("{version}", version)
        .replace("{window}", duration(window_s))
    )


class PrometheusSource:
    """Instant queries against `base_url` (e.g. `http://prometheus:9090`) over session `http`."""

    def __init__(
        self,
        base_url: str,
        http: aiohttp.ClientSession,
        *,
        model: str,
        timeout_s: float = DEFAULT_PROMETHEUS_TIMEOUT_S,
    ) -> None:
        self._url = URL(base_url.rstrip("/") + "/api/v1/query")
        self._http = http
        self._model = model
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def value(self, metric: MetricRef, variant_version: str, window_s: float) -> float:
        if metric.query is None:
            raise MetricUnavailableError(f"{metric.name}: has no PromQL query")
        query = render_query(
            metric.query, model=self._model, version=variant_version, window_s=window_s
        )
        body = await self._get(metric, query)
        return _sample(metric, body)

    async def _get(self, metric: MetricRef, query: str) -> Any:
        try:
            async with self._http.get(
                self._url, params={"query": query}, timeout=self._timeout
            ) as response:
                raw = await response.content.read(_MAX_BODY_BYTES + 1)
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise MetricUnavailableError(
                f"{metric.name}: Prometheus at {self._url} failed: {exc!r}"
            ) from exc
        if len(raw) > _MAX_BODY_BYTES:
            raise MetricUnavailableError(
                f"{metric.name}: Prometheus answer over {_MAX_BODY_BYTES} B"
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MetricUnavailableError(
                f"{metric.name}: Prometheus answered HTTP {status} that is not JSON"
            ) from exc
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            kind = body.get("errorType") if isinstance(body, dict) else None
            raise MetricUnavailableError(
                f"{metric.name}: Prometheus answered HTTP {status} ({kind}: {error})"
            )
        return body


def _sample(metric: MetricRef, body: dict[str, Any]) -> float:
    data = body.get("data")
    kind = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if kind == "scalar":
        point = result
    elif kind == "vector" and isinstance(result, list):
        if len(result) != 1:
            raise MetricUnavailableError(
                f"{metric.name}: the query returned {len(result)} series, expected exactly 1"
            )
        point = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        raise MetricUnavailableError(f"{metric.name}: expected a vector or scalar, got {kind!r}")
    try:
        value = float(point[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise MetricUnavailableError(f"{metric.name}: malformed sample {point!r}") from exc
    if not math.isfinite(value):
        raise MetricUnavailableError(f"{metric.name}: the query returned {value}")
    return value
