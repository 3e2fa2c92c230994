"""Training-profile checks in a gateway: from a snapshot, a file, or each registry version's
own training snapshot; reject and flag; a profile that does not fit refuses the start or the
version. Real data guard snapshots on SQLite and PostgreSQL, the demo's iris model, ASGI."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from seawall.assemble import assemble
from seawall.backends.swap import VERSION_HEADER, SwappableBackend
from seawall.config import SeawallConfig, parse_config
from seawall.data import CsvSource, Ingestor, SnapshotStore, parse_contract
from seawall.errors import ConfigError
from seawall.gateway import Gateway
from seawall.gateway.metrics import GatewayMetrics
from seawall.policies import PolicyTelemetry
from seawall.registry import Registry, RegistryOptions, store_artifact
from seawall.store import AuditLog, BlobStore, Database

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CONTRACT = """
name: iris
version: 1
columns:
  sepal_length: {dtype: float}
  sepal_width: {dtype: float}
  petal_length: {dtype: float}
  petal_width: {dtype: float}
  species: {dtype: int}
"""
INSIDE = [5.1, 3.5, 1.4, 0.2]


def body(row: list[float]) -> dict[str, object]:
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": row}]}


@dataclass
class World:
    root: Path
    url: str
    database: Database
    blobs: BlobStore
    model: Path

    async def snapshot(self, frame: pd.DataFrame, contract: str = CONTRACT) -> str:
        path = self.root / f"batch-{len(list(self.root.glob('batch-*')))}.csv"
        frame.to_csv(path, index=False)
        result = await Ingestor(self.database, self.blobs).ingest(
            parse_contract(contract), CsvSource(path), actor="cli:test"
        )
        assert result.snapshot is not None
        return result.snapshot.id

    def config(self, model_yaml: str) -> SeawallConfig:
        text = f"""
database_url: {json.dumps(self.url)}
registry:
  artifact_store: {json.dumps(str(self.root / "artifacts"))}
  cache_dir: {json.dumps(str(self.root / "cache"))}
models:
{model_yaml}
"""
        return parse_config(text, base_dir=self.root)

    def fixed(self, training: str, profile: str = "{}") -> SeawallConfig:
        return self.config(
            f"""  - name: iris
    backend: {{kind: sklearn, path: {json.dumps(str(self.model))}}}
    training: {training}
    validation:
      profile: {profile}
"""
        )


def iris(scale: float = 1.0) -> pd.DataFrame:
    data = load_iris(as_frame=True)
    frame = data.data.copy()
    frame.columns = FEATURES
    frame[FEATURES] = frame[FEATURES] * scale
    frame["species"] = data.target
    return frame


@pytest.fixture
def world(database_url: str, migrated: Database, tmp_path: Path, demo_dir: Path) -> World:
    model = tmp_path / "iris.joblib"
    shutil.copy(demo_dir / "iris.joblib", model)
    return World(tmp_path, database_url, migrated, BlobStore(tmp_path / "artifacts"), model)


@contextlib.asynccontextmanager
async def served(config: SeawallConfig) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    metrics = GatewayMetrics()  # as `seawall serve` wires them: policy events are counted
    telemetry = PolicyTelemetry(metrics.registry)
    gateway = Gateway(assemble(config, on_event=telemetry), config.server, metrics=metrics)
    await gateway.startup()
    try:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield gateway, client
    finally:
        await gateway.shutdown()


async def test_a_snapshot_profile_rejects_values_outside_training(world: World) -> None:
    snapshot = await world.snapshot(iris())
    features = json.dumps(FEATURES)
    config = world.fixed(f"{{snapshot: {snapshot[:10]}, features: {features}}}")
    async with served(config) as (_, client):
        ok = await client.post("/v2/models/iris/infer", json=body(INSIDE))
        assert ok.status_code == 200, ok.text
        refused = await client.post("/v2/models/iris/infer", json=body([5.1, 3.5, 99.0, 0.2]))
        assert refused.status_code == 400
        error = refused.json()
        assert error["error"].startswith("inputs[0].data[0][2]: feature 'petal_length'")
        assert "'petal_length' = 99.0 is above the training maximum 6.9" in error["error"]
        assert f"snapshot {snapshot[:12]}" in error["error"]


async def test_flag_mode_serves_and_counts(world: World) -> None:
    snapshot = await world.snapshot(iris())
    features = json.dumps(FEATURES)
    config = world.fixed(f"{{snapshot: {snapshot}, features: {features}}}", "{mode: flag}")
    async with served(config) as (_, client):
        for _ in range(3):
            flagged = await client.post("/v2/models/iris/infer", json=body([0.1, 3.5, 1.4, 0.2]))
            assert flagged.status_code == 200
        metrics = (await client.get("/metrics")).text
    line = (
        'seawall_input_out_of_profile_total{action="flagged",feature="sepal_length",'
        'rule="below_min",target="iris:1",version="1"} 3.0'
    )
    assert line in metrics


async def test_a_profile_file_needs_no_database(world: World, tmp_path: Path) -> None:
    snapshot = await world.snapshot(iris())
    record = await SnapshotStore(world.database, world.blobs).get(snapshot)
    path = tmp_path / "iris-profile.json"
    path.write_text(json.dumps(record.to_json()))  # as `seawall data show --json` prints it
    text = f"""
