"""A forking "zygote" for the SIGKILL crash tests: import once, then fork a child per run.

Starting Python with SQLAlchemy, pandas and pyarrow takes 0.5 to 2 s on this machine, so the
crash tests fork their victims from a process that imported everything once. The zygote is
single-threaded and runs nothing before forking, so no library thread is copied half-way; each
child opens its own database connections, as a fresh process would.

A test gives the zygote a `PRELUDE` (imports, and an `async def child(*args)`); the zygote
reads one line of space-separated arguments per run from stdin, forks, runs `child(*args)`
in the child (exit status 0 when it returns, 1 when it raises), and says `child PID` and then
`exit PID STATUS`. Whatever else the child writes to stdout is handed to the test's callback.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

__all__ = ["Child", "Zygote"]

_FORK_LOOP = textwrap.dedent(
    """
    import asyncio as _asyncio, os as _os, sys as _sys

    for _line in _sys.stdin:
        _pid = _os.fork()
        if _pid == 0:
            _status = 1
            try:
                _asyncio.run(child(*_line.split()))
                _status = 0
            finally:
                _os._exit(_status)
        print(f"child {_pid}", flush=True)
        _, _status = _os.waitpid(_pid, 0)
        print(f"exit {_pid} {_status}", flush=True)
    """
)


@dataclass
class Child:
    """One forked child: its pid, its wait status, and how long it lived."""

    pid: int = 0
    status: int = -1
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        """Whether SIGKILL ended it."""
        return os.WIFSIGNALED(self.status) and os.WTERMSIG(self.status) == signal.SIGKILL


class Zygote:
    """The forking parent; `run` forks a child, kills it after `kill_after_s` if given."""

    def __init__(self, prelude: str, *argv: str, timeout_s: float = 60.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(prelude) + _FORK_LOOP, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._stdin: IO[str] = self.process.stdin
        self._timeout_s = timeout_s
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(line.rstrip("\n"))

    def run(
        self, args: list[str], on_line: Callable[[str], None], kill_after_s: float | None = None
    ) -> Child:
        """Fork a child with `args`; lines it writes go to `on_line`; wait until it ends."""
        child = Child()
        self._stdin.write(" ".join(args) + "\n")
        self._stdin.flush()
        while not child.pid:
            self._take(child, on_line)
        started = time.monotonic()
        if kill_after_s is not None:
            try:
                time.sleep(kill_after_s)
            finally:  # never leave a child running, whatever happens to the test
                with contextlib.suppress(ProcessLookupError):  # it ended already
                    os.kill(child.pid, signal.SIGKILL)
        while child.status < 0:
            self._take(child, on_line)
        child.seconds = time.monotonic() - started
        return child

    def _take(self, child: Child, on_line: Callable[[str], None]) -> None:
        line = self._lines.get(timeout=self._timeout_s)
        kind, *values = line.split() or [""]
        if kind == "child" and len(values) == 1 and not child.pid:
            child.pid = int(values[0])
        elif kind == "exit" and len(values) == 2 and int(values[0]) == child.pid:
            child.status = int(values[1])
        else:
            on_line(line)

    def close(self) -> None:
        """Stop the zygote (it exits at the end of its stdin)."""
        with contextlib.suppress(BrokenPipeError):  # the zygote died: the test says why
            self._stdin.close()
        try:
            self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
