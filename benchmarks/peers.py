"""seawall side by side with a bare passthrough and LiteLLM, on the chat and OIP infer routes.

Uses the shared harness (`../shared/bench/`, or `SEAWALL_BENCH_HARNESS`): its nginx mock upstream
on 127.0.0.1:18000, its passthrough proxies (`pt-asgi`: bare ASGI + aiohttp; `pt-aiohttp`:
Starlette + aiohttp), the LiteLLM proxy, its wrk scripts and `benchlib.py` (one wrk run plus the
gateway's CPU from /proc). seawall runs `benchmarks/seawall-bench.yaml`: its full default
pipeline (auth, rate limit, admission control, breaker, retry, timeout, telemetry) in front of
the same mock. One process each; everything on 127.0.0.1.

Every (repeat, route, concurrency) measures all targets back to back in an order rotated each
repeat, so slow drifts of the shared machine hit every target alike; only ratios taken in the
same run are reported as results. LiteLLM has no OIP route: it is measured on chat only.

    .venv/bin/python benchmarks/peers.py                        # ~25 min: 3 x 10 s, c = 1 8 32 128
    .venv/bin/python benchmarks/peers.py --repeats 1 --duration 5 --concs 8   # a quick look

Needs `bash ../shared/bench/setup_peers.sh` once (nginx, wrk, the peers' venvs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HARNESS = Path(os.environ.get("SEAWALL_BENCH_HARNESS", ROOT.parent / "shared" / "bench"))
VENVS = Path(os.environ.get("VENVS", "/tmp/bench-venvs"))
UPSTREAM = "http://127.0.0.1:18000"
SEAWALL_KEY = "sk-bench-seawall-0123456789"
LITELLM_KEY = "sk-bench-master-0000"  # the harness's litellm-config.yaml
CHAT_BODY = (
    b'{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},'
    b'{"role":"user","content":"ping"}]}'
)
OIP_BODY = (
    b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"FP32","data":'
    b"[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2,1.3,1.4,1.5,1.6]}]}"
)
ROUTES = {"chat": "chat.lua", "oip": "oip.lua"}
PORTS = {"nginx": 18000, "pt-aiohttp": 18101, "pt-asgi": 18103, "litellm": 18200, "seawall": 18400}
REFERENCE = "pt-asgi"


@dataclass
class Target:
    name: str
    port: int
    key: str
    process: subprocess.Popen[bytes]
    pidfile: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def commands(name: str, port: int, run: Path) -> list[str]:
    """The command line that serves `name` on `port`."""
    pt = [str(VENVS / "passthrough" / "bin" / "python"), str(HARNESS / "passthrough.py")]
    litellm = str(VENVS / "litellm" / "bin" / "litellm")
    table = {
        "nginx": ["nginx", "-p", f"{run}/", "-c", str(HARNESS / "nginx-mock.conf"),
                  "-g", "daemon off;"],
        "pt-asgi": [*pt, "--port", str(port), "--client", "aiohttp", "--framework", "asgi"],
        "pt-aiohttp": [*pt, "--port", str(port), "--client", "aiohttp",
                       "--framework", "starlette"],
        "litellm": [litellm, "--config", str(HARNESS / "litellm-config.yaml"),
                    "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        "seawall": [sys.executable, "-m", "seawall", "serve",
                    "--config", str(HERE / "seawall-bench.yaml"), "--port", str(port)],
    }  # fmt: skip
    return table[name]


def environment(name: str) -> dict[str, str]:
    env = dict(os.environ)
    if name == "litellm":  # offline and quiet, as the harness runs it
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_LOG="ERROR",
            LITELLM_MODE="PRODUCTION",
            DISABLE_ADMIN_UI="True",
            NO_DOCS="True",
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
        )
    if name == "seawall":
        env["BENCH_API_KEY"] = SEAWALL_KEY
    return env


def ready(url: str, key: str, timeout_s: float = 90.0) -> bool:
    """True once `url` answers a chat call with 200 (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=CHAT_BODY,
            headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.5)
    return False


@contextmanager
def serving(names: Sequence[str], run: Path) -> Iterator[dict[str, Target]]:
    """Start every target (nginx first); stop them all, by PID, whatever happens."""
    started: dict[str, Target] = {}
    Path("/tmp/bench-nginx").mkdir(exist_ok=True)  # the harness's nginx-mock.conf writes there
    try:
        for name in ["nginx", *names]:
            port = PORTS[name]
            log = (run / f"{name}.log").open("wb")
            process = subprocess.Popen(
                commands(name, port, run),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment(name),
            )
            pidfile = run / f"{name}.pid"
            pidfile.write_text(str(process.pid))
            key = {"seawall": SEAWALL_KEY, "litellm": LITELLM_KEY}.get(name, "sk-bench-dummy")
            started[name] = Target(name, port, key, process, pidfile)
            if not ready(started[name].url, key):
                tail = (run / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} did not become ready; log:\n{tail}")
        yield started
    finally:
        for target in started.values():
            target.process.send_signal(signal.SIGTERM)
        for target in started.values():
            try:
                target.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                target.process.kill()


