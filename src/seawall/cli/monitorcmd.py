"""`seawall monitor drift`: the drift reports the gateway saved, per model version and window;
`seawall monitor skew`: training/serving skew of two files joined on an entity key.

The database is chosen as for `seawall db` (`--url`, else `--config`'s `database_url`, else
`SEAWALL_DATABASE_URL`, else `./seawall.db`), migrated beforehand by `seawall db upgrade`.

Exit status, so scripts can gate on it: 0 when the newest report listed is stable or had too
little data (or there is none), 3 when it is drifting (or a feature is skewed), 2 on bad input
(an option out of range, a database without the drift reports table, an unreadable file), 1
when the database fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from seawall.cli.dbcmd import ConfigOption, UrlOption, database_or_exit, require_table
from seawall.cli.output import echo_json, echo_table, when
from seawall.cli.registryaccess import reported
from seawall.errors import InvalidInputError
from seawall.store import StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from seawall.monitor.reports import DriftReportRecord, DriftReportStore

__all__ = ["EXIT_DRIFTING", "monitor_app"]

#: Exit status of `seawall monitor drift` when the newest report listed is drifting.
EXIT_DRIFTING = 3

monitor_app = typer.Typer(
    help="What the monitors saw: drift reports per model version and window.",
    no_args_is_help=True,
)
T = TypeVar("T")


def run_reports(
    config: Path | None, url: str | None, work: Callable[[DriftReportStore], Coroutine[Any, Any, T]]
) -> T:
    """Run `work` on the drift reports of `--config`/`--url`; exit 2 if the table is missing."""
    from seawall.monitor.reports import DriftReportStore  # deferred: loads numpy and scipy

    database = database_or_exit(config, url)
    try:
        try:
            require_table(database, "drift_reports", "drift reports")
        except StoreUnavailableError:
            raise
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        return asyncio.run(work(DriftReportStore(database)))
    finally:
        database.close()


@monitor_app.command("drift")
def drift(
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Only this version (with --model: details).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most N, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """List drift reports, newest window first; exit 3 if the newest one listed is drifting.

    With --model and --version, also the newest report's statistics, feature by feature.
    """
    with reported():
        for name, value in (("--model", model), ("--version", version)):
            if value is not None and not value.strip():
                raise InvalidInputError(name, "must not be empty")
        records = run_reports(config, url, lambda s: s.latest(model, version, limit))
    if as_json:
        echo_json([r.to_json() for r in records])
    elif not records:
        typer.echo("no drift reports")
    else:
        print_reports(records)
        if model is not None and version is not None:
            typer.echo("")
            print_results(records[0].report.get("results", []))
    if records and records[0].drifting:
        raise typer.Exit(EXIT_DRIFTING)


def print_reports(records: Sequence[DriftReportRecord]) -> None:
    """One line per report: who, which window, how many rows, the verdict and what drifted."""
    echo_table(
        ["model", "version", "window end", "rows", "verdict", "score", "drifted"],
        (
            [
                r.model,
                r.version,
                when(r.window_end),
                str(r.samples),
                r.verdict,
                _number(r.score, ".3f"),
                ", ".join(r.drifted_features) or "-",
            ]
            for r in records
        ),
    )


def print_results(results: Sequence[Mapping[str, Any]]) -> None:
    """A report's statistics: one line per feature and statistic."""
    echo_table(
        ["feature", "stat", "value", "p-value", "threshold", "drifted"],
        (
            [
                str(r.get("feature")),
                str(r.get("stat")),
                _number(r.get("value"), ".4g"),
                _number(r.get("p_value"), ".3g"),
                _number(r.get("threshold"), ".4g"),
                "yes" if r.get("drifted") else "no",
            ]
            for r in results
        ),
    )


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@monitor_app.command("skew")
def skew_cmd(
    training: Annotated[Path, typer.Option("--training", help="Training rows: .csv or .parquet.")],
    serving: Annotated[
        Path, typer.Option("--serving", help="Rows logged at serving time: .csv or .parquet.")
    ],
    key: Annotated[str, typer.Option("--key", help="The column naming the entity on both.")],
    max_mismatch_share: Annotated[
        float,
        typer.Option(min=0.0, max=0.999, help="A feature is skewed above this share of pairs."),
    ] = 0.01,
    rel_tol: Annotated[
        float, typer.Option(min=0.0, help="Numbers within this relative tolerance are equal.")
    ] = 1e-6,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Training/serving skew: the same entities' values in training and as served, per feature.

    Exit 3 if some feature is skewed, 2 on bad input (a missing or unreadable file, a key
    column missing from either side, no entity on both sides).
    """
    from seawall.monitor.skew import SkewOptions, skew  # `seawall.monitor.skew` is the module

    with reported():
        left, right = _rows(training, "--training", key), _rows(serving, "--serving", key)
        results = skew(
            left, right, key, SkewOptions(rel_tol=rel_tol, max_mismatch_share=max_mismatch_share)
        )
        if not results:
            raise InvalidInputError("--key", f"no {key!r} value is on both sides")
    if as_json:
        echo_json([r.to_json() for r in results])
    else:
        echo_table(
            ["feature", "matched", "mismatches", "share", "mean |diff|", "skewed"],
            (
                [
                    r.feature,
                    str(r.matched),
                    str(r.mismatches),
                    f"{r.mismatch_share:.2%}",
                    _number(r.mean_abs_diff, ".4g"),
                    "yes" if r.skewed else "no",
                ]
                for r in results
            ),
        )
    if any(r.skewed for r in results):
        raise typer.Exit(EXIT_DRIFTING)


def _rows(path: Path, option: str, key: str) -> list[dict[str, Any]]:
    """The rows of a CSV or Parquet file; `InvalidInputError` naming the option if unreadable."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise InvalidInputError(option, f"{path}: expected a .csv or .parquet file")
    except FileNotFoundError:
        raise InvalidInputError(option, f"no such file {str(path)!r}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(option, f"{path} is not readable: {exc}") from None
    if key not in frame.columns:
        raise InvalidInputError(option, f"{path} has no column {key!r}")
    rows: list[dict[str, Any]] = frame.to_dict("records")
    return rows
