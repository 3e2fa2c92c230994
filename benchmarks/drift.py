"""Drift sampling cost: the same model served with and without a drift monitor, same run.

Two gateways serve the same cheap model (gradient boosting, 20 trees, on scikit-learn's bundled
diabetes data: the gateway's own work dominates, the worst case for a per-call overhead) behind
the same pipeline. One adds `training` (the diabetes data's profile, written as a file) and
`drift` with a 5-second window, so windows close and are analysed (in a worker thread) during
each run: the cost measured is the reservoir offer on every call plus the analysis. wrk drives
each in turn at c=16, alternating which goes first. Throughput on a shared 2-core machine
varies by ±10% between runs of the same gateway, so the report gives, besides the medians, the
median of the per-repeat ratios and the gateway CPU time per request (from /proc), whose ratio
is the steadier measure of what the monitor costs: capacity is 1 / CPU per request.

Target (issue 8): drift sampling costs ≤ 5% of gateway throughput (ratio ≥ 0.95).

It also times one report's statistics (30 features by 1,000 live rows, from the profile) against
`scipy.stats.ks_2samp` over the same features with the full raw reference, best of 5 each.

Usage: ``.venv/bin/python benchmarks/drift.py [--duration 6] [--repeats 8]``; writes
``benchmarks/results/drift.md``. About two minutes. Needs wrk (Debian package).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import loadgen
import testbed
from testbed import Gateway, WrkResult

CONC = 16
WINDOW_S = 5.0


def profile_file(directory: Path) -> Path:
    """The diabetes data's profile, as `seawall data show --json` would give its `profile`."""
    import pandas as pd
    from sklearn.datasets import load_diabetes

    from seawall.data.profile import profile

    frame = load_diabetes(as_frame=True).frame
    path = directory / "diabetes.profile.json"
    columns = dict.fromkeys(frame.columns, "float")
    path.write_text(json.dumps(profile(pd.DataFrame(frame), columns)))
    return path


def configs(model: testbed.ModelSpec, profile: Path, workers: int) -> dict[str, str]:
    """Config text of the plain gateway and of the one with a drift monitor."""
    plain = json.loads(testbed.gateway_config(model, workers=workers, max_queue=256))
    monitored = json.loads(json.dumps(plain))
    entry = monitored["models"][0]
    entry["training"] = {"file": str(profile), "target": "target"}
    entry["drift"] = {"window_s": WINDOW_S, "sample_size": 1000}
    return {"plain": json.dumps(plain), "drift": json.dumps(monitored)}


def measure(gateway: Gateway, body: bytes, duration_s: float) -> tuple[WrkResult, float]:
    """One wrk run, and the gateway's CPU milliseconds per request during it."""
    before = testbed.cpu_s(gateway.process.pid)
    result = testbed.wrk(gateway, body, CONC, duration_s)
    cpu_ms = (testbed.cpu_s(gateway.process.pid) - before) * 1000
    return result, cpu_ms / max(result.requests, 1)


def drift_rows(port: int) -> float:
    """Rows the gateway's latest drift reports were computed over (0: none yet)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("seawall_drift_sample_rows{")
    )


def compute_times() -> tuple[float, float]:
    """Seconds for one 30 x 1,000 drift report, and for scipy's ks_2samp on the same data."""
    import time

    import numpy as np
    import pandas as pd
    from scipy import stats

    from seawall.data.profile import profile
    from seawall.monitor import drift_report

    rng = np.random.default_rng(1)
    names = [f"f{i}" for i in range(30)]
    raw = {name: rng.normal(0, 1, 10_000) for name in names}
    reference = profile(pd.DataFrame(raw), dict.fromkeys(names, "float"))
    live = pd.DataFrame({name: rng.normal(0, 1, 1000) for name in names})
    rows = live.to_dict("records")

    def best(work: object) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            work()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    ours = best(lambda: drift_report(reference, rows, model="m", version="1", window=(0, 1)))
    theirs = best(lambda: [stats.ks_2samp(live[n], raw[n], method="asymp") for n in names])
    return ours, theirs


