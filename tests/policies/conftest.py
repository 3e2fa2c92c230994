"""Fixtures for policy tests that need a real Redis (rate limits shared by replicas)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

#: The Redis the tests use (database 15, keys under a prefix unique to each test).
REDIS_URL = os.environ.get("SEAWALL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis's URL; skips the test when Redis is down, but fails it on CI."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        reason = f"Redis is not reachable at {REDIS_URL}: {exc}"
        if _on_ci():
            pytest.fail(f"{reason} (CI must run the Redis tests)")
        pytest.skip(reason)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the test database, closed after the test."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own (`seawall:rl:test:<random>:`); its keys are deleted after."""
    prefix = f"seawall:rl:test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis_client.delete(*keys)
