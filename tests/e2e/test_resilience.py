"""Issue 4's acceptance scenarios, measured on real `seawall serve` processes over HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from seawall.assemble import assemble
from seawall.backends import MockBackend
from seawall.config import parse_config
from seawall.gateway import Gateway

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch

pytestmark = pytest.mark.e2e

#: Longest any single HTTP call of these tests may take.
HTTP_TIMEOUT_S = 15.0
#: Longest wait for something the gateway should reach within a fraction of a second.
POLL_TIMEOUT_S = 10.0


def write_config(directory: Path, text: str) -> Path:
    path = directory / "seawall.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def body(i: int = 0) -> dict[str, Any]:
    """An inference request for a mock model (one FP32 row, echoed back)."""
    return {
        "id": f"req-{i}",
        "inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [i, 0.5]}],
    }


def samples(gateway: GatewayProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of GET /metrics, by name and label set."""
    with gateway.client() as http:
        response = http.get("/metrics")
    response.raise_for_status()
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def sample(gateway: GatewayProcess, name: str, **labels: str) -> float | None:
    """One sample of GET /metrics, None when it is not exported at all."""
    return samples(gateway).get((name, frozenset(labels.items())))


def events(gateway: GatewayProcess, event: str, target: str) -> float:
    """`seawall_policy_events_total{event, target}`, 0 when none happened."""
    return sample(gateway, "seawall_policy_events_total", event=event, target=target) or 0.0


def retry_after_s(headers: httpx.Headers) -> int | None:
    """`Retry-After` as whole seconds if it is an integer >= 1, else None."""
    value = headers.get("retry-after", "")
    return int(value) if value.isascii() and value.isdigit() and int(value) >= 1 else None


def p99(latencies_s: list[float]) -> float:
    """The 99th percentile, in milliseconds."""
    return statistics.quantiles(latencies_s, n=100)[98] * 1000


@dataclass(frozen=True)
class Outcome:
    """One answered request, as the client saw it."""

    status: int
    headers: httpx.Headers
    text: str
    priority: str = "normal"


def drive(
    urls: list[str],
    model: str,
    *,
    clients: int,
    duration_s: float,
    pause_s: float = 0.0,
    priority: Callable[[int], str] = lambda client: "normal",
) -> list[Outcome]:
    """`clients` threads sending to `model` in a loop for `duration_s` (client i to urls[i % n])."""
    start = threading.Barrier(clients + 1)

    def client(index: int) -> list[Outcome]:
        klass = priority(index)
        headers = {"x-seawall-priority": klass}
        seen: list[Outcome] = []
        with httpx.Client(base_url=urls[index % len(urls)], timeout=HTTP_TIMEOUT_S) as http:
            http.get("/v2/health/live")  # connect before the clock starts
            start.wait(timeout=POLL_TIMEOUT_S)
            end = time.monotonic() + duration_s
            i = 0
            while time.monotonic() < end:
                r = http.post(f"/v2/models/{model}/infer", json=body(i), headers=headers)
                seen.append(Outcome(r.status_code, r.headers, r.text, klass))
                i += 1
                if pause_s:
                    time.sleep(pause_s)
        return seen

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        start.wait(timeout=POLL_TIMEOUT_S)
        bound_s = duration_s + 2 * HTTP_TIMEOUT_S
        return [o for f in futures for o in f.result(timeout=bound_s)]


def send_all(url: str, model: str, count: int, *, clients: int) -> list[httpx.Response]:
    """`count` requests to `model`, `clients` at a time (each client on its own connection)."""

    def client(indices: range) -> list[httpx.Response]:
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
            return [http.post(f"/v2/models/{model}/infer", json=body(i)) for i in indices]

    shares = [range(c, count, clients) for c in range(clients)]
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client, share) for share in shares]
        return [r for f in futures for r in f.result(timeout=60.0)]


def report(record_property: Callable[[str, object], None], **figures: object) -> None:
    """Keep measured figures in the JUnit report, and show them with `-s` or on failure."""
    for name, value in figures.items():
        record_property(name, value)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


