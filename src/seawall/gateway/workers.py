"""Several gateway processes on one listening socket (`seawall serve --workers N`).

The supervisor binds the socket, then starts N workers with the `spawn` method (a fresh
interpreter each: nothing half-initialised is inherited, model files are loaded by each worker).
Each worker is a complete gateway on the shared socket; the kernel spreads connections over
them. What must hold across workers is kept where they all see it:

- rate limits, token limits, budgets: Redis (`ratelimit.storage: redis`); with in-memory
  storage every worker would enforce the full limit on its own, so the supervisor refuses to
  start (`check_workers`);
- metrics: prometheus_client's multiprocess mode (one directory of files, summed at /metrics).

Lifecycle: SIGTERM or SIGINT to the supervisor is passed on to every worker, each drains as
a single gateway does (readiness false, `shutdown_delay_s`, in-flight requests finish within
`shutdown_grace_s`); the supervisor exits 0 when all did. A worker that dies on its own is
restarted, at most `MAX_RESTARTS` times per `RESTART_WINDOW_S`; beyond that the supervisor
stops the others and exits 1 (a crash loop must be seen, not hidden).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from multiprocessing.process import BaseProcess
from types import FrameType

from seawall.config import SeawallConfig, load_config
from seawall.errors import ConfigError
from seawall.gateway.metrics import MULTIPROCESS_ENV

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW_S", "check_workers", "supervise"]

logger = logging.getLogger("seawall.gateway")

#: Restarts of crashed workers allowed within `RESTART_WINDOW_S` before giving up.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
#: Seconds between two looks at the workers.
_POLL_S = 0.2
#: Extra seconds a draining worker gets beyond its own delay and grace before SIGKILL.
_KILL_MARGIN_S = 10.0


def check_workers(config: SeawallConfig, workers: int) -> None:
    """Refuse `workers` > 1 where limits would silently multiply: in-memory rate-limit storage."""
    if workers <= 1 or config.ratelimit.storage == "redis":
        return
    limited = [
        where
        for where, present in (
            ("ratelimit.global", config.ratelimit.global_limit is not None),
            ("ratelimit.per_key", config.ratelimit.per_key is not None),
            ("ratelimit.keys", bool(config.ratelimit.keys)),
            (
                "a model's policies.ratelimit",
                any(config.policies_for(m).ratelimit is not None for m in config.models),
            ),
            (
                "an LLM group's ratelimit or tokens_per_minute",
                config.llm is not None
                and any(
                    g.policies.ratelimit is not None or g.tokens_per_minute is not None
                    for g in config.llm.models
                ),
            ),
            ("llm.budgets", config.llm is not None and config.llm.budgets is not None),
        )
        if present
    ]
    if limited:
        raise ConfigError(
            f"server.workers: {workers} workers with ratelimit.storage: memory would each "
            f"enforce the whole limit ({', '.join(limited)}), {workers}x what is configured; "
            "set ratelimit.storage: redis so the workers share one limit, or run one worker"
        )


def supervise(config: SeawallConfig, *, host: str, port: int, workers: int) -> int:
    """Serve with `workers` processes until a signal; the exit status (0: clean shutdown)."""
    check_workers(config, workers)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4096)
    listener.set_inheritable(True)
    metrics_dir = tempfile.mkdtemp(prefix="seawall-metrics-")
    os.environ[MULTIPROCESS_ENV] = metrics_dir  # inherited by the workers at spawn
    context = multiprocessing.get_context("spawn")
    supervisor = _Supervisor(config, listener, context, workers)
    bound = listener.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    # The line uvicorn's own supervisor logs once the socket is bound (tools wait for it).
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (%d workers; press CTRL+C to quit)",
        shown,
        bound,
        workers,
        extra={"host": host, "port": bound, "workers": workers},
    )
    try:
        return supervisor.run()
    finally:
        listener.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


class _Supervisor:
    def __init__(
        self,
        config: SeawallConfig,
        listener: socket.socket,
        context: multiprocessing.context.SpawnContext,
        workers: int,
    ) -> None:
        self._config = config
        self._listener = listener
        self._context = context
        self._workers: list[BaseProcess | None] = [None] * workers
        self._restarts: deque[float] = deque()
        self._stopping = False
        self._failed = False

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        try:
            for index in range(len(self._workers)):
                self._start(index)
            while not self._stopping:
                self._reap()
                time.sleep(_POLL_S)
            return self._stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self._stopping and sig == signal.SIGINT:  # a second Ctrl-C: now
            for process in self._alive():
                process.kill()
        self._stopping = True

    def _on_hangup(self, sig: int, frame: FrameType | None) -> None:
        # Each worker reloads itself; a worker started later reads the file as it is then.
        source = self._config.source
        if source is not None:
            with contextlib.suppress(ConfigError):  # the workers refuse it too, and say why
                self._config = load_config(source)
        for process in self._alive():
            if process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_worker,
            args=(self._config, self._listener, index),
            name=f"seawall-worker-{index}",
        )
        process.start()
        self._workers[index] = process

    def _reap(self) -> None:
        for index, process in enumerate(self._workers):
            if process is None or process.is_alive():
                continue
            _mark_dead(process)
            logger.error(
                "worker %d (pid %s) exited with status %s; restarting it",
                index,
                process.pid,
                process.exitcode,
            )
            now = time.monotonic()
            while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
                self._restarts.popleft()
            if len(self._restarts) >= MAX_RESTARTS:
                logger.error(
                    "workers crashed %d times in %.0f s: stopping", MAX_RESTARTS, RESTART_WINDOW_S
                )
                self._failed = True
                self._stopping = True
                return
            self._restarts.append(now)
            self._start(index)

    def _alive(self) -> list[BaseProcess]:
        return [p for p in self._workers if p is not None and p.is_alive()]

    def _stop(self) -> int:
        server = self._config.server
        for alive in self._alive():
            if alive.pid is not None:
                os.kill(alive.pid, signal.SIGTERM)
        deadline = (
            time.monotonic() + server.shutdown_delay_s + server.shutdown_grace_s + _KILL_MARGIN_S
        )
        for process in [w for w in self._workers if w is not None]:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.error("worker pid %s did not stop in time: killed", process.pid)
                process.kill()
                process.join(5)
                self._failed = True
            elif process.exitcode not in (0, -signal.SIGTERM):
                # -SIGTERM: a worker still starting, before it handles signals: nothing to drain.
                logger.error("worker pid %s exited with status %s", process.pid, process.exitcode)
                self._failed = True
            _mark_dead(process)
        return 1 if self._failed else 0


def _mark_dead(process: BaseProcess) -> None:
    """Drop a gone worker's live gauges (in flight) from the sums /metrics serves."""
    if process.pid is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


def _worker(config: SeawallConfig, listener: socket.socket, index: int) -> None:
    """One worker: a whole gateway on the shared socket (runs in a spawned interpreter)."""
    from seawall.gateway.server import serve_socket

    raise SystemExit(serve_socket(config, listener, worker=index))
