"""benchmarks/batching.py: batch sizes from /metrics, the verdict and the report."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    """A benchmark module, imported as the scripts import each other (benchmarks/ on the path)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


batching = load("batching")
testbed = load("testbed")

METRICS = """\
# HELP seawall_batch_rows Rows served by one backend call of a batching model, by target.
# TYPE seawall_batch_rows histogram
seawall_batch_rows_bucket{le="1.0",target="model:1"} 2.0
seawall_batch_rows_count{target="model:1"} 10.0
seawall_batch_rows_sum{target="model:1"} 250.0
seawall_batch_rows_sum{target="other:1"} 50.0
seawall_batch_rows_summary 7.0
"""


def sample(goodput: float, p95_ms: float, mean_rows: float | None = None, non2xx: int = 0) -> Any:
    requests = round(goodput * 10) + non2xx
    result = testbed.WrkResult(requests, 10.0, p95_ms / 2, p95_ms, p95_ms * 2, 0, non2xx)
    return batching.Sample(result, 0.5, mean_rows)


def test_a_metric_is_summed_over_its_labels_and_no_other_metric() -> None:
    assert batching.metric_total(METRICS, "seawall_batch_rows_sum") == 300
    assert batching.metric_total(METRICS, "seawall_batch_rows_count") == 10
    assert batching.metric_total(METRICS, "seawall_missing") == 0


def test_the_verdict_takes_medians_and_pairs_repeats() -> None:
    plain = [sample(500, 100), sample(600, 120), sample(400, 90)]
    batched = [sample(2000, 80, 30), sample(1500, 100, 31), sample(1400, 70, 29)]
    (throughput, p95, failed) = batching.verdict(plain, batched)
    assert throughput[2] == "3.00 (per repeat: 4.00, 2.50, 3.50)"
    assert throughput[3] is True
    assert p95[2] == "80.0 vs 100.0 ms"
    assert p95[3] is True
    assert failed[3] is True


def test_the_verdict_fails_on_a_worse_p95_or_failed_calls() -> None:
    plain = [sample(500, 50)]
    assert [c[3] for c in batching.verdict(plain, [sample(2000, 60, 30)])] == [True, False, True]
    failing = [sample(2000, 40, 30, non2xx=3)]
    assert [c[3] for c in batching.verdict(plain, failing)] == [True, True, False]


def test_the_report_shows_both_gateways_and_the_batch_size() -> None:
    args = batching.parse_args(["--repeats", "1"])
    spec = testbed.ModelSpec(description="a model", backend={}, body=b"")
    samples = {"unbatched": [sample(500, 50)], "batched": [sample(2000, 40, 28.5)]}
    text = batching.report(spec, samples, {"max_batch_size": 32}, args, ["benchmarks/batching.py"])
    assert "| unbatched | 500 |" in text
    assert "| batched | 2000 |" in text
    assert "| 28.5 |" in text
    assert "`policies: {batching: {max_batch_size: 32}}`" in text
