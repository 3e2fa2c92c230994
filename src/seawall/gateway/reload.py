"""`ConfigReloader`: re-read the config file and swap it in without a restart (`SIGHUP`).

The file is read and validated first; a file that does not validate changes nothing. The
listener (`server.host`, `server.port`, `server.workers`) cannot move without a restart, so a
change there is refused too. Otherwise the new models load beside the old ones and the gateway
switches when they are ready (`Gateway.reload`: a reload that would leave a serving model
unready is refused, and in-flight requests finish on the old models).

Every attempt, applied or refused, is an audit record `config.reload` (actor `signal:SIGHUP`
or the caller's), with the sha256 of the file as read (not its interpolated values: those may
hold secrets), when the gateway has a database (`database_url`). Reloads run one at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

from seawall.assemble import Assembly, assemble
from seawall.config import SeawallConfig, load_config
from seawall.errors import ConfigError
from seawall.gateway.app import Gateway, ReloadOutcome, ReloadRefusedError
from seawall.gateway.logs import configure_logging
from seawall.pipeline import EventSink, discard

__all__ = ["RESTART_ONLY", "ConfigReloader"]

logger = logging.getLogger("seawall.gateway")

#: Server settings a running gateway cannot change: the listener and its processes.
RESTART_ONLY = ("host", "port", "workers")


class ConfigReloader:
    """Reloads `gateway` from the file at `path` (the one it was started from)."""

    def __init__(
        self,
        gateway: Gateway,
        path: str | Path,
        config: SeawallConfig,
        *,
        on_event: EventSink = discard,
        environ: dict[str, str] | None = None,
    ) -> None:
        self._gateway = gateway
        self._path = Path(path)
        self._config = config
        self._on_event = on_event
        self._environ = environ
        self._lock = asyncio.Lock()

    @property
    def config(self) -> SeawallConfig:
        """The configuration serving now."""
        return self._config

    async def reload(self, *, actor: str = "signal:SIGHUP") -> ReloadOutcome:
        """Apply the file as it is now; `ConfigError` or `ReloadRefusedError` if refused."""
        async with self._lock:
            digest = await asyncio.to_thread(_digest, self._path)
            try:
                config = await asyncio.to_thread(load_config, self._path, self._environ)
                self._check_listener(config)
                assembly = assemble(config, on_event=self._on_event)
                outcome = await self._gateway.reload(assembly, settings=config.server)
            except (ConfigError, ReloadRefusedError) as exc:
                logger.error("configuration reload refused", extra={"reason": str(exc)})
                await self._audit(self._gateway.assembly, actor, digest, refused=str(exc))
                raise
            if config.server.log_level != self._config.server.log_level or (
                config.server.log_format != self._config.server.log_format
            ):
                configure_logging(config.server.log_level, config.server.log_format)
            self._config = config
            await self._audit(assembly, actor, digest, outcome=outcome)
            return outcome

    def _check_listener(self, config: SeawallConfig) -> None:
        old, new = self._config.server, config.server
        moved = [f for f in RESTART_ONLY if getattr(old, f) != getattr(new, f)]
        if moved:
            raise ConfigError(
                f"server.{moved[0]}: cannot change without a restart "
                f"({getattr(old, moved[0])!r} → {getattr(new, moved[0])!r})"
            )

    async def _audit(
        self,
        assembly: Assembly,
        actor: str,
        digest: str,
        *,
        outcome: ReloadOutcome | None = None,
        refused: str | None = None,
    ) -> None:
        control = assembly.shared.control if assembly.shared is not None else None
        if control is None:
            return
        details: dict[str, Any] = {"sha256": digest}
        if outcome is not None:
            details |= {
                "outcome": "applied",
                "added": list(outcome.added),
                "removed": list(outcome.removed),
                "kept": len(outcome.kept),
            }
        else:
            details |= {"outcome": "refused", "reason": refused}
        try:
            audit = await control.audit()
            await audit.append(actor, "config.reload", str(self._path), details)
        except Exception:  # the reload stands (or stays refused) even if it cannot be recorded
            logger.exception("could not record a configuration reload")


def _digest(path: Path) -> str:
    """The file's sha256 ("" if it cannot be read: `load_config` then says why)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
