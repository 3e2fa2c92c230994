"""`AdminClient`: the CLI's calls to a running gateway's admin API, over HTTP (standard library).

The key goes in `Authorization: Bearer`, never in a URL, a message or a redirect: redirects are
not followed (a gateway does not send them; a proxy that does is reported). Every failure is a
`GatewayError` with the HTTP status (None: no answer) and the gateway's own message
(`{"error": ...}`), so the caller picks the exit status.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seawall.errors import ConfigError
from seawall.security.secrets import secret_from_env

__all__ = [
    "DEFAULT_GATEWAY",
    "DEFAULT_TIMEOUT_S",
    "KEY_ENV",
    "AdminClient",
    "GatewayError",
    "admin_key",
]

#: Where `seawall serve` listens by default.
DEFAULT_GATEWAY = "http://127.0.0.1:8000"
#: The variable holding the admin API key (or, with `_FILE`, the path of a file holding it).
KEY_ENV = "SEAWALL_ADMIN_KEY"
#: Longest wait for one answer.
DEFAULT_TIMEOUT_S = 30.0
#: At most this much of a non-JSON error body is quoted.
_QUOTED = 200


class GatewayError(Exception):
    """A call failed: `status` is the HTTP status (None when the gateway did not answer)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


class AdminClient:
    """Calls `base_url`'s admin API with `key`."""

    def __init__(self, base_url: str, key: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"--gateway: an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirect)

    def get(self, path: str, query: Mapping[str, str | int | bool] | None = None) -> Any:
        """GET `path` (with `query`); the JSON answer."""
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any) -> Any:
        """POST `body` as JSON to `path`; the JSON answer."""
        return self.request("POST", path, body=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int | bool] | None = None,
    ) -> Any:
        """Call the admin API; the decoded JSON answer, or `GatewayError`."""
        url = self.base_url + urllib.parse.quote(path)
        if query:
            url += "?" + urllib.parse.urlencode({k: _query_value(v) for k, v in query.items()})
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("accept", "application/json")
        if data is not None:
            request.add_header("content-type", "application/json")
        request.add_unredirected_header("authorization", f"Bearer {self._key}")
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                return _decoded(response.status, response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raise GatewayError(exc.code, _error_message(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise GatewayError(None, f"cannot reach {self.base_url}: {_why(exc)}") from None

    def __repr__(self) -> str:
        return f"AdminClient({self.base_url!r})"  # never the key


def admin_key(key_file: Path | None, environ: Mapping[str, str] | None = None) -> str:
    """The admin API key: `key_file`'s content, else `SEAWALL_ADMIN_KEY` (or its `_FILE`)."""
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except OSError as exc:
            why = exc.strerror or exc
            raise ConfigError(f"--key-file: cannot read {key_file}: {why}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--key-file: {key_file} is not UTF-8 text") from None
        if not text:
            raise ConfigError(f"--key-file: {key_file} is empty")
        return text
    key = secret_from_env(os.environ if environ is None else environ, KEY_ENV)
    if key is None:
        raise ConfigError(
            f"no admin API key: set {KEY_ENV} (or {KEY_ENV}_FILE to a file holding it), "
            "or pass --key-file"
        )
    return key


def _query_value(value: str | int | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _decoded(status: int, raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise GatewayError(status, f"the gateway answered {status} with no JSON") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    if 300 <= exc.code < 400:
        where = exc.headers.get("location", "elsewhere")
        return f"redirected ({exc.code}) to {where}: pass that URL as --gateway"
    raw = exc.read()
    try:
        message = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace").strip()[:_QUOTED]
        return f"{exc.code} {exc.reason}" + (f": {text}" if text else "")
    return str(message)


def _why(exc: OSError) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.timeout | TimeoutError):
        return "no answer in time"
    return getattr(reason, "strerror", None) or str(reason)
