"""Run the gateway under uvicorn, with Kubernetes-style graceful shutdown.

On SIGTERM or SIGINT: readiness turns false at once; after `shutdown_delay_s` the listener
closes; requests in flight get up to `shutdown_grace_s` to finish; backends close; exit 0.
A second SIGINT forces an immediate exit. On SIGHUP: the config file is read again and swapped
in without dropping a request (`seawall.gateway.reload`), or refused with the reason.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
import socket
import time
from types import FrameType

import uvicorn

from seawall.assemble import assemble
from seawall.config import SeawallConfig
from seawall.gateway.app import Gateway
from seawall.gateway.logs import configure_logging
from seawall.gateway.metrics import GatewayMetrics
from seawall.gateway.reload import ConfigReloader
from seawall.policies import PolicyTelemetry

__all__ = ["GatewayServer", "serve", "serve_socket"]

logger = logging.getLogger("seawall.gateway")


class GatewayServer(uvicorn.Server):
    """uvicorn's server, draining the gateway on the first signal and exiting 0 afterwards."""

    def __init__(
        self,
        config: uvicorn.Config,
        gateway: Gateway,
        *,
        delay_s: float = 0.0,
        reloader: ConfigReloader | None = None,
    ) -> None:
        super().__init__(config)
        self._gateway = gateway
        self._delay_s = delay_s
        self._exit_at: float | None = None
        self._reloader = reloader
        self._reloads: set[asyncio.Task[object]] = set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in _captured_signals: uvicorn would re-raise it and exit -15, not 0.
        if self._gateway.draining:
            if sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            return
        self._gateway.drain()
        logger.info(
            "signal received: draining",
            extra={"signal": signal.Signals(sig).name, "delay_s": self._delay_s},
        )
        if self._delay_s > 0:
            self._exit_at = time.monotonic() + self._delay_s
        else:
            self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything built so far (modules, models, pipelines) lives as long as the process:
        # move it out of the garbage collector's sight, so collections during requests only
        # scan what requests allocate (a full collection would walk ~1M startup objects).
        gc.collect()
        gc.freeze()
        if self._reloader is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_hangup)

    def _on_hangup(self) -> None:
        if self._reloader is None or self._gateway.draining:
            return
        logger.info("signal received: reloading the configuration", extra={"signal": "SIGHUP"})
        task: asyncio.Task[object] = asyncio.create_task(self._reload(self._reloader))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    @staticmethod
    async def _reload(reloader: ConfigReloader) -> object:
        try:
            return await reloader.reload()
        except Exception:  # refused (logged and audited by the reloader): keep serving
            return None

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(
    config: SeawallConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> int:
    """Build the gateway from `config` and serve until a signal; the process's exit status.

    With more than one worker (`workers`, else `server.workers`), a supervisor runs that many
    gateway processes on one socket (see `seawall.gateway.workers`).
    """
    settings = config.server
    configure_logging(settings.log_level, settings.log_format)
    host = host or settings.host
    port = settings.port if port is None else port
    count = settings.workers if workers is None else workers
    if count > 1:
        from seawall.gateway.workers import supervise

        return supervise(config, host=host, port=port, workers=count)
    return _run(config, host=host, port=port)


def serve_socket(config: SeawallConfig, listener: socket.socket, *, worker: int) -> int:
    """One worker of `--workers N`: serve on the supervisor's socket; the exit status."""
    configure_logging(config.server.log_level, config.server.log_format)
    logger.info("worker started", extra={"worker": worker, "pid": os.getpid()})
    host, port = listener.getsockname()[:2]
    return _run(config, host=host, port=port, sockets=[listener])


def _run(
    config: SeawallConfig, *, host: str, port: int, sockets: list[socket.socket] | None = None
) -> int:
    settings = config.server
    # Until the loop takes it over at start-up, a SIGHUP (a reload asked for too early) must
    # not kill the process, which is its default action.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    metrics = GatewayMetrics()
    telemetry = PolicyTelemetry(metrics.registry)
    gateway = Gateway(assemble(config, on_event=telemetry), settings, metrics=metrics)
    reloader = (
        None
        if config.source is None
        else ConfigReloader(gateway, config.source, config, on_event=telemetry)
    )
    uv_config = uvicorn.Config(
        gateway,
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        timeout_keep_alive=5,
    )
    server = GatewayServer(uv_config, gateway, delay_s=settings.shutdown_delay_s, reloader=reloader)
    server.run(sockets=sockets)
    return 0 if server.started else 1
