"""`ConfigReloader` and `Gateway.reload`: a new config swapped in live, or refused with the reason.

Gateways run in this process over ASGI, started from real config files in a temporary
directory; the audited cases use a real SQLite database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from seawall.assemble import assemble
from seawall.config import load_config
from seawall.errors import ConfigError
from seawall.gateway import Gateway
from seawall.gateway.app import ReloadRefusedError
from seawall.gateway.reload import ConfigReloader
from seawall.store import AuditLog, Database

BODY = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
IRIS = {
    "inputs": [
        {"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}


def _config(*models: str, extra: str = "") -> str:
    lines = "\n".join(f"  - {m}" for m in models)
    return f"server: {{port: 8123, shutdown_grace_s: 5}}\n{extra}models:\n{lines}\n"


ECHO = "{name: echo, backend: {kind: mock}}"
SLOW = "{name: slow, backend: {kind: mock, latency_ms: 300}}"
OTHER = "{name: other, backend: {kind: mock}}"
IRIS_MODEL = "{name: iris, backend: {kind: sklearn, path: iris.joblib}}"


@contextlib.asynccontextmanager
async def _serving(path: Path) -> AsyncIterator[tuple[ConfigReloader, httpx.AsyncClient, Gateway]]:
    config = load_config(path, environ={})
    gateway = Gateway(assemble(config), config.server)
    await gateway.startup()
    reloader = ConfigReloader(gateway, path, config, environ={})
    try:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield reloader, client, gateway
    finally:
        await gateway.shutdown()


async def test_a_reload_adds_and_removes_models(tmp_path: Path) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text(_config(ECHO))
    async with _serving(path) as (reloader, client, _):
        assert (await client.post("/v2/models/echo/infer", json=BODY)).status_code == 200
        path.write_text(_config(OTHER))
        outcome = await reloader.reload(actor="test")
        assert (outcome.added, outcome.removed, outcome.kept) == (("other:1",), ("echo:1",), ())
        assert (await client.post("/v2/models/other/infer", json=BODY)).status_code == 200
        assert (await client.post("/v2/models/echo/infer", json=BODY)).status_code == 404
        ready = await client.get("/v2/health/ready")
        assert ready.status_code == 200
        assert reloader.config.models[0].name == "other"


async def test_requests_in_flight_finish_on_the_old_models(tmp_path: Path) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text(_config(SLOW))
    async with _serving(path) as (reloader, client, gateway):
        old = gateway.assembly
        call = asyncio.create_task(client.post("/v2/models/slow/infer", json=BODY))
        await asyncio.sleep(0.05)  # the call is inside the old model now
        path.write_text(_config(SLOW, OTHER))
        outcome = await reloader.reload()
        assert outcome.abandoned == 0
        response = await call
        assert response.status_code == 200
        assert gateway.assembly is not old
        assert all(m.state.value == "UNLOADED" for m in old.repository)  # closed once idle


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [", "problem|YAML|yaml"),
        (_config("{name: echo, backend: {kind: tf}}"), "unknown backend kind"),
        (_config(ECHO).replace("8123", "9000"), "server.port: cannot change without a restart"),
    ],
)
async def test_a_bad_file_changes_nothing(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text(_config(ECHO))
    async with _serving(path) as (reloader, client, gateway):
        before = gateway.assembly
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            await reloader.reload()
        assert gateway.assembly is before
        assert (await client.post("/v2/models/echo/infer", json=BODY)).status_code == 200


async def test_a_reload_that_would_break_a_serving_model_is_refused(
    tmp_path: Path, demo_dir: Path
) -> None:
    shutil.copy(demo_dir / "iris.joblib", tmp_path / "iris.joblib")
    path = tmp_path / "seawall.yaml"
    path.write_text(_config(IRIS_MODEL))
    async with _serving(path) as (reloader, client, gateway):
        before = gateway.assembly
        (tmp_path / "iris.joblib").write_bytes(b"not a model")
        path.write_text(_config(IRIS_MODEL, ECHO))
        with pytest.raises(ReloadRefusedError, match="iris:1"):
            await reloader.reload()
        assert gateway.assembly is before
        response = await client.post("/v2/models/iris/infer", json=IRIS)
        assert response.status_code == 200  # the model loaded before still serves


async def test_every_reload_is_audited_with_the_files_digest(tmp_path: Path) -> None:
    database = tmp_path / "seawall.db"
    extra = f"database_url: sqlite:///{database}\n"
    path = tmp_path / "seawall.yaml"
    path.write_text(_config(ECHO, extra=extra))
    async with _serving(path) as (reloader, _, _gateway):
        path.write_text(_config(ECHO, OTHER, extra=extra))
        await reloader.reload(actor="cli:ops")
        applied_digest = hashlib.sha256(path.read_bytes()).hexdigest()
        path.write_text(_config(ECHO, extra=extra).replace("8123", "9000"))
        with pytest.raises(ConfigError):
            await reloader.reload(actor="cli:ops")
    db = Database(f"sqlite:///{database}")
    try:
        records = [r for r in await AuditLog(db).records() if r.action == "config.reload"]
    finally:
        db.close()
    assert [(r.actor, r.target, r.details["outcome"]) for r in records] == [
        ("cli:ops", str(path), "applied"),
        ("cli:ops", str(path), "refused"),
    ]
    assert records[0].details["sha256"] == applied_digest
    assert records[0].details["added"] == ["other:1"]
    assert "server.port" in str(records[1].details["reason"])


async def test_a_drain_that_runs_out_of_time_reports_what_it_abandoned(tmp_path: Path) -> None:
    path = tmp_path / "seawall.yaml"
    path.write_text(_config(SLOW))
    async with _serving(path) as (_, client, gateway):
        call = asyncio.create_task(client.post("/v2/models/slow/infer", json=BODY))
        await asyncio.sleep(0.05)
        config = load_config(path, environ={})
        outcome = await gateway.reload(assemble(config), drain_timeout_s=0.01)
        assert outcome.abandoned == 1
        await call  # whatever it got, the gateway itself keeps serving
        response = await client.post("/v2/models/slow/infer", json=BODY)
        assert response.status_code == 200
