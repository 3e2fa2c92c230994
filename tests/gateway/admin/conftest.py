"""Admin API fixtures: gateways in this process on a FakeClock (`database_url` is global)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from seawall.assemble import assemble
from seawall.clock import FakeClock
from seawall.config import parse_config
from seawall.gateway import Gateway

Serve = Callable[[str], Awaitable[tuple[Gateway, httpx.AsyncClient]]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def serve(clock: FakeClock, tmp_path: Path) -> AsyncIterator[Serve]:
    """Start a gateway for a config text; its client talks to it over ASGI. Stopped after."""
    async with AsyncExitStack() as stack:

        async def start(text: str) -> tuple[Gateway, httpx.AsyncClient]:
            config = parse_config(text, environ={}, base_dir=tmp_path)
            gateway = Gateway(assemble(config, clock=clock))
            await gateway.startup()
            stack.push_async_callback(gateway.shutdown)
            transport = httpx.ASGITransport(app=gateway)
            client = httpx.AsyncClient(transport=transport, base_url="http://gateway")
            await stack.enter_async_context(client)
            return gateway, client

        yield start
