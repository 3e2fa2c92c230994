"""Drift monitors in a gateway: calls are sampled, each closed window is judged against the
training profile, the verdict is on /metrics and in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sklearn.datasets import load_iris

from seawall.assemble import assemble
from seawall.assemble.drift import drift_options
from seawall.clock import FakeClock
from seawall.config import DriftSettings, parse_config
from seawall.data.profile import profile
from seawall.gateway import Gateway
from seawall.gateway.metrics import GatewayMetrics
from seawall.monitor.reports import DriftReportStore
from seawall.store import Database

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_profile(path: Path) -> None:
    data = load_iris(as_frame=True)
    frame = data.data.copy()
    frame.columns = FEATURES
    frame["species"] = pd.array(data.target, dtype="Int64")
    dtypes = {**dict.fromkeys(FEATURES, "float"), "species": "int"}
    path.write_text(json.dumps({"profile": profile(frame, dtypes)}))


def test_drift_options_take_per_feature_overrides() -> None:
    settings = DriftSettings.model_validate(
        {"psi": 0.3, "features": {"a": {"js": 0.2}}, "exclude": ["b"], "min_samples": 50}
    )
    options = drift_options(settings)
    assert options.thresholds.psi == 0.3
    assert options.for_feature("a").js == 0.2
    assert options.for_feature("a").psi == 0.3
    assert options.exclude == frozenset({"b"})
    assert options.min_samples == 50


async def test_a_shifted_feature_is_reported_on_metrics_and_stored(
    database_url: str, migrated: Database, tmp_path: Path, demo_dir: Path
) -> None:
    shutil.copy(demo_dir / "iris.joblib", tmp_path / "iris.joblib")
    iris_profile(tmp_path / "iris.json")
    config = parse_config(
        f"""
database_url: {json.dumps(database_url)}
models:
  - name: iris
    backend: {{kind: sklearn, path: iris.joblib}}
    training: {{file: iris.json, features: {json.dumps(FEATURES)}, target: species}}
    drift: {{window_s: 60, sample_size: 500, min_samples: 50}}
""",
        base_dir=tmp_path,
    )
    clock = FakeClock(wall_start=datetime(2026, 11, 26, tzinfo=UTC).timestamp())
    metrics = GatewayMetrics()
    gateway = Gateway(assemble(config, clock=clock), config.server, metrics=metrics)
    await gateway.startup()
    rng = np.random.default_rng(4)
    try:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            for _ in range(200):  # petal length shifted far beyond training
                rows = np.column_stack(
                    [
                        rng.normal(5.8, 0.8, 2),
                        rng.normal(3.0, 0.4, 2),
                        rng.normal(9.0, 0.5, 2),
                        rng.normal(1.2, 0.7, 2),
                    ]
                )
                body = {
                    "inputs": [
                        {
                            "name": "input-0",
                            "datatype": "FP64",
                            "shape": [2, 4],
                            "data": rows.reshape(-1).tolist(),
                        }
                    ]
                }
                response = await client.post("/v2/models/iris/infer", json=body)
                assert response.status_code == 200
            monitor = gateway.assembly.monitors["iris:1"]
            clock.advance(60)
            (report,) = await monitor.analyse()
            text = (await client.get("/metrics")).text
    finally:
        await gateway.shutdown()
    assert report.drifting
    assert "petal_length" in report.drifted_features
    assert report.rows == 400
    assert 'seawall_model_drifting{model="iris",version="1"} 1.0' in text
    assert (
        'seawall_feature_drift{feature="petal_length",model="iris",stat="psi",version="1"}' in text
    )
    stored = await DriftReportStore(migrated).latest(model="iris:1")
    assert len(stored) == 1
    assert stored[0].drifting
    assert stored[0].reference.startswith("profile file")
