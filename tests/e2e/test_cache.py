"""The response cache on real `seawall serve` processes: hits, Cache-Control, Redis shared and down.

The model answers random numbers, so identical outputs can only come from the cache.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch

pytestmark = pytest.mark.e2e

RANDOM_MODEL = """\
import numpy as np


def predict(inputs):
    return {"output-0": np.random.default_rng().random(inputs["input-0"].shape)}
"""

CONFIG = """\
models:
  - name: {model}
    backend:
      kind: python
      target: random_model:predict
      search_path: .
      inputs: [{{name: input-0, datatype: FP64, shape: [-1, 2]}}]
      outputs: [{{name: output-0, datatype: FP64, shape: [-1, 2]}}]
    policies: {{cache: {cache}}}
"""

BODY = {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}


def write_config(directory: Path, model: str, cache: str) -> Path:
    (directory / "random_model.py").write_text(RANDOM_MODEL, encoding="utf-8")
    path = directory / "seawall.yaml"
    path.write_text(CONFIG.format(model=model, cache=cache), encoding="utf-8")
    return path


def infer(
    gateway: GatewayProcess, model: str, rid: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    with gateway.client() as http:
        response = http.post(
            f"/v2/models/{model}/infer", json={**BODY, "id": rid}, headers=headers or {}
        )
    assert response.status_code == 200, response.text
    return response


def outputs(response: httpx.Response) -> Any:
    return response.json()["outputs"][0]["data"]


def test_a_repeat_is_a_hit_with_identical_outputs_and_no_cache_gets_a_fresh_answer(
    tmp_path: Path, launch: Launch
) -> None:
    gateway = launch(write_config(tmp_path, "rand", "{ttl_s: 60}"))

    first = infer(gateway, "rand", "one")
    second = infer(gateway, "rand", "two")
    fresh = infer(gateway, "rand", "three", {"Cache-Control": "no-cache"})
    after = infer(gateway, "rand", "four")
    private = infer(gateway, "rand", "five", {"Cache-Control": "no-store"})

    results = [r.headers["x-seawall-cache"] for r in (first, second, fresh, after, private)]
    assert results == ["miss", "hit", "bypass", "hit", "bypass"]
    assert outputs(second) == outputs(first)
    assert second.json()["id"] == "two"
    assert outputs(fresh) != outputs(first)  # the model was called again...
    assert outputs(after) == outputs(fresh)  # ... and its answer replaced the cached one
    assert outputs(private) not in (outputs(first), outputs(fresh))
    counts = {
        result: gateway.metric(
            "seawall_cache_requests_total", model="rand", version="1", result=result
        )
        for result in ("hit", "miss", "bypass")
    }
    assert counts == {"hit": 2.0, "miss": 1.0, "bypass": 2.0}
    assert gateway.metric("seawall_cache_entries", model="rand", version="1") == 1.0


@pytest.fixture
def cache_model(redis_url: str) -> Iterator[str]:
    """A model name of this test's own; its cache keys in Redis are deleted afterwards."""
    name = f"c-{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        try:
            keys = list(client.scan_iter(match=f"seawall:cache:{name}:*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def test_two_gateways_sharing_redis_see_each_others_entries(
    tmp_path: Path, launch: Launch, redis_url: str, cache_model: str
) -> None:
    # A generous timeout: this is about sharing, not about a loaded machine's scheduling.
    cache = f'{{storage: redis, redis_url: "{redis_url}", redis_timeout_ms: 2000, ttl_s: 60}}'
    config = write_config(tmp_path, cache_model, cache)
    one, other = launch(config), launch(config)

    stored = infer(one, cache_model, "a")
    shared = infer(other, cache_model, "b")
    back = infer(one, cache_model, "c")

    assert [r.headers["x-seawall-cache"] for r in (stored, shared, back)] == [
        "miss",
        "hit",
        "hit",
    ]
    assert outputs(shared) == outputs(back) == outputs(stored)
    client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        keys = list(client.scan_iter(match=f"seawall:cache:{cache_model}:1:*"))
        assert len(keys) == 1
        assert 55_000 < client.pttl(keys[0]) <= 60_000
    finally:
        client.close()
    for gateway in (one, other):
        failures = gateway.metric(
            "seawall_policy_events_total", event="CacheStoreFailed", target=f"{cache_model}:1"
        )
        assert failures == 0.0


def test_a_dead_redis_makes_misses_never_failed_requests(tmp_path: Path, launch: Launch) -> None:
    cache = '{storage: redis, redis_url: "redis://127.0.0.1:1/0"}'  # nothing listens on port 1
    gateway = launch(write_config(tmp_path, "rand", cache))

    answers = [infer(gateway, "rand", f"r{i}") for i in range(3)]

    assert [r.headers["x-seawall-cache"] for r in answers] == ["miss"] * 3
    assert len({str(outputs(r)) for r in answers}) == 3  # each one from the model
    failed = gateway.metric(
        "seawall_policy_events_total", event="CacheStoreFailed", target="rand:1"
    )
    assert failed >= 1.0
    assert "shared response cache failed" in gateway.log()
