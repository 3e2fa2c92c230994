"""Fixtures for policy tests that need a real Redis (rate limits shared by replicas)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis


@pytest.fixture(scope="session")
def redis_url(redis_server: str) -> str:
    """The policy tests' Redis database (15); see `redis_server` for skipping and failing."""
    return f"{redis_server}/15"


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
