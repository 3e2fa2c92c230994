"""Response caches from config: where they sit, what they share, and reloads that invalidate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seawall.assemble import Assembly, assemble
from seawall.clock import FakeClock
from seawall.config import parse_config
from seawall.context import CallContext
from seawall.policies.cache import CachePolicy
from seawall.policies.cache_codec import LlmCodec
from seawall.policies.cache_store import MemoryCacheStore, RedisCacheStore
from seawall.types import InferenceRequest, LlmKind, LlmRequest, Tensor

MODELS = """
models:
  - name: iris
    backend: {kind: mock}
    policies:
      cache: {ttl_s: 60, max_entries: 5, max_bytes: 100000, max_entry_bytes: 1000}
      fallback: {chain: [{static: [{name: output-0, data: [0]}]}]}
      retry: {attempts: 2}
  - name: other
    backend: {kind: mock}
"""


def request() -> InferenceRequest:
    return InferenceRequest("iris", [Tensor.from_numpy("input-0", np.ones((1, 2), np.float32))])


async def call(assembly: Assembly, name: str = "iris") -> CallContext:
    served = assembly.repository.get(name)
    ctx = CallContext.new()
    req = request()
    req.model, req.version = served.name, served.version  # as the OIP route addresses it
    await served.handler(req, ctx)
    return ctx


def test_the_cache_sits_after_validation_and_before_the_fallback() -> None:
    assembly = assemble(parse_config(MODELS, environ={}), clock=FakeClock())
    assert repr(assembly.repository.get("iris").handler) == (
        "Pipeline(iris:1: validation → cache → fallback → retry → timeout → mock:iris)"
    )
    assert repr(assembly.repository.get("other").handler) == (
        "Pipeline(other:1: validation → timeout → mock:other)"
    )
    policy = assembly.caches[("iris", "1")]
    assert (policy.options.ttl_s, policy.options.max_entry_bytes) == (60.0, 1000)
    assert isinstance(policy.store, MemoryCacheStore)
    assert (policy.store.max_entries, policy.store.max_bytes) == (5, 100_000)
    assert set(assembly.caches) == {("iris", "1")}


async def test_a_reload_of_the_model_invalidates_what_was_cached() -> None:
    assembly = assemble(parse_config(MODELS, environ={}), clock=FakeClock())
    await assembly.start()
    try:
        first, second = await call(assembly), await call(assembly)
        assert [c.annotations["cache"] for c in (first, second)] == ["miss", "hit"]

        await assembly.repository.load_all()  # reloaded: generation 2
        assert assembly.repository.get("iris").generation == 2
        after, again = await call(assembly), await call(assembly)
        assert [c.annotations["cache"] for c in (after, again)] == ["miss", "hit"]
    finally:
        await assembly.aclose()


def test_policy_defaults_give_every_model_its_own_cache() -> None:
    text = "policy_defaults: {cache: {ttl_s: 5}}\n" + MODELS
    assembly = assemble(parse_config(text, environ={}), clock=FakeClock())
    assert set(assembly.caches) == {("iris", "1"), ("other", "1")}
    iris, other = assembly.caches[("iris", "1")], assembly.caches[("other", "1")]
    assert iris.store is not other.store
    assert (iris.options.ttl_s, other.options.ttl_s) == (60.0, 5.0)


REDIS = """
ratelimit: {redis_url: "redis://limits.internal:6379/0"}
policy_defaults: {cache: {storage: redis, redis_timeout_ms: 20}}
models:
  - {name: a, backend: {kind: mock}}
  - {name: b, version: "2", backend: {kind: mock}}
  - {name: c, backend: {kind: mock}, policies: {cache: {storage: redis, redis_url: %s}}}
"""


async def test_redis_caches_share_one_client_per_server_closed_at_shutdown() -> None:
    text = REDIS % '"redis://cache.internal:6379/3"'
    assembly = assemble(parse_config(text, environ={}), clock=FakeClock())

    stores = {k: p.store for k, p in assembly.caches.items()}
    assert all(isinstance(s, RedisCacheStore) for s in stores.values())
    assert [s.prefix for s in stores.values()] == [  # type: ignore[attr-defined]
        "seawall:cache:a:1:",
        "seawall:cache:b:2:",
        "seawall:cache:c:1:",
    ]
    assert set(assembly.cache_clients) == {
        ("redis://limits.internal:6379/0", 0.02),  # ratelimit.redis_url by default
        ("redis://cache.internal:6379/3", 0.05),
    }
    clients = list(assembly.cache_clients.values())
    assert all(c.aclose in assembly.closers for c in clients)
    await assembly.aclose()  # nothing was connected: closing needs no server


LLM = """
auth: {keys: [{name: app, key: "app-secret-0123456789"}]}
ratelimit: {per_key: {rate_per_s: 10, burst: 10}}
admission: {max_in_flight: 4}
llm:
  models:
    - name: chat
      policies: {cache: {llm: %s}}
      tokens_per_minute: {per_key: 1000}
      deployments:
        - {name: primary, base_url: "http://127.0.0.1:9001/v1", model: %s}
    - name: plain
      deployments: [{name: only, base_url: "http://127.0.0.1:9002", model: small}]
"""


def _codec(text: str) -> LlmCodec:
    assembly = assemble(parse_config(text, environ={}), clock=FakeClock())
    policy = assembly.llm["chat"].policies[2]  # type: ignore[attr-defined]
    assert isinstance(policy, CachePolicy)
    assert assembly.caches[("chat", "")] is policy
    codec = policy._codec
    assert isinstance(codec, LlmCodec)
    return codec


def test_an_llm_cache_sits_after_the_rate_limit_and_before_tokens_and_admission() -> None:
    assembly = assemble(parse_config(LLM % ("always", "m"), environ={}), clock=FakeClock())
    assert repr(assembly.llm["chat"]) == (
        "Pipeline(chat: auth → ratelimit → cache → token_limit → admission → model_group)"
    )
    assert (
        repr(assembly.llm["plain"]) == "Pipeline(plain: auth → ratelimit → admission → model_group)"
    )


@pytest.mark.parametrize(
    ("mode", "deterministic_only"), [("deterministic_only", True), ("always", False)]
)
def test_the_llm_mode_is_passed_on(mode: str, deterministic_only: bool) -> None:
    assert _codec(LLM % (mode, "m")).deterministic_only is deterministic_only


def test_a_changed_upstream_model_changes_every_key_of_the_group() -> None:
    call = LlmRequest(LlmKind.CHAT, "chat", {"messages": [], "temperature": 0})
    old, new = _codec(LLM % ("always", "m-1")), _codec(LLM % ("always", "m-2"))
    same = _codec(LLM % ("always", "m-1"))
    assert old.key(call, 0) != new.key(call, 0)
    assert old.key(call, 0) == same.key(call, 0)


def test_cache_keys_of_files_in_another_directory_do_not_depend_on_it(tmp_path: Path) -> None:
    # The fingerprint is the upstream's identity, not the config file's place or the process.
    here = assemble(parse_config(LLM % ("always", "m"), environ={}), clock=FakeClock())
    there = assemble(parse_config(LLM % ("always", "m"), environ={}, base_dir=tmp_path))
    call = LlmRequest(LlmKind.CHAT, "chat", {"messages": []})
    keys = []
    for assembly in (here, there):
        policy = assembly.llm["chat"].policies[2]  # type: ignore[attr-defined]
        keys.append(policy._codec.key(call, 0))
    assert keys[0] == keys[1]
