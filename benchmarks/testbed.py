"""The servers under test for the model benchmarks (overload.py, batching.py): models with real
per-call cost trained from scikit-learn's bundled datasets (nothing is downloaded), the gateway's
configuration, a `seawall serve` process, CPU meters from /proc, and wrk (closed loop).

Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from loadgen import API_KEY, json_headers

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL = "model"
INFER_PATH = f"/v2/models/{MODEL}/infer"
#: One BLAS/OpenMP thread per call: the model's parallelism is the backend's `workers`.
SERVER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
READY_TIMEOUT_S = 60.0


# --- models ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A trained benchmark model: its backend section (without workers), a one-row request."""

    description: str
    backend: dict[str, object]
    body: bytes


def infer_body(rows: list[list[float]], datatype: str) -> bytes:
    """An OIP v2 infer request with one 2-D input tensor `input-0` holding `rows`."""
    data = [round(float(v), 6) for row in rows for v in row]
    shape = [len(rows), len(rows[0])]
    tensor = {"name": "input-0", "shape": shape, "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode()


def gradient_boosting(directory: Path, trees: int, max_depth: int = 3) -> ModelSpec:
    """Gradient boosting on the diabetes data, pickled for `kind: sklearn`.

    Scoring walks every tree once per call in a compiled loop that costs little more per extra
    row, so one call of 32 rows costs far less than 32 calls of one row: the case batching is
    for. The loop holds the GIL: while it runs, the gateway's event loop waits.
    """
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    x, y = load_diabetes(return_X_y=True)
    # Half the rows per tree: trains twice as fast; scoring costs the same.
    model = GradientBoostingRegressor(
        n_estimators=trees, max_depth=max_depth, subsample=0.5, random_state=0
    )
    model.fit(x, y)
    path = directory / f"gb{trees}.joblib"
    joblib.dump(model, path)
    return ModelSpec(
        description=f"scikit-learn GradientBoostingRegressor, {trees} trees of depth "
        f"{max_depth}, diabetes data (10 features, FP64), `kind: sklearn`",
        backend={"kind": "sklearn", "path": str(path)},
        body=infer_body(x[:1].tolist(), "FP64"),
    )


def mlp_onnx(directory: Path, hidden: tuple[int, ...] = (2048, 2048, 2048)) -> ModelSpec:
    """A scikit-learn MLP on the digits data, converted to ONNX for `kind: onnx`.

    ONNX Runtime releases the GIL while it computes, so the model runs beside the event loop
    instead of taking turns with it. The weights (about 34 MB) are read once per call, which
    gives a call a real cost; one epoch of training is enough, accuracy does not matter here.
    """
    import warnings

    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    x, y = load_digits(return_X_y=True)
    model = MLPRegressor(hidden_layer_sizes=hidden, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x[:200], y[:200])
    onx = convert_sklearn(
        model, initial_types=[("input_0", FloatTensorType([None, x.shape[1]]))], target_opset=17
    )
    # skl2onnx sanitises "input-0" to "input_0"; the benchmark body uses the OIP-style name.
    for node in onx.graph.node:
        for i, name in enumerate(node.input):
            if name == "input_0":
                node.input[i] = "input-0"
    onx.graph.input[0].name = "input-0"
    path = directory / "mlp.onnx"
    path.write_bytes(onx.SerializeToString())
    layers = "x".join(str(n) for n in hidden)
    return ModelSpec(
        description=f"scikit-learn MLPRegressor {layers}, digits data (64 features, FP32), "
        "converted to ONNX, `kind: onnx`, `intra_op_threads: 1`",
        backend={"kind": "onnx", "path": str(path), "intra_op_threads": 1},
        body=infer_body(x[:1].tolist(), "FP32"),
    )


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_ticks(pid: int) -> int:
    """User + system CPU ticks of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process."""
    return cpu_ticks(pid) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs: not idle, not waiting on I/O)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK


@dataclass
class CpuMeter:
    """CPU used over a stretch of time, as % of one core: by the gateway, this process, the
    machine; `others` is what the machine spent beyond those two (wrk, other work on the box)."""

    gateway_pid: int
    started: float = field(default_factory=time.perf_counter)
    gateway_s: float = 0.0
    client_s: float = field(default_factory=time.process_time)
    machine_s: float = field(default_factory=machine_busy_s)

    def __post_init__(self) -> None:
        self.gateway_s = cpu_s(self.gateway_pid)

    def read(self) -> dict[str, float]:
        """% of one core since construction: gateway, client, machine, others."""
        elapsed = time.perf_counter() - self.started
        gateway = (cpu_s(self.gateway_pid) - self.gateway_s) / elapsed * 100
        client = (time.process_time() - self.client_s) / elapsed * 100
        machine = (machine_busy_s() - self.machine_s) / elapsed * 100
        return {
            "gateway": gateway,
            "client": client,
            "machine": machine,
            "others": max(machine - gateway - client, 0.0),
        }