# -- hanging backend behind a 200 ms timeout ---------------------------------------------------

HANGING = """\
models:
  - name: m
    backend: {kind: mock, latency_ms: 60000}
    policies: {timeout: {timeout_ms: 200}}
"""
CONCURRENT_HANGS = 20
#: The acceptance bound on each answer to a call that hangs behind a 200 ms timeout.
HANG_ANSWER_BOUND_S = 0.250


def timed_hangs(url: str, count: int) -> list[tuple[float, httpx.Response]]:
    """`count` concurrent calls to the hanging model, each timed by its client."""
    start = threading.Barrier(count)

    def call(i: int) -> tuple[float, httpx.Response]:
        with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
            http.get("/v2/health/live")  # connected before timing starts
            start.wait(timeout=POLL_TIMEOUT_S)
            began = time.perf_counter()
            response = http.post("/v2/models/m/infer", json=body(i))
            return time.perf_counter() - began, response

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(call, i) for i in range(count)]
        return [f.result(timeout=HTTP_TIMEOUT_S + POLL_TIMEOUT_S) for f in futures]


def assert_timed_out(elapsed_s: float, response: httpx.Response) -> None:
    assert response.status_code == 504, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "model 'm:1' did not answer within 200 ms"}
    assert 0.19 <= elapsed_s <= HANG_ANSWER_BOUND_S, f"answered in {elapsed_s * 1000:.1f} ms"


def test_hanging_backend_answers_504_within_250_ms_and_nothing_keeps_running(
    tmp_path: Path, launch: Launch, record_property: Callable[[str, object], None]
) -> None:
    gateway = launch(write_config(tmp_path, HANGING))

    answers = timed_hangs(gateway.url, CONCURRENT_HANGS)

    for elapsed_s, response in answers:
        assert_timed_out(elapsed_s, response)
    # Nothing is left running: the in-flight gauge is back to 0 (it exists: it went up first).
    assert sample(gateway, "seawall_requests_in_flight", model="m") == 0.0
    assert events(gateway, "CallTimedOut", "m:1") == CONCURRENT_HANGS
    requests_504 = sample(gateway, "seawall_requests_total", model="m", version="1", status="504")
    assert requests_504 == CONCURRENT_HANGS
    # And the process stays responsive: it answers at once, and times out the next call too.
    with gateway.client() as http:
        began = time.perf_counter()
        assert http.get("/v2/health/live").status_code == 200
        assert time.perf_counter() - began < 1.0
    (again,) = timed_hangs(gateway.url, 1)
    assert_timed_out(*again)
    assert gateway.process.poll() is None
    worst_ms = max(elapsed_s for elapsed_s, _ in answers) * 1000
    report(record_property, hang_worst_ms=round(worst_ms, 1))


async def test_hanging_backend_calls_are_cancelled_and_leave_no_task_behind() -> None:
    config = parse_config(HANGING, environ={})
    gateway = Gateway(assemble(config), config.server)
    await gateway.startup()
    # As `seawall serve` does after start-up: what exists now (here, the whole test session's
    # heap, thousands of tests' worth) is moved out of the collector's sight, so a collection
    # during the timed calls does not walk it and the bound measures the gateway, not pytest.
    gc.collect()
    gc.freeze()
    try:
        backend = gateway.repository.get("m").backend
        assert isinstance(backend, MockBackend)
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:

            async def call(i: int) -> tuple[float, httpx.Response]:
                began = time.perf_counter()
                response = await http.post("/v2/models/m/infer", json=body(i))
                return time.perf_counter() - began, response

            baseline = len(asyncio.all_tasks())
            answers = await asyncio.wait_for(
                asyncio.gather(*(call(i) for i in range(CONCURRENT_HANGS))), HTTP_TIMEOUT_S
            )
            # Every answer is out, and every task started for the calls has ended with it.
            assert len(asyncio.all_tasks()) == baseline, asyncio.all_tasks()
        for elapsed_s, response in answers:
            assert_timed_out(elapsed_s, response)
        stats = backend.stats
        assert (stats.calls, stats.cancelled, stats.in_flight) == (
            CONCURRENT_HANGS,
            CONCURRENT_HANGS,
            0,
        )
        assert stats.completed == stats.failed == 0
    finally:
        gc.unfreeze()
        await gateway.shutdown()


