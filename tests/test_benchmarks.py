"""The benchmark apps still run against the current code (benchmarks are not run by CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import httpx

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BODY = {"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_starlette_variant_answers_like_the_gateway() -> None:
    app = load("oip_route_apps").starlette_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            response = await http.post("/v2/models/echo/infer", json=BODY)
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [1.0, 2.0]


async def test_the_floor_answers_fixed_bytes() -> None:
    apps = load("oip_route_apps")
    transport = httpx.ASGITransport(app=apps.floor)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        response = await http.post("/v2/models/echo/infer", json=BODY)
    assert response.content == apps.FIXED


def test_the_benchmark_script_imports() -> None:
    assert callable(load("oip_route").main)