models:
  - name: iris
    backend: {{kind: sklearn, path: {json.dumps(str(world.model))}}}
    training: {{file: iris-profile.json, features: {json.dumps(FEATURES)}}}
    validation:
      profile: {{margin: 0.5}}
"""
    config = parse_config(text, base_dir=tmp_path)
    async with served(config) as (gateway, client):
        assert gateway.assembly.shared is not None
        assert gateway.assembly.shared.control is None
        # petal_length 1.0..6.9, range 5.9: a margin of 0.5 accepts up to 9.85.
        ok = await client.post("/v2/models/iris/infer", json=body([5.1, 3.5, 9.8, 0.2]))
        assert ok.status_code == 200
        refused = await client.post("/v2/models/iris/infer", json=body([5.1, 3.5, 9.9, 0.2]))
        assert refused.status_code == 400


async def test_a_profile_that_does_not_fit_the_model_fails_the_start(world: World) -> None:
    snapshot = await world.snapshot(iris())
    gateway = Gateway(assemble(world.fixed(f"{{snapshot: {snapshot}}}")), None)
    with pytest.raises(ConfigError) as caught:
        await gateway.startup()
    await gateway.shutdown()
    message = str(caught.value)
    assert "models[0].training" in message
    assert "takes 4 columns, the features are 5" in message
    assert "set `features`" in message


async def test_an_unknown_snapshot_fails_the_start(world: World) -> None:
    gateway = Gateway(assemble(world.fixed("{snapshot: abcdef123456}")), None)
    with pytest.raises(ConfigError, match=r"models\[0\]\.training\.snapshot"):
        await gateway.startup()
    await gateway.shutdown()


def test_config_needs_a_profile_source_outside_the_registry(world: World) -> None:
    with pytest.raises(ConfigError, match=r"need `training.snapshot` or `training.file`"):
        world.fixed("null", "{mode: flag}")
    with pytest.raises(ConfigError, match="not both"):
        world.fixed("{snapshot: abcdef, file: x.json}")


async def test_registry_versions_bring_their_own_training_profile(world: World) -> None:
    registry = Registry(world.database, blobs=world.blobs, options=RegistryOptions())
    wide, narrow = await world.snapshot(iris(2.0)), await world.snapshot(iris())
    misfit = await world.snapshot(
        pd.DataFrame({"a": [1.0, 2.0]}), "name: other\nversion: 1\ncolumns: {a: {dtype: float}}"
    )

    async def publish(snapshot: str) -> int:
        versions = await registry.list_versions("iris") if await registry.list_models() else []
        number = len(versions) + 1
        artifact = store_artifact(world.blobs, world.model, name="iris", version=number)
        record = await registry.register_version(
            "iris", artifact, actor="cli:dana", framework="sklearn", dataset_snapshot=snapshot
        )
        await registry.set_alias("iris", "live", record.version, actor="cli:dana")
        return record.version

    await publish(wide)
    features = json.dumps(FEATURES)
    config = world.config(
        f"""  - name: iris
    backend: {{kind: registry, uri: "models:/iris@live"}}
    training: {{features: {features}}}
    validation:
      profile: {{}}
"""
    )
    big = body([10.0, 7.0, 9.0, 0.4])  # inside the doubled data's ranges, not the original's
    async with served(config) as (gateway, client):
        backend = gateway.assembly.repository.get("iris", "1").backend
        assert isinstance(backend, SwappableBackend)
        assert (await client.post("/v2/models/iris/infer", json=big)).status_code == 200
        await publish(narrow)
        assert await backend.refresh()
        refused = await client.post("/v2/models/iris/infer", json=big)
        assert refused.status_code == 400
        assert f"snapshot {narrow[:12]}" in refused.json()["error"]
        await publish(misfit)
        assert not await backend.refresh()  # refused: its profile does not fit the inputs
        ok = await client.post("/v2/models/iris/infer", json=body(INSIDE))
        assert ok.headers[VERSION_HEADER] == "2"
    refusals = [
        r
        for r in await AuditLog(world.database).records(limit=100)
        if r.action == "artifact.refuse"
    ]
    assert len(refusals) == 1
    assert refusals[0].target == "models:/iris/3"
    assert "models[0].training: snapshot" in str(refusals[0].details["reason"])
    assert "features not in the profile" in str(refusals[0].details["reason"])
