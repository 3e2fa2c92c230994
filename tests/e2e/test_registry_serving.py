"""Promote-by-alias under load: a real gateway process serves `models:/iris@champion` while the
alias moves 1 → 2 → 3 → 2 (a rollback); not one request may fail, and each move is picked up.

The registry lives in SQLite or PostgreSQL and is written from this process, as a deployer's
CLI would; the gateway only reads it, polling every 0.2 s. Each version is signed, approved by
someone other than its author and verified by the gateway before it serves.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from seawall.registry import Registry, store_artifact
from seawall.security import generate_signing_key, load_private_key
from seawall.store import AuditLog, BlobStore, Database

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import Launch

pytestmark = pytest.mark.e2e

BODY = {
    "inputs": [
        {"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}
#: Client threads sending requests back to back during the moves.
CLIENTS = 4
#: Longest wait for the gateway to serve a version after its alias moved.
SWAP_TIMEOUT_S = 15.0


class _Load:
    """Threads posting to the gateway until stopped; every status and served version counted."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/v2/models/iris/infer"
        self.statuses: Counter[int] = Counter()
        self.versions: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json=BODY)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(repr(exc))
                    continue
                with self._lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        self.versions.append(response.headers["x-seawall-model-version"])
                    else:
                        self.errors.append(response.text[:200])

    def wait_for(self, version: str) -> float:
        """Seconds until responses come from `version` only (the last 20 in a row)."""
        started = time.monotonic()
        while time.monotonic() - started < SWAP_TIMEOUT_S:
            with self._lock:
                tail = self.versions[-20:]
            if len(tail) == 20 and set(tail) == {version}:
                return time.monotonic() - started
            time.sleep(0.01)
        raise AssertionError(f"version {version} not served within {SWAP_TIMEOUT_S} s")


def test_moving_the_alias_under_load_drops_no_request(
    database_url: str, tmp_path: Path, demo_dir: Path, launch: Launch
) -> None:
    database = Database(database_url)
    database.upgrade()
    blobs = BlobStore(tmp_path / "artifacts")
    registry = Registry(database, blobs=blobs)
    generate_signing_key(tmp_path / "signing.pem", tmp_path / "signing.pub")
    key = load_private_key(tmp_path / "signing.pem")
    model = tmp_path / "iris.joblib"
    shutil.copy(demo_dir / "iris.joblib", model)

    async def publish(version: int) -> None:
        artifact = store_artifact(blobs, model, name="iris", version=version, signing_key=key)
        await registry.register_version(
            "iris", artifact, actor="cli:dana", framework="sklearn", version=version
        )
        await registry.transition("iris", version, "staging", actor="cli:dana")
        await registry.approve("iris", version, actor="cli:bob", comment="checked")
        await registry.transition(
            "iris", version, "production", actor="cli:dana", archive_previous=False
        )
        await registry.set_alias("iris", "champion", version, actor="cli:dana")

    asyncio.run(publish(1))
    config = tmp_path / "seawall.yaml"
    config.write_text(
        f"""\
server: {{host: 127.0.0.1, port: 0, log_level: info}}
database_url: "{database_url}"
registry:
  artifact_store: artifacts
  cache_dir: cache
  poll_interval_s: 0.2
  deployment_target: gw-e2e
security:
  trusted_keys: [signing.pub]
  require_signed: true
models:
  - name: iris
    backend: {{kind: registry, uri: "models:/iris@champion"}}
"""
    )
    gateway = launch(config)
    swaps: list[float] = []
    with _Load(gateway.url) as load:
        load.wait_for("1")
        for version in (2, 3):
            asyncio.run(publish(version))
            swaps.append(load.wait_for(str(version)))
            time.sleep(1.0)  # serve this version a while under load before the next move
        asyncio.run(registry.set_alias("iris", "champion", 2, actor="cli:dana"))  # roll back
        swaps.append(load.wait_for("2"))
        time.sleep(0.5)
    assert load.errors == []
    assert set(load.statuses) == {200}
    served = Counter(load.versions)
    assert set(served) == {"1", "2", "3"}
    print(f"\n{sum(load.statuses.values())} requests, all 200; by version {dict(served)}")
    print(f"alias move → served only by the new version: {[round(s, 2) for s in swaps]} s")

    records = asyncio.run(AuditLog(database).records(limit=1000))
    serves = [(r.details["from"], r.details["to"]) for r in records if r.action == "model.serve"]
    assert serves == [(None, "1"), ("1", "2"), ("2", "3"), ("3", "2")]
    assert asyncio.run(AuditLog(database).verify()).ok
    database.close()
