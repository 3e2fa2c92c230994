"""benchmarks/testbed.py: the gateway config the benchmarks start, request bodies, wrk parsing."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from types import ModuleType

from seawall.config import parse_config

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    """A benchmark module, imported as the scripts import each other (benchmarks/ on the path)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


testbed = load("testbed")

SPEC = testbed.ModelSpec(
    description="test", backend={"kind": "sklearn", "path": "/nonexistent/m.joblib"}, body=b"{}"
)


def test_the_config_is_valid_with_admission_and_batching() -> None:
    admission = {"max_in_flight": 4, "max_queue": 64, "target_queue_delay_ms": 10}
    batching = {"max_batch_size": 32, "max_wait_ms": 2, "max_queue_rows": 256}
    text = testbed.gateway_config(
        SPEC, workers=2, max_queue=128, admission=admission, batching=batching
    )
    config = parse_config(text, environ={})
    assert config.admission is not None
    assert config.admission.max_in_flight == 4
    (model,) = config.models
    assert model.name == testbed.MODEL
    assert model.backend.kind == "sklearn"
    assert (model.backend.workers, model.backend.max_queue) == (2, 128)
    assert model.policies.batching is not None
    assert model.policies.batching.max_batch_size == 32
    assert config.auth is not None
    assert config.policy_defaults.retry is not None


def test_without_admission_or_batching_the_config_has_neither() -> None:
    config = parse_config(testbed.gateway_config(SPEC, workers=1, max_queue=8), environ={})
    assert config.admission is None
    assert config.models[0].policies.batching is None


def test_the_onnx_backend_section_passes_through() -> None:
    spec = testbed.ModelSpec(
        description="x", backend={"kind": "onnx", "path": "m.onnx", "intra_op_threads": 1}, body=b""
    )
    config = parse_config(testbed.gateway_config(spec, workers=1, max_queue=8), environ={})
    assert config.models[0].backend.kind == "onnx"


def test_an_infer_body_is_one_2d_tensor() -> None:
    body = json.loads(testbed.infer_body([[1.0, 2.0], [3.0, 4.0]], "FP32"))
    assert body == {
        "inputs": [
            {"name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}
        ]
    }


def test_wrk_output_is_parsed_from_the_benchresult_line() -> None:
    output = (
        "Running 10s test @ http://127.0.0.1:1\n"
        "BENCHRESULT requests=5000 duration_s=10.000 p50_ms=1.500 p95_ms=3.000 p99_ms=9.250 "
        "errors=2 non2xx=1000\n"
    )
    result = testbed.parse_wrk(output)
    assert (result.requests, result.errors, result.non2xx) == (5000, 2, 1000)
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == (1.5, 3.0, 9.25)
    assert result.rps == 500
    assert result.goodput == 400


def test_wrk_runs_one_thread_with_the_infer_script() -> None:
    command = testbed.wrk_command("http://127.0.0.1:9", 64, 12.5)
    assert command[:7] == ["wrk", "-t", "1", "-c", "64", "-d", "12.5s"]
    assert Path(command[8]).name == "infer.lua"
    assert Path(command[8]).is_file()


def test_cpu_is_read_from_proc() -> None:
    assert testbed.cpu_ticks(os.getpid()) > 0
    meter = testbed.CpuMeter(os.getpid())
    sum(range(100_000))
    cpu = meter.read()
    assert set(cpu) == {"gateway", "client", "machine", "others"}
    assert cpu["others"] >= 0
