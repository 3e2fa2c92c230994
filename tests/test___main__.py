"""`python -m seawall` is the `seawall` command."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

from seawall import __version__


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
    return subprocess.run(
        [sys.executable, "-m", "seawall", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_python_m_seawall_version_prints_the_version() -> None:
    done = run_module("version")

    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"seawall {__version__} (Python {platform.python_version()}, {sys.platform})\n"
    )


def test_python_m_seawall_passes_exit_statuses_through() -> None:
    done = run_module("config", "check", "/nonexistent/seawall.yaml")

    assert done.returncode == 2
    assert "error: /nonexistent/seawall.yaml: cannot read" in done.stderr
