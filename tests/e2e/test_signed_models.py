"""A gateway with `require_signed: true` serves a signed model, refuses tampered and unsigned ones.

Keys and manifests are made by the installed CLI (`seawall keys generate-signing`,
`seawall models sign`), as an operator would; the model is trained on scikit-learn's iris.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch

pytestmark = pytest.mark.e2e

SETOSA = {
    "inputs": [
        {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
    ]
}

CONFIG = """\
server: {host: 127.0.0.1, port: 0, log_level: info}
security:
  trusted_keys: [keys/signing.pub]
  require_signed: true
models:
  - name: iris
    backend: {kind: sklearn, path: signed/iris.joblib}
  - name: iris-tampered
    backend: {kind: sklearn, path: tampered/iris.joblib}
  - name: iris-unsigned
    backend: {kind: sklearn, path: unsigned/iris.joblib}
  - name: iris-stranger
    backend: {kind: sklearn, path: stranger/iris.joblib}
"""


def seawall(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m seawall ARGS`, as an operator runs it (no `SEAWALL_*` from this shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
    return subprocess.run(
        [sys.executable, "-m", "seawall", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys, a signed model, a tampered copy, an unsigned copy, one signed by another key."""
    root = tmp_path_factory.mktemp("signed")
    for keys in ("keys", "stranger-keys"):
        done = seawall("keys", "generate-signing", "--out", str(root / keys))
        assert done.returncode == 0, done.stderr
    for name in ("signed", "tampered", "unsigned", "stranger"):
        (root / name).mkdir()
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), root / "signed" / "iris.joblib")
    for name in ("tampered", "unsigned", "stranger"):
        shutil.copy(root / "signed" / "iris.joblib", root / name / "iris.joblib")
    for name, key in (("signed", "keys"), ("stranger", "stranger-keys")):
        done = seawall(
            "models", "sign", str(root / name / "iris.joblib"),
            "--key", str(root / key / "signing.key"), "--name", "iris", "--version", "1",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    # The tampered copy keeps the genuine manifest; one byte of the pickle differs.
    shutil.copy(root / "signed" / "iris.joblib.manifest.json", root / "tampered")
    data = bytearray((root / "tampered" / "iris.joblib").read_bytes())
    data[len(data) // 2] ^= 0x01
    (root / "tampered" / "iris.joblib").write_bytes(bytes(data))
    (root / "seawall.yaml").write_text(CONFIG, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def gateway(deployment: Path, launch_shared: Launch) -> GatewayProcess:
    return launch_shared(deployment / "seawall.yaml")


def test_the_signed_model_serves(gateway: GatewayProcess) -> None:
    with gateway.client() as http:
        ready = http.get("/v2/models/iris/ready")
        answer = http.post("/v2/models/iris/infer", json=SETOSA)

    assert ready.status_code == 200
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [0]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("iris-tampered", "digest mismatch: iris.joblib has sha256"),
        ("iris-unsigned", "unsigned: no manifest at"),
        ("iris-stranger", "untrusted key: signed by key"),
    ],
)
def test_a_refused_model_is_not_ready_and_says_why(
    gateway: GatewayProcess, model: str, reason: str
) -> None:
    with gateway.client() as http:
        index = {m["name"]: m for m in http.get("/v2/repository/index").json()}
        ready = http.get(f"/v2/models/{model}/ready")
        answer = http.post(f"/v2/models/{model}/infer", json=SETOSA)

    assert index[model]["state"] == "FAILED"
    assert index[model]["reason"].startswith("ArtifactVerificationError: ")
    assert reason in index[model]["reason"]
    assert ready.status_code == 503
    assert reason in ready.json()["reason"]
    assert answer.status_code == 503
    assert reason in answer.text
    assert index["iris"]["state"] == "READY"


def test_the_refusals_are_logged_with_the_reason(gateway: GatewayProcess) -> None:
    log = gateway.log()

    assert log.count("model failed to load") == 3
    assert "digest mismatch" in log
    assert "BEGIN" not in log  # no key material in the log
