"""Fixtures shared by the whole suite: demo models (trained once), gateways, clients."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from seawall.assemble import assemble
from seawall.cli.demo import write_demo
from seawall.config import SeawallConfig, load_config
from seawall.gateway import Gateway

#: True on CI: tests that need PostgreSQL or Redis fail instead of skipping when they are missing.
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo models and config, written once per test session by `seawall demo`."""
    directory = tmp_path_factory.mktemp("demo")
    write_demo(directory)
    return directory


@pytest.fixture(scope="session")
def demo_config(demo_dir: Path) -> SeawallConfig:
    return load_config(demo_dir / "seawall.yaml", environ={})


@pytest.fixture
async def demo_gateway(demo_config: SeawallConfig) -> AsyncIterator[Gateway]:
    """A started gateway serving the demo models in this process."""
    gateway = Gateway(assemble(demo_config), demo_config.server)
    await gateway.startup()
    try:
        yield gateway
    finally:
        await gateway.shutdown()


@pytest.fixture
async def client(demo_gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to `demo_gateway` over ASGI (no sockets)."""
    transport = httpx.ASGITransport(app=demo_gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http
