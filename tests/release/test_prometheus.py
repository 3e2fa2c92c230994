"""PrometheusSource against a real local HTTP server answering like Prometheus's query API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from seawall.release.errors import MetricUnavailableError
from seawall.release.plan import MetricKind, MetricRef
from seawall.release.prometheus import PrometheusSource, duration, render_query

QUERY = 'sum(rate(http_errors_total{model="{model}",version="{version}"}[{window}]))'
ERRORS = MetricRef(MetricKind.ERROR_RATE, query=QUERY)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"version": "2"}, "value": [1_700_000_000.0, v]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@asynccontextmanager
async def prometheus(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 (random port) serving /api/v1/query with `handler`."""
    app = web.Application()
    app.router.add_get("/api/v1/query", handler)
    runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def source(handler: Handler, timeout_s: float = 5.0) -> AsyncIterator[PrometheusSource]:
    async with prometheus(handler) as url, aiohttp.ClientSession() as http:
        yield PrometheusSource(url + "/", http, model="iris", timeout_s=timeout_s)


def answering(body: object, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    return handler


async def test_one_sample_is_the_value_and_the_query_is_templated() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.query["query"])
        return web.json_response(vector("0.0125"))

    async with source(handler) as prom:
        assert await prom.value(ERRORS, "2", 30.0) == 0.0125
        assert await prom.value(ERRORS, "1", 0.5) == 0.0125
    assert seen == [
        'sum(rate(http_errors_total{model="iris",version="2"}[30s]))',
        'sum(rate(http_errors_total{model="iris",version="1"}[500ms]))',
    ]


async def test_a_scalar_result_is_a_value() -> None:
    body = {"status": "success", "data": {"resultType": "scalar", "result": [1.7e9, "3"]}}
    async with source(answering(body)) as prom:
        assert await prom.value(ERRORS, "2", 30.0) == 3.0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (vector(), 200, "the query returned 0 series, expected exactly 1"),
        (vector("0.1", "0.2"), 200, "the query returned 2 series, expected exactly 1"),
        (vector("NaN"), 200, "the query returned nan"),
        (vector("+Inf"), 200, "the query returned inf"),
        (vector("abc"), 200, "malformed sample"),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            200,
            "expected a vector or scalar, got 'matrix'",
        ),
        (
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"},
            400,
            r"HTTP 400 \(bad_data: parse error at char 5\)",
        ),
        (
            {"status": "error", "errorType": "timeout", "error": "query timed out"},
            503,
            r"HTTP 503 \(timeout: query timed out\)",
        ),
    ],
)
async def test_anything_but_one_finite_sample_is_unavailable(
    body: object, status: int, message: str
) -> None:
    async with source(answering(body, status)) as prom:
        with pytest.raises(MetricUnavailableError, match=f"error_rate: .*{message}"):
            await prom.value(ERRORS, "2", 30.0)


async def test_a_body_that_is_not_json_is_unavailable() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>bad gateway</html>", status=502)

    async with source(handler) as prom:
        with pytest.raises(MetricUnavailableError, match="answered HTTP 502 that is not JSON"):
            await prom.value(ERRORS, "2", 30.0)


async def test_a_slow_server_is_unavailable_after_the_timeout() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(5.0)
        return web.json_response(vector("1"))

    loop = asyncio.get_running_loop()
    async with source(handler, timeout_s=0.2) as prom:
        started = loop.time()
        with pytest.raises(MetricUnavailableError, match=r"Prometheus at .* failed"):
            await prom.value(ERRORS, "2", 30.0)
        assert loop.time() - started < 2.0  # real sockets: the 0.2 s timeout, with margin


async def test_an_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        async with aiohttp.ClientSession() as http:
            prom = PrometheusSource(f"http://127.0.0.1:{port}", http, model="iris")
            with pytest.raises(MetricUnavailableError, match=r"Prometheus at .* failed"):
                await prom.value(ERRORS, "2", 30.0)


async def test_a_metric_without_a_query_is_unavailable() -> None:
    async with source(answering(vector("1"))) as prom:
        with pytest.raises(MetricUnavailableError, match="error_rate: has no PromQL query"):
            await prom.value(MetricRef(MetricKind.ERROR_RATE), "2", 30.0)


@pytest.mark.parametrize(("seconds", "text"), [(30.0, "30s"), (300, "300s"), (1.5, "1500ms")])
def test_windows_are_promql_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_only_the_three_placeholders_are_filled() -> None:
    assert (
        render_query(
            'x{a="{model}",b="{version}",c="{other}"}[{window}]',
            model="m",
            version="7",
            window_s=60,
        )
        == 'x{a="m",b="7",c="{other}"}[60s]'
    )
    with pytest.raises(ValueError, match="window_s: must be a positive number"):
        duration(0.0)
