"""Dynamic batching: the same in-process model served unbatched and batched, closed loop at c=64.

The model is gradient boosting on scikit-learn's bundled diabetes data (trained into a temporary
directory): scoring walks every tree once per call, so 32 rows cost little more than one. Two
gateways run side by side with the same pipeline (auth, rate limit, admission, circuit breaker,
retry, timeout, telemetry) and the same `workers`; one adds `policies: {batching: ...}` to the
model. wrk drives each in turn (c=64, one row per request), alternating which goes first in each
repeat; the report gives medians, the ratio batched ÷ unbatched, and the mean batch size from the
gateway's `seawall_batch_rows` histogram.

Target (issue 6): batched throughput ≥ 3x unbatched at c=64, with p95 no worse.

Usage: ``.venv/bin/python benchmarks/batching.py [--duration 12] [--repeats 3]``; writes
``benchmarks/results/batching.md``. About two minutes. Needs wrk (Debian package).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import loadgen
import testbed
from testbed import Gateway, ModelSpec, WrkResult

CONC = 64
#: Batching settings under test; flags override them.
MAX_BATCH_SIZE = 32
MAX_WAIT_MS = 2.0
MAX_QUEUE_ROWS = 256


@dataclass(frozen=True)
class Sample:
    """One wrk run against one gateway, with what the gateway spent and how it batched."""

    result: WrkResult
    cpu_ms_per_request: float
    mean_batch_rows: float | None


def metric_total(text: str, name: str) -> float:
    """The sum of every sample of the metric `name` in a Prometheus text exposition."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def scrape(gateway: Gateway) -> str:
    """The gateway's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=5) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def measure(gateway: Gateway, body: bytes, duration_s: float) -> Sample:
    """One closed-loop run at c=64, with the gateway's CPU and mean rows per backend call."""
    before_metrics = scrape(gateway)
    before_cpu = testbed.cpu_s(gateway.process.pid)
    result = testbed.wrk(gateway, body, CONC, duration_s)
    cpu_ms = (testbed.cpu_s(gateway.process.pid) - before_cpu) * 1000
    after_metrics = scrape(gateway)
    rows = [metric_total(t, "seawall_batch_rows_sum") for t in (before_metrics, after_metrics)]
    calls = [metric_total(t, "seawall_batch_rows_count") for t in (before_metrics, after_metrics)]
    batches = calls[1] - calls[0]
    mean_rows = (rows[1] - rows[0]) / batches if batches else None
    return Sample(result, cpu_ms / max(result.requests, 1), mean_rows)


def summary_row(name: str, samples: Sequence[Sample]) -> list[object]:
    """Medians over the repeats, as a table row."""
    med = statistics.median
    mean_rows = [s.mean_batch_rows for s in samples if s.mean_batch_rows is not None]
    return [
        name,
        f"{med(s.result.goodput for s in samples):.0f}",
        f"{med(s.result.p50_ms for s in samples):.1f}",
        f"{med(s.result.p95_ms for s in samples):.1f}",
        f"{med(s.result.p99_ms for s in samples):.1f}",
        f"{med(s.cpu_ms_per_request for s in samples):.3f}",
        f"{med(mean_rows):.1f}" if mean_rows else "1 (unbatched)",
        ", ".join(f"{s.result.goodput:.0f}" for s in samples),
        sum(s.result.non2xx + s.result.errors for s in samples),
    ]


def verdict(plain: Sequence[Sample], batched: Sequence[Sample]) -> list[loadgen.Check]:
    """The issue's targets: throughput ratio ≥ 3 and p95 no worse (medians), no failed calls."""
    med = statistics.median
    rps = med(s.result.goodput for s in batched) / med(s.result.goodput for s in plain)
    p95_b, p95_u = (med(s.result.p95_ms for s in group) for group in (batched, plain))
    failed = sum(s.result.non2xx + s.result.errors for s in (*plain, *batched))
    pairs = [b.result.goodput / u.result.goodput for u, b in zip(plain, batched, strict=True)]
    return [
        (
            f"2xx/s batched ÷ unbatched, c={CONC}",
            "≥ 3",
            f"{rps:.2f} (per repeat: {', '.join(f'{p:.2f}' for p in pairs)})",
            rps >= 3,
        ),
        ("p95 batched vs unbatched", "no worse", f"{p95_b:.1f} vs {p95_u:.1f} ms", p95_b <= p95_u),
        ("failed calls (non-2xx, errors)", "0", str(failed), failed == 0),
    ]


def report(
    model: ModelSpec,
    samples: dict[str, list[Sample]],
    settings: dict[str, float],
    args: argparse.Namespace,
    argv: Sequence[str],
) -> str:
    """The markdown report."""
    header = ["gateway", "2xx/s", "p50 ms", "p95 ms", "p99 ms", "gateway CPU ms / req"]
    header += ["rows per batch", "2xx/s per repeat", "failed"]
    plain, batched = samples["unbatched"], samples["batched"]
    table = loadgen.markdown_table(
        header, [summary_row("unbatched", plain), summary_row("batched", batched)]
    )
    batching = ", ".join(f"{k}: {v:g}" for k, v in settings.items())
    lines = [
        "# Dynamic batching: unbatched vs batched, closed loop",
        "",
        *loadgen.machine_lines(argv),
        f"- model: {model.description}, `workers: {args.workers}` in both; 1 row per request",
        "- pipeline (both): auth, rate limit, admission (defaults), circuit breaker, "
        "retry (2 attempts), timeout (10 s), telemetry",
        f"- batched: `policies: {{batching: {{{batching}}}}}`",
        f"- load: wrk -t1 -c{CONC} -d{args.duration:g}s, medians of {args.repeats} repeats, "
        "the two gateways alternating first",
        "",
        table,
        "",
        loadgen.checks_table(verdict(plain, batched)),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trees", type=int, default=2000, help="the model's cost per call")
    parser.add_argument("--workers", type=int, default=2, help="the backend's threads")
    parser.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE)
    parser.add_argument("--max-wait-ms", type=float, default=MAX_WAIT_MS)
    parser.add_argument("--no-write", action="store_true", help="print only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Start both gateways, alternate wrk runs between them, write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    settings = {
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
        "max_queue_rows": max(MAX_QUEUE_ROWS, args.max_batch_size),
        "max_concurrent_batches": args.workers,
    }
    samples: dict[str, list[Sample]] = {"unbatched": [], "batched": []}
    with tempfile.TemporaryDirectory(prefix="seawall-batching-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        print(f"training {args.trees} trees...", flush=True)
        model = testbed.gradient_boosting(workdir, args.trees)
        body = model.body
        gateways = {}
        for name, batching in (("unbatched", None), ("batched", settings)):
            config = workdir / f"{name}.yaml"
            config.write_text(
                testbed.gateway_config(
                    model, workers=args.workers, max_queue=256, admission={}, batching=batching
                )
            )
            gateways[name] = stack.enter_context(testbed.serve(config, body))
        for gateway in gateways.values():
            testbed.wrk(gateway, body, CONC, 2)  # warm-up
        for repeat in range(args.repeats):
            order = ["unbatched", "batched"][:: 1 if repeat % 2 == 0 else -1]
            for name in order:
                sample = measure(gateways[name], body, args.duration)
                print(f"repeat {repeat} {name}: {sample}", flush=True)
                samples[name].append(sample)
    text = report(model, samples, settings, args, ["benchmarks/batching.py", *argv])
    print(text)
    if not args.no_write:
        print(f"wrote {loadgen.write_report('batching', text)}")


if __name__ == "__main__":
    main()
