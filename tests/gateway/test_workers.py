"""`check_workers`: several workers only where limits stay shared (Redis)."""

from __future__ import annotations

import pytest

from seawall.config import parse_config
from seawall.errors import ConfigError
from seawall.gateway.workers import check_workers

MODEL = "models: [{name: m, backend: {kind: mock}}]\n"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("ratelimit: {global: {rate_per_s: 5, burst: 5}}\n", "ratelimit.global"),
        ("ratelimit: {per_key: {rate_per_s: 5, burst: 5}}\n", "ratelimit.per_key"),
        (
            'auth: {keys: [{name: a, key: "key-a-0123456789abcdef"}]}\n'
            "ratelimit: {keys: {a: {rate_per_s: 5, burst: 5}}}\n",
            "ratelimit.keys",
        ),
        (
            "policy_defaults: {ratelimit: {rate_per_s: 5, burst: 5}}\n",
            "a model's policies.ratelimit",
        ),
        (
            "llm: {models: [{name: g, tokens_per_minute: {per_key: 100}, deployments: "
            '[{name: d, base_url: "http://127.0.0.1:9/v1", model: x}]}]}\n',
            "an LLM group's ratelimit or tokens_per_minute",
        ),
        (
            "llm: {budgets: {default_usd: 1}, models: [{name: g, deployments: "
            '[{name: d, base_url: "http://127.0.0.1:9/v1", model: x}]}]}\n',
            "llm.budgets",
        ),
    ],
)
def test_in_memory_limits_with_several_workers_are_refused(text: str, named: str) -> None:
    config = parse_config(MODEL + text, environ={})
    check_workers(config, 1)  # one worker: in-memory limits are exact
    with pytest.raises(ConfigError) as info:
        check_workers(config, 3)
    message = str(info.value)
    assert message.startswith("server.workers: 3 workers with ratelimit.storage: memory")
    assert named in message
    assert "3x what is configured" in message


def test_redis_storage_or_no_limits_allow_workers() -> None:
    check_workers(parse_config(MODEL, environ={}), 8)
    shared = "ratelimit: {storage: redis, per_key: {rate_per_s: 5, burst: 5}}\n"
    check_workers(parse_config(MODEL + shared, environ={}), 8)


def test_the_worker_count_is_bounded_in_config() -> None:
    assert parse_config(MODEL + "server: {workers: 4}\n", environ={}).server.workers == 4
    with pytest.raises(ConfigError, match=r"server\.workers"):
        parse_config(MODEL + "server: {workers: 0}\n", environ={})
