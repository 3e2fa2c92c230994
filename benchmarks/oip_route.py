"""OIP infer route overhead: seawall's plain-ASGI route against the same work behind Starlette.

Three servers, one uvicorn worker each (uvloop + httptools), same machine, same run, targets in
rotating order per repeat; wrk drives POST /v2/models/echo/infer with a [1, 16] FP32 tensor:

- ``floor``: reads the body, answers fixed bytes (uvicorn's own cost);
- ``starlette``: seawall's decode, validation, mock backend and encode, routed by Starlette;
- ``seawall``: the real gateway (`seawall serve`) with the same model.

Reports medians of requests/s and CPU ms per request, and ratios against ``floor``. Needs wrk
(Debian package). Usage: ``.venv/bin/python benchmarks/oip_route.py [--duration 10] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIG = """
server: {log_level: warning}
models: [{name: echo, backend: {kind: mock}}]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def start(name: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    py = sys.executable
    uvicorn = [py, "-m", "uvicorn", "--port", str(port), "--log-level", "warning", "--app-dir"]
    commands = {
        "floor": [*uvicorn, str(HERE), "oip_route_apps:floor"],
        "starlette": [*uvicorn, str(HERE), "--factory", "oip_route_apps:starlette_app"],
        "seawall": [py, "-m", "seawall", "serve", "--config", str(workdir / "c.yaml"),
                    "--port", str(port)],
    }  # fmt: skip
    process = subprocess.Popen(commands[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v2/models/echo/infer",
                data=b'{"inputs":[{"name":"input-0","shape":[1,1],"datatype":"FP32","data":[1]}]}',
            )
            urllib.request.urlopen(request, timeout=1).read()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{name} did not start")


def wrk(port: int, conc: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(conc), "-d", f"{duration}s", "-s", str(HERE / "oip_infer.lua"),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCHRESULT"))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concs", default="1,8,32")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    targets = ["floor", "starlette", "seawall"]
    concs = [int(c) for c in args.concs.split(",")]
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "c.yaml").write_text(CONFIG)
        for repeat in range(args.repeats):
            order = targets[repeat % 3 :] + targets[: repeat % 3]
            for name in order:
                port = free_port()
                process = start(name, port, workdir)
                try:
                    wrk(port, 8, 2)  # warm-up
                    for conc in concs:
                        before = cpu_ticks(process.pid)
                        r = wrk(port, conc, args.duration)
                        cpu_ms = (cpu_ticks(process.pid) - before) * 1000 / CLK_TCK
                        assert r["errors"] == 0, (name, r)
                        sample = (r["rps"], r["p50_ms"], cpu_ms / r["requests"])
                        results.setdefault((name, conc), []).append(sample)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
    print(f"median of {args.repeats} x {args.duration}s, one worker each, wrk -t1")
    header = ("target", "conc", "rps", "p50 ms", "cpu ms/req", "rps / floor")
    print("{:<10} {:>4} {:>8} {:>7} {:>10} {:>11}".format(*header))
    for conc in concs:
        floor_rps = statistics.median(s[0] for s in results[("floor", conc)])
        for name in targets:
            samples = results[(name, conc)]
            rps = statistics.median(s[0] for s in samples)
            p50 = statistics.median(s[1] for s in samples)
            cpu = statistics.median(s[2] for s in samples)
            ratio = rps / floor_rps
            print(f"{name:<10} {conc:>4} {rps:>8.0f} {p50:>7.3f} {cpu:>10.3f} {ratio:>11.2f}")


if __name__ == "__main__":
    main()