def measure(
    target: Target, nginx: Target, route: str, conc: int, duration: int, rep: int, out: Path
) -> None:
    """One wrk run through the harness's benchlib (appends one JSON line to `out`)."""
    command = [
        sys.executable, str(HARNESS / "benchlib.py"), "run",
        "--target", target.name, "--url", target.url, "--conc", str(conc),
        "--rep", str(rep), "--duration", str(duration), "--pidfile", str(target.pidfile),
        "--upstream-pidfile", str(nginx.pidfile), "--lua", str(HARNESS / ROUTES[route]),
        "--api-key", target.key, "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ, BENCH_OIP_MODEL="resnet-mock")
    subprocess.run(command, check=False, env=env, timeout=duration + 120)


def summarize(
    records: list[dict[str, object]], route: str
) -> dict[tuple[str, int], dict[str, float]]:
    """Medians per (target, concurrency) of one route's records."""
    groups: dict[tuple[str, int], list[dict[str, object]]] = {}
    for r in records:
        if r["route"] == route:
            groups.setdefault((str(r["target"]), int(str(r["conc"]))), []).append(r)
    out: dict[tuple[str, int], dict[str, float]] = {}
    for key, runs in groups.items():

        def med(field: str, runs: list[dict[str, object]] = runs) -> float:
            values = [float(str(r[field])) for r in runs if r.get(field) is not None]
            return statistics.median(values) if values else float("nan")

        errors = sum(
            int(str(r.get(f, 0)))
            for r in runs
            for f in ("err_status", "err_connect", "err_read", "err_timeout")
        )
        out[key] = {
            "rps": med("rps"),
            "p50": med("p50_ms"),
            "p99": med("p99_ms"),
            "cpu": med("gw_cpu_ms_per_req"),
            "rss": med("gw_rss_mib"),
            "errors": float(errors),
            "runs": float(len(runs)),
        }
    return out


def table(summary: dict[tuple[str, int], dict[str, float]], route: str, concs: list[int]) -> str:
    """Markdown: per-target figures, then seawall's ratios against the reference passthrough."""
    names = [n for n in ("nginx", "pt-asgi", "pt-aiohttp", "litellm", "seawall")
             if any((n, c) in summary for c in concs)]  # fmt: skip
    lines = [
        f"#### {route} route",
        "",
        "| target | c | RPS | p50 ms | p99 ms | CPU ms/req | RSS MiB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        for c in concs:
            m = summary.get((name, c))
            if m:
                lines.append(
                    f"| {name} | {c} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
                    f"{m['cpu']:.3f} | {m['rss']:.0f} | {m['errors']:.0f} |"
                )
    lines += [
        "",
        f"| c | seawall / {REFERENCE} RPS | seawall / litellm RPS | CPU per request "
        f"seawall / {REFERENCE} |",
        "|---:|---:|---:|---:|",
    ]
    for c in concs:
        s, ref, lite = (summary.get((n, c)) for n in ("seawall", REFERENCE, "litellm"))
        if s is None or ref is None:
            continue
        vs_lite = f"{s['rps'] / lite['rps']:.1f}x" if lite else "-"
        lines.append(
            f"| {c} | {s['rps'] / ref['rps']:.2f} | {vs_lite} | {s['cpu'] / ref['cpu']:.2f} |"
        )
    s1, ref1, ng1 = (summary.get((n, 1)) for n in ("seawall", REFERENCE, "nginx"))
    if s1 and ref1 and ng1:
        added_s, added_ref = s1["p50"] - ng1["p50"], ref1["p50"] - ng1["p50"]
        lines += [
            "",
            f"Added latency at c=1 (p50 minus nginx direct): seawall {added_s:.3f} ms, "
            f"{REFERENCE} {added_ref:.3f} ms, ratio {added_s / added_ref:.2f}.",
        ]
    return "\n".join(lines)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    python = platform.python_version()
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {python}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concs", default="1,8,32,128")
    parser.add_argument("--routes", default="chat,oip")
    parser.add_argument("--targets", default="pt-asgi,pt-aiohttp,litellm,seawall")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "peers.md")
    args = parser.parse_args(argv)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run bash {HARNESS}/setup_peers.sh")
    concs = [int(c) for c in args.concs.split(",")]
    routes = args.routes.split(",")
    names = args.targets.split(",")
    started_at = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="seawall-peers-") as tmp:
        run = Path(tmp)
        raw = run / "raw.jsonl"
        records: list[dict[str, object]] = []
        with serving(names, run) as targets:
            for n in names:  # warm-up, discarded
                for route in routes:
                    if not (n == "litellm" and route == "oip"):
                        measure(targets[n], targets["nginx"], route, 32, 3, 0, run / "warm.jsonl")
            order = ["nginx", *names]
            for rep in range(1, args.repeats + 1):
                rotated = order[rep % len(order) :] + order[: rep % len(order)]
                for route in routes:
                    for c in concs:
                        for n in rotated:
                            if n == "litellm" and route == "oip":
                                continue
                            before = raw.stat().st_size if raw.exists() else 0
                            measure(targets[n], targets["nginx"], route, c, args.duration, rep, raw)
                            if raw.exists() and raw.stat().st_size > before:
                                with raw.open() as f:
                                    f.seek(before)
                                    record = json.loads(f.readline())
                                record["route"] = route
                                records.append(record)
    sections = [
        f"### Side by side ({started_at:%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. One process per gateway; median of {args.repeats} x "
        f"{args.duration} s wrk runs (closed loop, `wrk -t1`), targets in rotating order.",
        f"Command: `.venv/bin/python benchmarks/peers.py --duration {args.duration} "
        f"--repeats {args.repeats} --concs {args.concs} --routes {args.routes}`",
        "",
    ]
    for route in routes:
        sections += [table(summarize(records, route), route, concs), ""]
    text = "\n".join(sections)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
