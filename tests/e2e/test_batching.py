"""Dynamic batching on a real `seawall serve` with a real scikit-learn model, over HTTP.

64 concurrent calls, a few of them bad: every good call gets exactly the answer the same model
gives unbatched, every bad one a 400 that names the field, and the metrics show batches that
served more than one call.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch

pytestmark = pytest.mark.e2e

#: Longest any single HTTP call of these tests may take.
HTTP_TIMEOUT_S = 15.0
CALLS = 64
#: Calls whose features hold a NaN: valid OIP, refused by the model itself (scikit-learn).
NAN_CALLS = (5, 29, 47)
#: Calls with the wrong number of features: refused by validation, before the batcher.
SHAPE_CALLS = (12, 40)

CONFIG = """
server: {{log_level: info}}
models:
  - name: diabetes
    backend: {{kind: sklearn, path: {path}}}
    policies:
      timeout: {{timeout_ms: 10000}}
      # A long wait, so that the concurrent calls below surely meet in the queue.
      batching: {{max_batch_size: 64, max_wait_ms: 200, max_queue_rows: 256}}
  - name: plain
    backend: {{kind: sklearn, path: {path}}}
"""


@pytest.fixture(scope="module")
def features() -> np.ndarray[Any, Any]:
    from sklearn.datasets import load_diabetes

    x, _ = load_diabetes(return_X_y=True)
    return np.asarray(x[:CALLS], dtype=np.float64)


@pytest.fixture(scope="module")
def gateway(launch_shared: Launch, tmp_path_factory: pytest.TempPathFactory) -> GatewayProcess:
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    directory = tmp_path_factory.mktemp("batching")
    x, y = load_diabetes(return_X_y=True)
    model = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0).fit(x, y)
    joblib.dump(model, directory / "diabetes.joblib")
    config = directory / "seawall.yaml"
    config.write_text(CONFIG.format(path=directory / "diabetes.joblib"), encoding="utf-8")
    gateway = launch_shared(config)
    gateway.assert_all_ready()
    return gateway


def json_call(i: int, row: list[float]) -> tuple[dict[str, str], bytes]:
    body = {
        "id": f"call-{i}",
        "inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}],
    }
    return {"content-type": "application/json"}, json.dumps(body).encode()


def nan_call(i: int, width: int) -> tuple[dict[str, str], bytes]:
    """A binary-extension call whose row is all NaN (JSON cannot carry NaN)."""
    data = np.full((1, width), np.nan, dtype="<f8").tobytes()
    head = json.dumps(
        {
            "id": f"call-{i}",
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, width],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
        }
    ).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }
    return headers, head + data


async def fire(url: str, model: str, calls: list[tuple[dict[str, str], bytes]]) -> list[Any]:
    """Send every call at once; the responses, in order."""
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=len(calls))
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S, limits=limits) as http:
        return await asyncio.gather(
            *(
                http.post(f"/v2/models/{model}/infer", content=body, headers=headers)
                for headers, body in calls
            )
        )


def metric(gateway: GatewayProcess, name: str, **labels: str) -> float:
    return gateway.metric(name, **labels)


def test_concurrent_calls_are_batched_and_each_answered_as_if_alone(
    gateway: GatewayProcess, features: np.ndarray[Any, Any]
) -> None:
    width = features.shape[1]
    calls = []
    for i, row in enumerate(features.tolist()):
        if i in NAN_CALLS:
            calls.append(nan_call(i, width))
        elif i in SHAPE_CALLS:
            calls.append(json_call(i, row[:-1]))
        else:
            calls.append(json_call(i, row))

    responses = asyncio.run(fire(gateway.url, "diabetes", calls))
    good = [i for i in range(CALLS) if i not in NAN_CALLS + SHAPE_CALLS]
    alone = asyncio.run(
        fire(gateway.url, "plain", [json_call(i, features[i].tolist()) for i in good])
    )

    statuses = {i: r.status_code for i, r in enumerate(responses)}
    assert {i: s for i, s in statuses.items() if s != 200} == dict.fromkeys(
        NAN_CALLS + SHAPE_CALLS, 400
    ), {i: r.text for i, r in enumerate(responses) if r.status_code != 200}
    for i in NAN_CALLS:
        error = responses[i].json()["error"]
        assert error.startswith("inputs: the model rejected the input"), error
        assert "NaN" in error
    for i in SHAPE_CALLS:
        error = responses[i].json()["error"]
        assert error.startswith("inputs[0].shape: input 'input-0' of model 'diabetes'"), error
    for i, reference in zip(good, alone, strict=True):
        answer = responses[i].json()
        assert answer["id"] == f"call-{i}"
        assert (answer["model_name"], answer["model_version"]) == ("diabetes", "1")
        assert answer["outputs"][0]["shape"] == [1]
        assert answer["outputs"][0]["data"] == reference.json()["outputs"][0]["data"]

    target = {"target": "diabetes:1"}
    batches = metric(gateway, "seawall_batch_requests_count", **target)
    served = metric(gateway, "seawall_batch_requests_sum", **target)
    single = metric(gateway, "seawall_batch_requests_bucket", le="1.0", **target)
    assert batches >= 1
    assert single < batches, "no batch served more than one call"
    # Every call that reached the batcher was served at least once; fewer calls than requests.
    assert served >= CALLS - len(SHAPE_CALLS) > batches
    # A batch that held a NaN row failed and was split until the bad calls stood alone.
    splits = metric(gateway, "seawall_policy_events_total", event="BatchSplit", **target)
    assert splits >= 1
    assert metric(gateway, "seawall_batch_queue_rows", **target) == 0
    assert metric(gateway, "seawall_batches_in_flight", **target) == 0