def report(
    samples: dict[str, list[WrkResult]],
    cpu: dict[str, list[float]],
    rows: float,
    compute: tuple[float, float],
    argv: Sequence[str],
) -> str:
    """The markdown report."""
    med = statistics.median
    plain, drift = samples["plain"], samples["drift"]
    pairs = [d.goodput / p.goodput for p, d in zip(plain, drift, strict=True)]
    ratio = med(pairs)
    cpu_pairs = [p / d for p, d in zip(cpu["plain"], cpu["drift"], strict=True)]
    cpu_ratio = med(cpu_pairs)

    def row(name: str, results: list[WrkResult], cpu_ms: list[float]) -> list[object]:
        return [
            name,
            f"{med(r.goodput for r in results):.0f}",
            f"{med(r.p50_ms for r in results):.2f}",
            f"{med(r.p99_ms for r in results):.2f}",
            f"{med(cpu_ms):.3f}",
            ", ".join(f"{r.goodput:.0f}" for r in results),
        ]

    failed = sum(r.non2xx + r.errors for r in (*plain, *drift))
    checks: list[loadgen.Check] = [
        (
            "capacity with drift ÷ without (CPU per request, without ÷ with)",
            "≥ 0.95",
            f"{cpu_ratio:.3f} (per repeat: {', '.join(f'{p:.3f}' for p in cpu_pairs)})",
            cpu_ratio >= 0.95,
        ),
        (
            f"2xx/s with drift ÷ without, c={CONC} (median of the repeats' ratios)",
            "≥ 0.95",
            f"{ratio:.3f} (per repeat: {', '.join(f'{p:.3f}' for p in pairs)})",
            ratio >= 0.95,
        ),
        ("drift reports computed during the runs", "> 0 rows", f"{rows:.0f} rows", rows > 0),
        ("failed calls (non-2xx, errors)", "0", str(failed), failed == 0),
        (
            "one report (30 features x 1,000 rows) ÷ scipy ks_2samp on the raw reference",
            "< 1",
            f"{compute[0] / compute[1]:.2f} ({compute[0] * 1000:.1f} vs "
            f"{compute[1] * 1000:.1f} ms)",
            compute[0] < compute[1],
        ),
    ]
    header = ["gateway", "2xx/s", "p50 ms", "p99 ms", "CPU ms / req", "2xx/s per repeat"]
    rows_of_table = [
        row("without drift", plain, cpu["plain"]),
        row("with drift", drift, cpu["drift"]),
    ]
    return (
        "\n".join(
            [
                "# Drift sampling: the same gateway with and without a drift monitor",
                "",
                *loadgen.machine_lines(argv),
                "- model: scikit-learn GradientBoostingRegressor, 20 trees, diabetes (10 features)",
                f"- drift: `window_s: {WINDOW_S:g}`, `sample_size: 1000`, training profile from a "
                "file, prediction drift against `target`",
                f"- load: wrk -t1 -c{CONC}, medians of the repeats, the two gateways "
                "alternating first",
                "",
                loadgen.markdown_table(header, rows_of_table),
                "",
                loadgen.checks_table(checks),
            ]
        )
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Start both gateways, alternate wrk runs between them, write the report."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    samples: dict[str, list[WrkResult]] = {"plain": [], "drift": []}
    cpu: dict[str, list[float]] = {"plain": [], "drift": []}
    with tempfile.TemporaryDirectory(prefix="seawall-drift-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        model = testbed.gradient_boosting(workdir, 20)
        texts = configs(model, profile_file(workdir), workers=2)
        gateways = {}
        for name, text in texts.items():
            config = workdir / f"{name}.yaml"
            config.write_text(text)
            gateways[name] = stack.enter_context(testbed.serve(config, model.body))
        for gateway in gateways.values():
            testbed.wrk(gateway, model.body, CONC, 2)  # warm-up
        for repeat in range(args.repeats):
            for name in ["plain", "drift"][:: 1 if repeat % 2 == 0 else -1]:
                result, cpu_ms = measure(gateways[name], model.body, args.duration)
                print(f"repeat {repeat} {name}: {result.goodput:.0f} 2xx/s", flush=True)
                samples[name].append(result)
                cpu[name].append(cpu_ms)
        rows = drift_rows(gateways["drift"].port)
    text = report(samples, cpu, rows, compute_times(), ["benchmarks/drift.py", *argv])
    print(text)
    if not args.no_write:
        print(f"wrote {loadgen.write_report('drift', text)}")


if __name__ == "__main__":
    main()
