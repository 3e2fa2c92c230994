"""The README's first request, in process."""

from __future__ import annotations

import httpx


async def test_readme_request_returns_the_iris_class(client: httpx.AsyncClient) -> None:
    body = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
    response = await client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["predict"]["data"] == [0]