@dataclass
class Gateway:
    """A running `seawall serve` on 127.0.0.1:`port`."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        """The infer URL of the benchmark model."""
        return f"http://127.0.0.1:{self.port}{INFER_PATH}"


@contextlib.contextmanager
def serve(config: Path, body: bytes) -> Iterator[Gateway]:
    """Start `seawall serve --config CONFIG` on a free port; wait until the model answers `body`.

    Stopped with SIGTERM (SIGKILL after 30 s) when the block ends, whatever happened in it.
    """
    port = free_port()
    command = [sys.executable, "-m", "seawall", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = (config.parent / f"{config.stem}-{port}.log").open("wb")
    env = {**os.environ, **SERVER_ENV}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(process, f"http://127.0.0.1:{port}{INFER_PATH}", body)
        yield Gateway(process, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_ready(process: subprocess.Popen[bytes], url: str, body: bytes) -> None:
    """Poll `url` with `body` until it answers 200; raise if the process exits or time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"seawall exited with status {process.returncode} at start-up")
        request = urllib.request.Request(url, data=body, headers=json_headers())
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                response.read()
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"seawall did not answer {url} within {READY_TIMEOUT_S:.0f} s")


def gateway_config(
    model: ModelSpec,
    *,
    workers: int,
    max_queue: int,
    admission: dict[str, float] | None = None,
    batching: dict[str, float] | None = None,
) -> str:
    """The gateway under test: the model behind seawall's full default pipeline.

    As benchmarks/seawall-bench.yaml: auth, rate limit (never the bottleneck), admission control
    (when given), circuit breaker, retry, timeout, telemetry; batching on the model when given.
    JSON is YAML, so the config is written as JSON.
    """
    backend = {**model.backend, "workers": workers, "max_queue": max_queue}
    policies = {} if batching is None else {"batching": batching}
    config: dict[str, object] = {
        "server": {"host": "127.0.0.1", "log_level": "warning"},
        "auth": {"keys": [{"name": "bench", "key": API_KEY}]},
        "ratelimit": {"per_key": {"rate_per_s": 1_000_000, "burst": 1_000_000}},
        "policy_defaults": {
            "circuit_breaker": {"consecutive_failures": 20, "open_s": 10},
            "retry": {"attempts": 2},
            "timeout": {"timeout_ms": 10_000},
        },
        "models": [{"name": MODEL, "backend": backend, "policies": policies}],
    }
    if admission is not None:
        config["admission"] = admission
    return json.dumps(config, indent=2)


# --- closed loop: wrk ------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: all responses, the non-2xx among them, latency percentiles (ms)."""

    requests: int
    duration_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    non2xx: int

    @property
    def rps(self) -> float:
        """Responses per second, any status."""
        return self.requests / self.duration_s

    @property
    def goodput(self) -> float:
        """2xx responses per second."""
        return (self.requests - self.non2xx) / self.duration_s


def wrk_command(url: str, conc: int, duration_s: float) -> list[str]:
    """The wrk command line (one thread; the request comes from infer.lua and the environment)."""
    lua = str(HERE / "infer.lua")
    return ["wrk", "-t", "1", "-c", str(conc), "-d", f"{duration_s:g}s", "-s", lua, url]


def parse_wrk(output: str) -> WrkResult:
    """The BENCHRESULT line infer.lua prints."""
    line = next(ln for ln in output.splitlines() if ln.startswith("BENCHRESULT"))
    values = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    return WrkResult(
        requests=int(values["requests"]),
        duration_s=values["duration_s"],
        p50_ms=values["p50_ms"],
        p95_ms=values["p95_ms"],
        p99_ms=values["p99_ms"],
        errors=int(values["errors"]),
        non2xx=int(values["non2xx"]),
    )


def wrk(gateway: Gateway, body: bytes, conc: int, duration_s: float) -> WrkResult:
    """Closed loop: `conc` connections each sending the next request when the last is answered."""
    parts = urlsplit(gateway.url)
    env = {**os.environ, "BENCH_PATH": parts.path, "BENCH_BODY": body.decode()}
    env["BENCH_API_KEY"] = API_KEY
    base = f"{parts.scheme}://{parts.netloc}"
    out = subprocess.run(
        wrk_command(base, conc, duration_s), capture_output=True, text=True, check=True, env=env
    )
    return parse_wrk(out.stdout)
