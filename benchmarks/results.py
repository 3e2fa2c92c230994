"""Assemble `benchmarks/RESULTS.md` from the latest `benchmarks/results/*.md` of each benchmark.

`make bench` runs every benchmark (each writes its own section under `results/`), then this.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Sections in the order they appear; a benchmark not run yet is listed as missing.
ORDER = ("peers", "batching", "overload", "memory", "ingest", "backup", "drift")

HEADER = """# Benchmark results

Latest figures of each benchmark in `benchmarks/`, produced by `make bench` (or by running one
script; each writes `benchmarks/results/<name>.md`). Every figure that is compared is compared
with a reference measured in the same run on the same machine; absolute numbers move by up to
30% between runs on shared 2-core machines, ratios much less. Assembled {when}.
"""


def assemble(results: Path = HERE / "results") -> str:
    parts = [HEADER.format(when=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")]
    for name in ORDER:
        section = results / f"{name}.md"
        if section.exists():
            parts.append(section.read_text(encoding="utf-8").strip() + "\n")
        else:
            parts.append(f"### {name}\n\nNot run yet: `.venv/bin/python benchmarks/{name}.py`.\n")
    return "\n".join(parts)


def main() -> int:
    (HERE / "RESULTS.md").write_text(assemble(), encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
