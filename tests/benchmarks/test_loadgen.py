"""benchmarks/loadgen.py: the open-loop schedule and client, percentiles, summaries, tables."""

from __future__ import annotations

import asyncio
import importlib
import math
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    """A benchmark module, imported as the scripts import each other (benchmarks/ on the path)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


loadgen = load("loadgen")


def outcome(status: int, latency_ms: float = 1.0, *, due: float = 0.0, lag_ms: float = 0.0,
            retry_after: bool = False) -> Any:  # fmt: skip
    return loadgen.Outcome(due, due + lag_ms / 1000, latency_ms / 1000, status, retry_after)


def test_the_schedule_is_evenly_spaced_at_the_rate_for_the_duration() -> None:
    due = loadgen.schedule(200, 1.5)
    assert len(due) == 300
    assert due[0] == 0
    assert due[1] == pytest.approx(0.005)
    assert due[-1] == pytest.approx(299 / 200)


@pytest.mark.parametrize(("rate", "duration"), [(0, 1), (10, 0), (-1, 1)])
def test_the_schedule_needs_a_positive_rate_and_duration(rate: float, duration: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        loadgen.schedule(rate, duration)


def test_percentiles_use_the_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert loadgen.percentile(values, 50) == 50
    assert loadgen.percentile(values, 99) == 99
    assert loadgen.percentile(values, 100) == 100
    assert loadgen.percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert loadgen.percentile([7.0], 1) == 7.0
    assert math.isnan(loadgen.percentile([], 50))


@pytest.mark.parametrize("q", [0, -5, 101])
def test_a_percentile_outside_0_to_100_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="q must be"):
        loadgen.percentile([1.0], q)


def test_a_summary_counts_only_2xx_as_goodput_and_in_the_latencies() -> None:
    outcomes = [outcome(200, latency_ms=10, due=i / 100) for i in range(90)]
    outcomes += [outcome(503, latency_ms=1000, due=(90 + i) / 100, retry_after=True)
                 for i in range(8)]  # fmt: skip
    outcomes += [outcome(429, due=0.98), outcome(loadgen.TIMEOUT, due=0.99, lag_ms=20)]
    summary = loadgen.summarize(outcomes, 100)
    assert summary.offered_rps == pytest.approx(100 / (0.99 + 0.02 - 0 + 0.01))
    assert summary.goodput_rps == pytest.approx(90 / 1.02)
    assert summary.p99_ms == pytest.approx(10)  # the slow refusals are not admitted calls
    assert summary.statuses == {200: 90, 429: 1, 503: 8}
    assert (summary.refused, summary.refused_with_retry_after) == (9, 8)
    assert (summary.timeouts, summary.client_errors) == (1, 0)
    assert summary.lag_max_ms == pytest.approx(20)


def test_a_schedule_that_slipped_shows_as_a_lower_offered_rate() -> None:
    on_time = [outcome(200, due=i / 10) for i in range(10)]
    late = [outcome(200, due=i / 10, lag_ms=1000) for i in range(10)]
    assert loadgen.summarize(on_time, 10).offered_rps == pytest.approx(10)
    assert loadgen.summarize(late, 10).offered_rps == pytest.approx(10 / 2)


def test_markdown_tables_align_numbers_right() -> None:
    text = loadgen.markdown_table(["what", "n"], [["a", 1], ["b", 22]])
    assert text.splitlines() == ["| what | n |", "|---|---:|", "| a | 1 |", "| b | 22 |"]
    checks = loadgen.checks_table([("p99", "≤ 3", "2.0", True), ("goodput", "≥ 0.9", "0.5", False)])
    assert "| p99 | ≤ 3 | 2.0 | yes |" in checks
    assert "| goodput | ≥ 0.9 | 0.5 | **no** |" in checks


def test_the_report_header_names_the_machine_and_the_command() -> None:
    lines = loadgen.machine_lines(["benchmarks/x.py", "--duration", "5"])
    assert lines[-1] == "- command: `.venv/bin/python benchmarks/x.py --duration 5`"
    assert any(line.startswith("- machine: ") and "CPUs" in line for line in lines)
    assert any(line.startswith("- python: 3.") for line in lines)


def test_the_request_is_keep_alive_http_1_1_with_the_api_key() -> None:
    request = loadgen.http_request("http://127.0.0.1:8000/v2/models/m/infer", b'{"a":1}')
    head, body = request.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v2/models/m/infer HTTP/1.1"
    assert "Host: 127.0.0.1:8000" in lines
    assert "Content-Length: 7" in lines
    assert f"Authorization: Bearer {loadgen.API_KEY}" in lines
    assert body == b'{"a":1}'


Answer = Callable[[int], bytes | None]


@asynccontextmanager
async def http_server(answer: Answer) -> AsyncIterator[str]:
    """A tiny HTTP/1.1 server: reads each request, writes `answer(n)` (None: close instead)."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                count += 1
                reply = answer(count)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v2/models/m/infer"
    finally:
        server.close()
        await server.wait_closed()


def reply(status: int, extra: str = "", body: bytes = b"{}") -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}"
    return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


async def test_the_open_loop_sends_every_request_and_reads_every_answer() -> None:
    def answer(n: int) -> bytes:
        return reply(200, body=b'{"ok":true}') if n % 2 else reply(503, "Retry-After: 1\r\n")

    async with http_server(answer) as url:
        outcomes = await loadgen.open_loop(url, b"{}", loadgen.schedule(400, 0.05), timeout_s=5)
    summary = loadgen.summarize(outcomes, 400)
    assert summary.statuses == {200: 10, 503: 10}
    assert summary.refused_with_retry_after == 10
    assert (summary.timeouts, summary.client_errors) == (0, 0)


async def test_a_closed_connection_is_a_client_error_and_a_silent_server_a_timeout() -> None:
    async with http_server(lambda n: None) as url:
        closed = await loadgen.open_loop(url, b"{}", [0.0, 0.0], timeout_s=5)
    assert {o.status for o in closed} == {loadgen.CLIENT_ERROR}

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"http://127.0.0.1:{port}/x"
        timed_out = await loadgen.open_loop(url, b"{}", [0.0], timeout_s=0.05)
    finally:
        server.close()
        await server.wait_closed()
    assert [o.status for o in timed_out] == [loadgen.TIMEOUT]
