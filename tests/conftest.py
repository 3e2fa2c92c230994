"""Fixtures shared by the whole suite: demo models (trained once), gateways, clients."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from seawall.assemble import assemble
from seawall.cli.demo import write_demo
from seawall.config import SeawallConfig, load_config
from seawall.gateway import Gateway
from seawall.store import Database

#: True on CI: tests that need PostgreSQL or Redis fail instead of skipping when they are missing.
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


#: The Redis the tests use; each suite picks its database (policies: 15, gateways: 0).
REDIS_SERVER = os.environ.get("SEAWALL_TEST_REDIS", "redis://127.0.0.1:6379")


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The test Redis (`redis://host:port`, no database); skips when it is down, fails on CI."""
    client = redis.Redis.from_url(REDIS_SERVER, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        reason = f"Redis is not reachable at {REDIS_SERVER}: {exc}"
        if ON_CI:
            pytest.fail(f"{reason} (CI must run the Redis tests)")
        pytest.skip(reason)
    finally:
        client.close()
    return REDIS_SERVER


#: The PostgreSQL the tests use (trust auth); each test gets a schema of its own in it.
POSTGRES_SERVER = os.environ.get(
    "SEAWALL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema, dropped after the test.

    Unique per test, so concurrent runs and tests never see each other's tables. Skips when
    PostgreSQL is down; fails on CI.
    """
    schema = f"seawall_test_{uuid.uuid4().hex[:16]}"
    statement = sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema))
    try:
        with psycopg.connect(POSTGRES_SERVER, connect_timeout=2, autocommit=True) as conn:
            conn.execute(statement)
    except psycopg.Error as exc:
        reason = f"PostgreSQL is not reachable at {POSTGRES_SERVER}: {exc}"
        if ON_CI:
            pytest.fail(f"{reason} (CI must run the PostgreSQL tests)")
        pytest.skip(reason)
    url = make_url(POSTGRES_SERVER).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    drop = sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema))
    with psycopg.connect(POSTGRES_SERVER, connect_timeout=2, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(drop)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: an SQLite file, or a fresh PostgreSQL schema.

    Database features are tested on both: a test that takes this fixture runs twice.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'seawall.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """An empty, unmigrated database, closed after the test."""
    db = Database(database_url)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def migrated(database: Database) -> Database:
    """The database, migrated to the newest revision."""
    database.upgrade()
    return database


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
