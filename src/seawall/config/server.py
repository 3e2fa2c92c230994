"""`ServerSettings`: the HTTP server, request deadlines and the process lifecycle."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from seawall.config.base import Settings

__all__ = ["ServerSettings"]


class ServerSettings(Settings):
    """The HTTP server and its lifecycle."""

    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port to listen on (0 picks a free one)."""
    workers: int = Field(1, ge=1, le=64)
    """Gateway processes sharing the port (`--workers`); more than one needs shared rate-limit
    storage (`ratelimit.storage: redis`) when limits are configured."""
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1)
    """Largest request body accepted, after decompression; larger ones get 413."""
    shutdown_grace_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long in-flight requests may take to finish before they are cancelled."""
    shutdown_delay_s: float = Field(0.0, ge=0)
    """On SIGTERM, how long to keep serving with readiness false before closing the listener."""
    default_timeout_ms: int | None = Field(30_000, ge=1)
    """End-to-end deadline of a call whose client sends no `x-seawall-timeout-ms` (null: none)."""
    llm_default_timeout_ms: int | None = Field(600_000, ge=1)
    """The same for LLM calls on `/v1/...`, which may stream for minutes (null: none)."""
    max_timeout_ms: int = Field(600_000, ge=1)
    """Cap on the deadline a client may ask for with `x-seawall-timeout-ms`."""
    strict_readiness: bool = False
    """If true, /v2/health/ready is true only when every model is ready; else when one is."""
    access_log: bool = False
    """Write one JSON log line per request."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level of log records written."""
    log_format: Literal["json", "text"] = "json"
    """`json`: one JSON object per line; `text`: human-readable lines."""
