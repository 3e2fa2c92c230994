"""Registry models (`kind: registry`) in a gateway: served by alias, swapped, verified, audited.

Real registry on SQLite and PostgreSQL, a real artifact store in a temporary directory, real
signing keys and the demo's scikit-learn model; the gateway runs in this process over ASGI.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from seawall.assemble import assemble
from seawall.backends.swap import VERSION_HEADER, SwappableBackend
from seawall.config import SeawallConfig, parse_config
from seawall.gateway import Gateway
from seawall.registry import Registry, RegistryOptions, store_artifact
from seawall.security import generate_signing_key, load_private_key
from seawall.store import AuditLog, BlobStore, Database

DEPLOYER, APPROVER = "cli:dana", "cli:bob"
BODY = {
    "inputs": [
        {"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}


@dataclass
class World:
    root: Path
    url: str
    database: Database
    blobs: BlobStore
    registry: Registry
    key: Path
    public: Path
    model: Path

    async def publish(self, *, signed: bool = True, key: Path | None = None) -> int:
        """Register the demo model as a new version, approve it, make it champion."""
        latest = (await self.registry.list_versions("iris")) if await self._exists() else []
        version = (latest[0].version + 1) if latest else 1
        private = load_private_key(key or self.key) if signed else None
        artifact = store_artifact(
            self.blobs, self.model, name="iris", version=version, signing_key=private
        )
        record = await self.registry.register_version(
            "iris", artifact, actor=DEPLOYER, framework="sklearn", version=version
        )
        await self.registry.transition("iris", record.version, "staging", actor=DEPLOYER)
        await self.registry.approve("iris", record.version, actor=APPROVER)
        await self.registry.transition(
            "iris", record.version, "production", actor=DEPLOYER, alias="champion"
        )
        return record.version

    async def _exists(self) -> bool:
        return any(m.name == "iris" for m in await self.registry.list_models())

    def config(self, *, require_signed: bool = True, trusted: Path | None = None) -> SeawallConfig:
        text = f"""
database_url: {json.dumps(self.url)}
registry:
  artifact_store: {json.dumps(str(self.root / "artifacts"))}
  cache_dir: {json.dumps(str(self.root / "cache"))}
  deployment_target: gw-test
security:
  trusted_keys: [{json.dumps(str(trusted or self.public))}]
  require_signed: {str(require_signed).lower()}
models:
  - name: iris
    version: champion
    backend: {{kind: registry, uri: "models:/iris@champion"}}
"""
        return parse_config(text, base_dir=self.root)


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path, demo_dir: Path) -> Iterator[World]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'seawall.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database(url)
    database.upgrade()
    blobs = BlobStore(tmp_path / "artifacts")
    registry = Registry(database, blobs=blobs, options=RegistryOptions())
    key, public = tmp_path / "signing.pem", tmp_path / "signing.pub"
    generate_signing_key(key, public)
    model = tmp_path / "iris.joblib"
    shutil.copy(demo_dir / "iris.joblib", model)
    try:
        yield World(tmp_path, url, database, blobs, registry, key, public, model)
    finally:
        database.close()


@contextlib.asynccontextmanager
async def _gateway(config: SeawallConfig) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    gateway = Gateway(assemble(config), config.server)
    await gateway.startup()
    try:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield gateway, client
    finally:
        await gateway.shutdown()


def _tamper(blob: Path) -> None:
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"tampered")


def _backend(gateway: Gateway) -> SwappableBackend:
    backend = gateway.assembly.repository.get("iris", "champion").backend
    assert isinstance(backend, SwappableBackend)
    return backend


async def _infer(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/v2/models/iris/versions/champion/infer", json=BODY)


async def _actions(world: World) -> list[tuple[str, str, dict[str, object]]]:
    records = await AuditLog(world.database).records(limit=1000)
    return [(r.action, r.target, r.details) for r in records]


async def test_the_champion_is_served_and_a_promotion_swaps_it(world: World) -> None:
    await world.publish()
    async with _gateway(world.config()) as (gateway, client):
        response = await _infer(client)
        assert response.status_code == 200, response.text
        assert response.headers[VERSION_HEADER] == "1"
        await world.publish()
        assert await _backend(gateway).refresh()
        response = await _infer(client)
        assert response.status_code == 200
        assert response.headers[VERSION_HEADER] == "2"
    serves = [(t, d["from"], d["to"]) for a, t, d in await _actions(world) if a == "model.serve"]
    assert serves == [("model:iris/1", None, "1"), ("model:iris/2", "1", "2")]
    deployments = await world.registry.deployments("iris", target="gw-test")
    assert [(d.version, d.traffic_share, d.ended_at is None) for d in deployments] == [
        (2, 1.0, True),
        (1, 1.0, False),
    ]


async def test_an_unsigned_version_is_refused_and_audited(world: World) -> None:
    await world.publish(signed=False)
    async with _gateway(world.config()) as (_, client):
        response = await _infer(client)
        assert response.status_code == 503
        assert "registered unsigned" in response.json()["error"]
        ready = await client.get("/v2/models/iris/versions/champion/ready")
        assert ready.status_code != 200
    refused = [(t, d) for a, t, d in await _actions(world) if a == "artifact.refuse"]
    assert len(refused) == 1
    assert refused[0][0] == "models:/iris/1"
    assert refused[0][1]["failure"] == "unsigned"


async def test_an_untrusted_key_is_refused(world: World) -> None:
    other, other_public = world.root / "other.pem", world.root / "other.pub"
    generate_signing_key(other, other_public)
    await world.publish(key=other)
    async with _gateway(world.config()) as (_, client):
        response = await _infer(client)
        assert response.status_code == 503
        assert "untrusted" in response.json()["error"]


async def test_a_tampered_blob_never_replaces_the_serving_version(world: World) -> None:
    await world.publish()
    async with _gateway(world.config()) as (gateway, client):
        version = await world.publish()
        record = await world.registry.get_version("iris", version)
        digest = record.artifact.files["iris.joblib"]
        _tamper(Path(world.blobs.uri(digest)))
        assert not await _backend(gateway).refresh()
        response = await _infer(client)
        assert response.status_code == 200
        assert response.headers[VERSION_HEADER] == "1"
    refused = [d for a, _, d in await _actions(world) if a == "artifact.refuse"]
    assert len(refused) == 1
    assert "no longer matches its digest" in str(refused[0]["reason"])


async def test_unsigned_versions_load_when_signatures_are_not_required(world: World) -> None:
    await world.publish(signed=False)
    async with _gateway(world.config(require_signed=False)) as (_, client):
        response = await _infer(client)
        assert response.status_code == 200
        assert response.headers[VERSION_HEADER] == "1"


async def test_a_champion_named_later_is_picked_up(world: World) -> None:
    async with _gateway(world.config()) as (gateway, client):
        response = await _infer(client)
        assert response.status_code == 503
        assert "not registered" in response.json()["error"]
        await world.publish()
        assert await _backend(gateway).refresh()
        response = await _infer(client)
        assert response.status_code == 200
        assert response.headers[VERSION_HEADER] == "1"
