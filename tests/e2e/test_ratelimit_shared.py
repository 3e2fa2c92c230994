"""One rate limit shared through Redis by two real gateway processes, accurate within 5%."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import redis

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch

pytestmark = pytest.mark.e2e

HTTP_TIMEOUT_S = 15.0
RATE_PER_S, BURST, WINDOW_S = 50, 50, 10.0
#: What one token bucket lets through in the window: the full bucket, then the refill.
EXPECTED_ALLOWED = BURST + RATE_PER_S * WINDOW_S
#: Client threads per gateway, each pausing between calls (together far above the limit).
CLIENTS_PER_GATEWAY, PAUSE_S = 2, 0.01
BODY = {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}


def shared_config(directory: Path, redis_url: str, model: str) -> Path:
    # A generous Redis timeout: the test is about the shared limit's accuracy, not about a
    # loaded machine's scheduling; and `deny`, so a Redis failure shows as a 503, never as a
    # silently per-replica limit.
    path = directory / "seawall.yaml"
    path.write_text(
        f"""\
ratelimit:
  storage: redis
  redis_url: {redis_url}
  redis_timeout_ms: 1000
  on_storage_error: deny
models:
  - name: {model}
    backend: {{kind: mock}}
    policies: {{ratelimit: {{rate_per_s: {RATE_PER_S}, burst: {BURST}}}}}
""",
        encoding="utf-8",
    )
    return path


def drive(gateways: list[GatewayProcess], model: str) -> list[list[httpx.Response]]:
    """Clients on every gateway calling `model` for `WINDOW_S`; the answers, per gateway."""
    clients = CLIENTS_PER_GATEWAY * len(gateways)
    start = threading.Barrier(clients + 1)

    def client(gateway: GatewayProcess) -> list[httpx.Response]:
        answers = []
        with gateway.client() as http:
            http.get("/v2/health/live")  # connect before the clock starts
            start.wait(timeout=HTTP_TIMEOUT_S)
            end = time.monotonic() + WINDOW_S
            while time.monotonic() < end:
                answers.append(http.post(f"/v2/models/{model}/infer", json=BODY))
                time.sleep(PAUSE_S)
        return answers

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [
            (i, pool.submit(client, g))
            for i, g in enumerate(gateways)
            for _ in range(CLIENTS_PER_GATEWAY)
        ]
        start.wait(timeout=HTTP_TIMEOUT_S)
        per_gateway: list[list[httpx.Response]] = [[] for _ in gateways]
        for i, future in futures:
            per_gateway[i].extend(future.result(timeout=WINDOW_S + 2 * HTTP_TIMEOUT_S))
        return per_gateway


def assert_answer(response: httpx.Response) -> None:
    """200 or 429, with x-ratelimit-* headers; a 429 with Retry-After too."""
    assert response.status_code in (200, 429), response.text
    headers = response.headers
    assert headers["x-ratelimit-limit"] == str(BURST)
    assert 0 <= int(headers["x-ratelimit-remaining"]) <= BURST
    assert 0 <= int(headers["x-ratelimit-reset"]) <= math.ceil(BURST / RATE_PER_S)
    if response.status_code == 429:
        retry_after = headers["retry-after"]
        assert retry_after.isdigit(), headers
        assert int(retry_after) >= 1
        assert headers["x-ratelimit-remaining"] == "0"
        assert "rate limit of model" in response.json()["error"]


def test_two_gateways_share_one_limit_within_five_percent(
    tmp_path: Path,
    launch: Launch,
    redis_url: str,
    redis_model: str,
    record_property: Callable[[str, object], None],
) -> None:
    config = shared_config(tmp_path, redis_url, redis_model)
    gateways = [launch(config), launch(config)]

    per_gateway = drive(gateways, redis_model)

    for answers in per_gateway:
        for response in answers:
            assert_answer(response)
    allowed = [sum(1 for r in answers if r.status_code == 200) for answers in per_gateway]
    offered_per_s = sum(len(answers) for answers in per_gateway) / WINDOW_S
    total = sum(allowed)
    for name, value in {
        "redis_allowed": total,
        "redis_allowed_per_gateway": allowed,
        "redis_expected": EXPECTED_ALLOWED,
        "redis_error_pct": round(100 * (total - EXPECTED_ALLOWED) / EXPECTED_ALLOWED, 2),
        "redis_offered_per_s": round(offered_per_s),
    }.items():
        record_property(name, value)
        print(f"{name}={value}", end=" ")
    assert offered_per_s > 3 * RATE_PER_S  # far above the limit all along
    assert all(a > 0 for a in allowed)  # both gateways served: they shared the one bucket
    assert abs(total - EXPECTED_ALLOWED) <= 0.05 * EXPECTED_ALLOWED
    for gateway in gateways:
        failed = gateway.metric(
            "seawall_policy_events_total", event="RateLimitStorageFailed", target=f"{redis_model}:1"
        )
        assert failed == 0.0
    # The bucket lived in Redis, under the model's key.
    client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        assert client.exists(f"seawall:rl:model:{redis_model}:1") == 1
    finally:
        client.close()