# -- retry amplification under a backend that always fails ------------------------------------

RETRY = """\
models:
  - name: m
    backend: {kind: mock, error_rate: 1.0, seed: 1}
    policies:
      retry:
        attempts: 3
        base_delay_ms: 1
        max_delay_ms: 5
        budget: {ratio: 0.2, window_s: 10, min_per_s: 1}
  - name: strict
    backend: {kind: mock, error_rate: 1.0, seed: 1}
    policies:
      retry:
        attempts: 3
        base_delay_ms: 1
        max_delay_ms: 5
        budget: {ratio: 0.2, window_s: 10, min_per_s: 0}
  - name: unbudgeted
    backend: {kind: mock, error_rate: 1.0, seed: 1}
    policies:
      retry: {attempts: 3, base_delay_ms: 1, max_delay_ms: 5, budget: null}
"""
BUDGET_RATIO, BUDGET_WINDOW_S, BUDGET_MIN_PER_S = 0.2, 10.0, 1.0
RETRY_REQUESTS = 1000
RETRY_CLIENTS = 8


def backend_calls(responses: list[httpx.Response]) -> int:
    """Calls the backend received, from each response's `x-seawall-attempts`."""
    return sum(int(r.headers["x-seawall-attempts"]) for r in responses)


def assert_all_unavailable(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert response.status_code == 503, response.text
        assert retry_after_s(response.headers) is not None, response.headers
        assert "injected failure" in response.json()["error"]


def test_retry_budget_keeps_amplification_under_one_plus_ratio_in_a_full_outage(
    tmp_path: Path, launch: Launch, record_property: Callable[[str, object], None]
) -> None:
    gateway = launch(write_config(tmp_path, RETRY))

    began = time.monotonic()
    responses = send_all(gateway.url, "m", RETRY_REQUESTS, clients=RETRY_CLIENTS)
    elapsed_s = time.monotonic() - began

    assert len(responses) == RETRY_REQUESTS
    assert_all_unavailable(responses)
    retries = events(gateway, "RetryAttempted", "m:1")
    calls = RETRY_REQUESTS + retries
    assert backend_calls(responses) == calls  # the clients' count agrees with the gateway's
    # The budget allows ratio x requests plus a reserve of min_per_s x window_s retries, which is
    # full at start; over a run longer than the window, each further window brings its reserve.
    windows = max(1, math.ceil(elapsed_s / BUDGET_WINDOW_S))
    reserve = BUDGET_MIN_PER_S * BUDGET_WINDOW_S * windows
    max_retries = math.floor(BUDGET_RATIO * RETRY_REQUESTS + reserve + 1e-9)
    bound = 1 + max_retries / RETRY_REQUESTS
    ratio = calls / RETRY_REQUESTS
    assert retries <= max_retries, f"{calls} backend calls for {RETRY_REQUESTS} requests"
    # And the budget is spent, not refused wholesale: retries do happen, about ratio x requests.
    assert retries >= 0.75 * BUDGET_RATIO * RETRY_REQUESTS
    assert events(gateway, "RetryBudgetExhausted", "m:1") > 0

    # With no minimum rate there is no reserve: the load is at most (1 + ratio) x requests.
    strict = send_all(gateway.url, "strict", RETRY_REQUESTS, clients=RETRY_CLIENTS)
    assert_all_unavailable(strict)
    strict_ratio = backend_calls(strict) / len(strict)
    assert strict_ratio <= 1 + BUDGET_RATIO
    assert strict_ratio >= 1 + 0.75 * BUDGET_RATIO

    unbudgeted = send_all(gateway.url, "unbudgeted", RETRY_REQUESTS // 2, clients=RETRY_CLIENTS)
    assert_all_unavailable(unbudgeted)
    unbudgeted_ratio = backend_calls(unbudgeted) / len(unbudgeted)
    assert unbudgeted_ratio == 3.0
    assert events(gateway, "RetryAttempted", "unbudgeted:1") == 2 * len(unbudgeted)
    report(
        record_property,
        retry_amplification=round(ratio, 4),
        retry_amplification_bound=round(bound, 4),
        retry_amplification_without_minimum=round(strict_ratio, 4),
        retry_run_s=round(elapsed_s, 2),
        retry_amplification_unbudgeted=unbudgeted_ratio,
    )


# -- bulkhead isolation ------------------------------------------------------------------------

BULKHEADS = """\
models:
  - name: a
    backend: {kind: mock, latency_ms: 200}
    policies: {bulkhead: {max_concurrent: 4, max_queue: 8, max_wait_ms: 100}}
  - name: b
    backend: {kind: mock, latency_ms: 5}
    policies: {bulkhead: {max_concurrent: 4, max_queue: 8, max_wait_ms: 100}}
"""
HAMMER_CLIENTS = 64
B_SAMPLES = 300
#: A's capacity: 4 slots, each held 200 ms.
A_CAPACITY_PER_S = 4 / 0.2

# The load on A comes from a process of its own: threads in this process would compete for the
# GIL with the thread timing B, and the test would measure its own contention, not the gateway's.
# Each client sends again as soon as it has an answer, after the Retry-After of a 503: A gets
# about three times what it can serve, so its slots stay full and its excess is refused.
HAMMER = """\
import json, sys, threading, time
import httpx

url, model, clients, max_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
body = {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
stop = threading.Event()
lock = threading.Lock()
counts = {}

def client():
    with httpx.Client(base_url=url, timeout=15.0) as http:
        while not stop.is_set():
            r = http.post(f"/v2/models/{model}/infer", json=body)
            value = r.headers.get("retry-after", "")
            ok = value.isdigit() and int(value) >= 1
            key = str(r.status_code) + ("" if r.status_code != 503 or ok else " no Retry-After")
            with lock:
                counts[key] = counts.get(key, 0) + 1
            if r.status_code == 503 and ok:
                stop.wait(int(value))

threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
for t in threads:
    t.start()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
stop.wait(max_s)
stop.set()
for t in threads:
    t.join(20.0)
print(json.dumps(counts))
"""


def b_latencies(url: str) -> list[float]:
    """B's latencies over `B_SAMPLES` calls, one after another on one connection."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
        for i in range(20):  # warm up: connection, code paths
            assert http.post("/v2/models/b/infer", json=body(i)).status_code == 200
        for i in range(B_SAMPLES):
            began = time.perf_counter()
            response = http.post("/v2/models/b/infer", json=body(i))
            latencies.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
    return latencies


def wait_saturated(gateway: GatewayProcess) -> None:
    """Until A's bulkhead has every slot taken and calls queued."""
    target = frozenset({("target", "a:1")})
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while True:
        metrics = samples(gateway)
        in_flight = metrics.get(("seawall_bulkhead_in_flight", target))
        waiting = metrics.get(("seawall_bulkhead_waiting", target))
        if in_flight == 4 and waiting:
            return
        assert time.monotonic() < deadline, (
            f"A not saturated: {in_flight} running, {waiting} queued"
        )
        time.sleep(0.02)


def a_served(gateway: GatewayProcess) -> float:
    return sample(gateway, "seawall_requests_total", model="a", version="1", status="200") or 0.0


def test_saturated_model_leaves_the_other_models_p99_within_one_and_a_half_times(
    tmp_path: Path, launch: Launch, record_property: Callable[[str, object], None]
) -> None:
    gateway = launch(write_config(tmp_path, BULKHEADS))
    unloaded = b_latencies(gateway.url)

    hammer = subprocess.Popen(
        [sys.executable, "-c", HAMMER, gateway.url, "a", str(HAMMER_CLIENTS), "60"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_saturated(gateway)
        served, began = a_served(gateway), time.monotonic()
        loaded = b_latencies(gateway.url)
        a_per_s = (a_served(gateway) - served) / (time.monotonic() - began)
        wait_saturated(gateway)  # still saturated after the measurement
        out, err = hammer.communicate("", timeout=30.0)
    finally:
        hammer.kill()
        hammer.wait(timeout=10.0)
    assert hammer.returncode == 0, err
    counts: dict[str, int] = json.loads(out)

    # A was saturated all along: served at its capacity, its excess refused with Retry-After.
    assert set(counts) == {"200", "503"}, counts
    assert counts["503"] > counts["200"]
    assert a_per_s >= 0.8 * A_CAPACITY_PER_S
    unloaded_p99, loaded_p99 = p99(unloaded), p99(loaded)
    report(
        record_property,
        b_unloaded_p99_ms=round(unloaded_p99, 2),
        b_loaded_p99_ms=round(loaded_p99, 2),
        b_p99_ratio=round(loaded_p99 / unloaded_p99, 3),
        a_served_per_s=round(a_per_s, 1),
        a_answers=json.dumps(counts, sort_keys=True),
    )
    assert loaded_p99 <= 1.5 * unloaded_p99


# -- failing primary with a fallback -----------------------------------------------------------

FALLBACK = """\
models:
  - name: primary
    backend: {kind: mock, error_rate: 1.0, seed: 1}
    policies:
      fallback: {chain: [{model: backup}]}
  - name: backup
    backend: {kind: mock}
  - name: guarded
    backend: {kind: mock, error_rate: 1.0, seed: 2}
    policies:
      fallback:
        chain: [{static: [{name: output-0, datatype: FP32, data: [[0.25, 0.75]]}]}]
"""
FALLBACK_REQUESTS = 500


def test_failing_primary_is_answered_by_its_fallback_every_time(
    tmp_path: Path, launch: Launch
) -> None:
    gateway = launch(write_config(tmp_path, FALLBACK))

    by_model = send_all(gateway.url, "primary", FALLBACK_REQUESTS, clients=8)
    static = send_all(gateway.url, "guarded", FALLBACK_REQUESTS, clients=8)

    assert len(by_model) == len(static) == FALLBACK_REQUESTS
    for response in by_model:
        assert response.status_code == 200, response.text
        assert response.headers["x-seawall-served-by"] == "backup"
        assert response.headers["x-seawall-fallback"] == "unavailable"
        request = body(int(response.json()["id"].removeprefix("req-")))
        assert response.json()["outputs"][0]["data"] == request["inputs"][0]["data"]
    for response in static:
        assert response.status_code == 200, response.text
        assert response.headers["x-seawall-served-by"] == "static"
        assert response.headers["x-seawall-fallback"] == "unavailable"
        assert response.json()["outputs"] == [
            {"name": "output-0", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]}
        ]
    assert events(gateway, "FallbackUsed", "primary:1") == FALLBACK_REQUESTS
    assert events(gateway, "FallbackUsed", "guarded:1") == FALLBACK_REQUESTS


# -- rate limit accuracy, in memory ------------------------------------------------------------

RATE_PER_S, BURST, WINDOW_S = 50, 50, 10.0
#: What a token bucket lets through in the window: the full bucket, then the refill.
EXPECTED_ALLOWED = BURST + RATE_PER_S * WINDOW_S


def assert_rate_limit_headers(outcomes: list[Outcome]) -> None:
    """Every answer is 200 or 429; each carries x-ratelimit-*; each 429 a Retry-After."""
    for outcome in outcomes:
        assert outcome.status in (200, 429), outcome.text
        headers = outcome.headers
        assert headers["x-ratelimit-limit"] == str(BURST)
        assert 0 <= int(headers["x-ratelimit-remaining"]) <= BURST
        assert 0 <= int(headers["x-ratelimit-reset"]) <= math.ceil(BURST / RATE_PER_S)
        if outcome.status == 429:
            assert headers["x-ratelimit-remaining"] == "0"
            assert retry_after_s(headers) is not None, headers
            assert "rate limit of model" in json.loads(outcome.text)["error"]


def test_memory_rate_limit_allows_burst_plus_rate_times_window_within_five_percent(
    tmp_path: Path, launch: Launch, record_property: Callable[[str, object], None]
) -> None:
    config = f"""\
models:
  - name: m
    backend: {{kind: mock}}
    policies: {{ratelimit: {{rate_per_s: {RATE_PER_S}, burst: {BURST}}}}}
"""
    gateway = launch(write_config(tmp_path, config))

    outcomes = drive([gateway.url], "m", clients=4, duration_s=WINDOW_S, pause_s=0.01)

    assert_rate_limit_headers(outcomes)
    allowed = sum(1 for o in outcomes if o.status == 200)
    offered_per_s = len(outcomes) / WINDOW_S
    report(
        record_property,
        memory_allowed=allowed,
        memory_expected=EXPECTED_ALLOWED,
        memory_error_pct=round(100 * (allowed - EXPECTED_ALLOWED) / EXPECTED_ALLOWED, 2),
        memory_offered_per_s=round(offered_per_s),
    )
    assert offered_per_s > 3 * RATE_PER_S  # well above the limit all along
    assert abs(allowed - EXPECTED_ALLOWED) <= 0.05 * EXPECTED_ALLOWED
    assert (
        sample(gateway, "seawall_requests_total", model="m", version="1", status="200") == allowed
    )


# -- every rejection carries Retry-After; nothing is a 500 -------------------------------------

OVERLOAD = """\
admission: {max_in_flight: 4, max_queue: 4, target_queue_delay_ms: 20}
models:
  - name: m
    backend: {kind: mock, latency_ms: 20, error_rate: 0.3, seed: 3}
    policies:
      ratelimit: {rate_per_s: 250, burst: 30}
      bulkhead: {max_concurrent: 3, max_queue: 1, max_wait_ms: 5}
      circuit_breaker: {consecutive_failures: 3, open_s: 0.2, max_open_s: 0.4}
"""
OVERLOAD_CLIENTS = 64
PRIORITIES = ("critical", "normal", "batch")
#: How the admission gate's refusals start (the bulkhead's and breaker's name the model).
SHED_BY_ADMISSION = "'gateway' is overloaded"


def rejection_rates(outcomes: list[Outcome], shed_only: bool = False) -> dict[str, float]:
    """Per priority class: the share of calls refused (429 or 503), or shed by admission."""
    rates = {}
    for klass in PRIORITIES:
        mine = [o for o in outcomes if o.priority == klass]
        if shed_only:
            refused = [o for o in mine if o.status == 503 and SHED_BY_ADMISSION in o.text]
        else:
            refused = [o for o in mine if o.status in (429, 503)]
        rates[klass] = round(len(refused) / len(mine), 3)
    return rates


def test_mixed_overload_rejections_all_carry_retry_after_and_none_is_a_500(
    tmp_path: Path, launch: Launch, record_property: Callable[[str, object], None]
) -> None:
    gateway = launch(write_config(tmp_path, OVERLOAD))

    outcomes = drive(
        [gateway.url],
        "m",
        clients=OVERLOAD_CLIENTS,
        duration_s=4.0,
        priority=lambda client: PRIORITIES[client % len(PRIORITIES)],
    )

    statuses = Counter(o.status for o in outcomes)
    assert 500 not in statuses, statuses
    assert set(statuses) <= {200, 429, 503}, statuses
    for outcome in outcomes:
        if outcome.status in (429, 503):
            assert retry_after_s(outcome.headers) is not None, (outcome.status, outcome.text)
            assert json.loads(outcome.text)["error"]
    # Every kind of refusal happened, so the rule above was checked on each of them.
    for event in ("RateLimited", "BulkheadRejected", "CircuitRejected"):
        assert events(gateway, event, "m:1") > 0, event
    assert events(gateway, "CallShed", "gateway") > 0
    rates, shed = rejection_rates(outcomes), rejection_rates(outcomes, shed_only=True)
    report(
        record_property,
        overload_statuses=json.dumps(dict(sorted(statuses.items()))),
        overload_rejection_rates=json.dumps(rates),
        overload_shed_rates=json.dumps(shed),
    )
    assert rates["batch"] > rates["critical"]
    assert shed["batch"] > shed["normal"] > shed["critical"]
