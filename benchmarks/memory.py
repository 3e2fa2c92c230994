"""Idle memory: the resident set of `seawall serve` once ready, with the demo models and without.

Three gateways, started one after the other and measured after `--settle` seconds of idleness:
the demo (`seawall demo`: scikit-learn, ONNX and Python models), the demo's ONNX and Python
models only (no scikit-learn import), and a mock model (the gateway alone). RSS is read from
/proc (`VmRSS`), and the top import costs are shown for the demo.

Usage: ``.venv/bin/python benchmarks/memory.py [--settle 3]``; writes
``benchmarks/results/memory.md``. About 30 seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_MIB = 150.0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident set of `pid` in MiB (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def idle_rss(config: Path, settle_s: float) -> float:
    """Start `seawall serve --config config`, wait until ready and idle, return its RSS in MiB."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "seawall", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{config} did not become ready")
        time.sleep(settle_s)
        return rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def only_kinds(demo_config: Path, kinds: set[str], out: Path) -> Path:
    """The demo config with only the models whose backend kind is in `kinds`."""
    import yaml

    document = yaml.safe_load(demo_config.read_text())
    document["models"] = [m for m in document["models"] if m["backend"]["kind"] in kinds]
    out.write_text(yaml.safe_dump(document))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before reading")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="seawall-memory-") as tmp:
        directory = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "seawall", "demo", "--dir", str(directory)],
            check=True,
            capture_output=True,
        )
        demo, settle = directory / "seawall.yaml", args.settle
        rows = [
            ("demo models (scikit-learn, ONNX, Python)", idle_rss(demo, settle)),
            (
                "demo's ONNX and Python models only",
                idle_rss(
                    only_kinds(demo, {"onnx", "python"}, directory / "lean.yaml"), args.settle
                ),
            ),
            (
                "gateway alone (a mock model)",
                idle_rss(_mock(directory), settle),
            ),
        ]
    lines = [
        f"### Idle memory ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {os.cpu_count()} CPUs, Linux {platform.release()}, Python "
        f"{platform.python_version()}. Command: `.venv/bin/python benchmarks/memory.py`. "
        f"RSS after {args.settle:g} s idle; target with the demo models ≤ {TARGET_MIB:g} MiB.",
        "",
        "| gateway | idle RSS MiB |",
        "|---|---:|",
        *(f"| {name} | {mib:.0f} |" for name, mib in rows),
    ]
    text = "\n".join(lines)
    print(text)
    out = HERE / "results" / "memory.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


def _mock(directory: Path) -> Path:
    path = directory / "mock.yaml"
    path.write_text("models: [{name: echo, backend: {kind: mock}}]\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
