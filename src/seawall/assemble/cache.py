"""The response cache of a model or an LLM group, from its `cache` settings.

Memory caches are one LRU per model version (or group), bounded by `max_entries` and
`max_bytes`. Redis caches of one assembly share one client per server (closed at shutdown) and
keep each model's entries under `seawall:cache:<model>:<version>:` (LLM groups:
`seawall:cache:llm:<group>:`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from seawall.assemble import options as build
from seawall.assemble.parts import Assembly
from seawall.backends import ServedModel
from seawall.clock import Clock
from seawall.config import SeawallConfig
from seawall.config.llm import LlmModelSettings
from seawall.config.policies import CacheSettings
from seawall.pipeline import EventSink
from seawall.policies.cache import CacheOptions, CachePolicy
from seawall.policies.cache_codec import InferenceCodec, LlmCodec
from seawall.policies.cache_store import (
    DEFAULT_PREFIX,
    CacheStore,
    MemoryCacheStore,
    RedisCacheStore,
)

__all__ = ["llm_cache", "model_cache"]


def model_cache(
    where: str,
    settings: CacheSettings | None,
    served: ServedModel,
    config: SeawallConfig,
    assembly: Assembly,
    clock: Clock,
    on_event: EventSink,
) -> list[Any]:
    """The cache policy of one model version (empty when `settings` is None)."""
    if settings is None:
        return []
    label = f"{served.name}:{served.version}"
    with build.at(where):
        policy = CachePolicy(
            InferenceCodec(),
            _options(settings),
            store=_store(settings, label, config, assembly, clock, on_event),
            generation=_generation_of(served),
            clock=clock,
            on_event=on_event,
            target=label,
        )
    assembly.caches[(served.name, served.version)] = policy
    return [policy]


def llm_cache(
    where: str,
    group: LlmModelSettings,
    config: SeawallConfig,
    assembly: Assembly,
    clock: Clock,
    on_event: EventSink,
) -> list[Any]:
    """The cache policy of one LLM group (empty when the group has no `cache` section)."""
    settings = group.policies.cache
    if settings is None:
        return []
    codec = LlmCodec(
        deterministic_only=settings.llm == "deterministic_only", scope=_fingerprint(group)
    )
    with build.at(where):
        store = _store(settings, f"llm:{group.name}", config, assembly, clock, on_event)
        policy: CachePolicy[Any, Any] = CachePolicy(
            codec,
            _options(settings),
            store=store,
            clock=clock,
            on_event=on_event,
            target=group.name,
        )
    assembly.caches[(group.name, "")] = policy
    return [policy]


def _options(settings: CacheSettings) -> CacheOptions:
    return CacheOptions(
        ttl_s=settings.ttl_s, max_entry_bytes=settings.max_entry_bytes, coalesce=settings.coalesce
    )


def _store(
    settings: CacheSettings,
    label: str,
    config: SeawallConfig,
    assembly: Assembly,
    clock: Clock,
    on_event: EventSink,
) -> CacheStore:
    if settings.storage == "memory":
        return MemoryCacheStore(settings.max_entries, settings.max_bytes, clock=clock)
    timeout_s = settings.redis_timeout_ms / 1000.0
    url = settings.redis_url or config.ratelimit.redis_url
    return RedisCacheStore(
        _client(assembly, url, timeout_s),
        prefix=f"{DEFAULT_PREFIX}{label}:",
        timeout_s=timeout_s,
        clock=clock,
        on_event=on_event,
        target=label,
    )


def _client(assembly: Assembly, url: str, timeout_s: float) -> aioredis.Redis:
    """One client (one connection pool) per server and timeout, closed with the assembly."""
    client: aioredis.Redis | None = assembly.cache_clients.get((url, timeout_s))
    if client is None:
        client = RedisCacheStore.client(url, timeout_s=timeout_s)
        assembly.cache_clients[(url, timeout_s)] = client
        assembly.closers.append(client.aclose)
    return client


def _generation_of(served: ServedModel) -> Callable[[], int]:
    def generation() -> int:
        return served.generation

    return generation


def _fingerprint(group: LlmModelSettings) -> bytes:
    """What answers the group: its deployments' providers and models (not names or weights)."""
    upstreams = sorted({(d.provider, d.model) for d in group.deployments})
    return hashlib.blake2b(orjson.dumps(upstreams), digest_size=16).digest()
