"""Load generation and reporting for the model benchmarks (overload.py, batching.py): an
open-loop generator, percentiles, phase summaries and the markdown report.

The servers under test and the closed-loop client (wrk) are in testbed.py. Only ratios taken in
the same run mean much on a shared 2-core machine (see ../shared/bench/README.md).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import re
import shlex
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

RESULTS = Path(__file__).resolve().parent / "results"
#: The API key of the gateway's `auth` section (the benchmark pipeline authenticates every call).
API_KEY = "sk-bench-seawall-0123456789"


def json_headers() -> dict[str, str]:
    """Request headers of every benchmark call."""
    return {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}


# --- open loop -------------------------------------------------------------------------------


def schedule(rate_per_s: float, duration_s: float) -> list[float]:
    """Send times (s from the start) of a constant-rate open loop: i / rate, for the duration."""
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate_per_s and duration_s must be positive")
    return [i / rate_per_s for i in range(round(rate_per_s * duration_s))]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One open-loop request: when it was due and sent, how long until its answer, what came back.

    `latency_s` counts from the time it was due, not sent, so a late send is not hidden
    (coordinated omission). `status` is 0 for a client timeout, -1 for any other client error.
    """

    due_s: float
    sent_s: float
    latency_s: float
    status: int
    retry_after: bool


TIMEOUT = 0
CLIENT_ERROR = -1


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a fixed request and reads one answer at a time.

    Far cheaper per request than a general client (aiohttp spent 0.3-0.5 ms of CPU per request
    here, a third of a core at 1,000 requests/s), so the generator takes little CPU from the
    gateway it measures. Answers must carry Content-Length (uvicorn's do).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = re.search(rb"\r\ncontent-length: *(\d+)", head)
        if length is None:
            self._fail(ConnectionError("answer without content-length"))
            return
        size = end + 4 + int(length[1])
        if len(self.buffer) < size:
            return
        del self.buffer[:size]
        status = int(head[9:12])
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, b"\r\nretry-after:" in head))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def send(self, request: bytes, timeout_s: float) -> tuple[int, bool]:
        """Send `request`; the answer's status and whether it carried Retry-After."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await asyncio.wait_for(self.waiter, timeout_s)
        except TimeoutError:
            self._fail(TimeoutError())  # a late answer would arrive on the next request's watch
            raise


def http_request(url: str, body: bytes) -> bytes:
    """The bytes of a keep-alive HTTP/1.1 POST of `body` (JSON) to `url`."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in json_headers().items())
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def open_loop(
    url: str, body: bytes, due: Sequence[float], *, timeout_s: float = 10.0
) -> list[Outcome]:
    """Send one request at each time in `due`, whatever the answers: nothing waits for a reply.

    One dispatcher sleeps until the next due time and then starts every request that is due as
    its own task, so a slow answer never delays the schedule. Each task takes an idle keep-alive
    connection or opens a new one (no limit). Returns once every request is answered or timed out.
    """
    from urllib.parse import urlsplit

    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # the loop's clock may tick in whole milliseconds (uvloop)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = http_request(url, body)
    idle: list[_Connection] = []
    outcomes: list[Outcome] = []

    async def one(start: float, due_s: float) -> None:
        sent_s = clock() - start
        status, retry_after = CLIENT_ERROR, False
        try:
            while idle and idle[-1].closed:  # the server closed it while it was idle
                idle.pop()
            if idle:
                connection = idle.pop()
            else:
                _, connection = await loop.create_connection(_Connection, host, port)
            status, retry_after = await connection.send(request, timeout_s)
            if not connection.closed:
                idle.append(connection)
        except TimeoutError:
            status = TIMEOUT
        except OSError:
            status = CLIENT_ERROR
        finally:
            outcomes.append(Outcome(due_s, sent_s, clock() - start - due_s, status, retry_after))

    tasks: set[asyncio.Task[None]] = set()
    start = clock()
    for due_s in due:
        delay = start + due_s - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(start, due_s))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    for connection in idle:
        if connection.transport is not None:
            connection.transport.close()
    return outcomes


def run_open_loop(
    url: str, body: bytes, rate_per_s: float, duration_s: float, timeout_s: float = 10.0
) -> list[Outcome]:
    """`open_loop` at a constant rate, on uvloop."""
    import uvloop

    due = schedule(rate_per_s, duration_s)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(open_loop(url, body, due, timeout_s=timeout_s))


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q ≤ 100) by the nearest-rank method; NaN for no values."""
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = -(-len(ordered) * q // 100)  # ceil(n * q / 100), at least 1
    return ordered[max(int(rank), 1) - 1]


@dataclass(frozen=True)
class PhaseSummary:
    """What one open-loop phase achieved."""

    target_rps: float
    offered_rps: float
    goodput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: dict[int, int] = field(default_factory=dict)
    refused: int = 0
    refused_with_retry_after: int = 0
    timeouts: int = 0
    client_errors: int = 0
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0


def summarize(outcomes: Sequence[Outcome], target_rps: float) -> PhaseSummary:
    """Offered rate (requests sent over the span of sending), goodput and latency of the 2xx.

    The span runs from the first due time to the last send plus one interval, so a schedule that
    slipped shows as an offered rate below the target and as send lag.
    """
    if not outcomes:
        raise ValueError("no outcomes")
    span = max(o.sent_s for o in outcomes) - min(o.due_s for o in outcomes) + 1 / target_rps
    ok = [o.latency_s * 1000 for o in outcomes if 200 <= o.status < 300]
    refused = [o for o in outcomes if o.status in (429, 503)]
    lags = [(o.sent_s - o.due_s) * 1000 for o in outcomes]
    return PhaseSummary(
        target_rps=target_rps,
        offered_rps=len(outcomes) / span,
        goodput_rps=len(ok) / span,
        p50_ms=percentile(ok, 50),
        p95_ms=percentile(ok, 95),
        p99_ms=percentile(ok, 99),
        statuses=dict(sorted(Counter(o.status for o in outcomes if o.status > 0).items())),
        refused=len(refused),
        refused_with_retry_after=sum(o.retry_after for o in refused),
        timeouts=sum(o.status == TIMEOUT for o in outcomes),
        client_errors=sum(o.status == CLIENT_ERROR for o in outcomes),
        lag_p99_ms=percentile(lags, 99),
        lag_max_ms=max(lags),
    )


# --- report ----------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_lines(argv: Sequence[str]) -> list[str]:
    """Date, machine, Python and the exact command, as markdown list items."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", *argv])
    return [
        f"- date: {now}",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"load average at the end {load}",
        f"- python: {platform.python_version()} ({platform.python_implementation()})",
        f"- command: `{command}`",
    ]


def write_report(name: str, text: str) -> Path:
    """Write `benchmarks/results/<name>.md` and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return path


#: A target, measured: what, the target, the figure, met or not.
Check = tuple[str, str, str, bool]


def checks_table(checks: Sequence[Check]) -> str:
    """The targets as a markdown table: check, target, measured, met (yes / **no**)."""
    rows = [
        (name, target, measured, "yes" if ok else "**no**") for name, target, measured, ok in checks
    ]
    return markdown_table(["check", "target", "measured", "met"], rows)
