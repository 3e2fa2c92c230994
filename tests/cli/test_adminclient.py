"""`AdminClient` against a scripted HTTP server: the key only in `Authorization`, never followed
through a redirect; the gateway's error message; no answer; `admin_key` from a file or the env."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from seawall.cli.adminclient import AdminClient, GatewayError, admin_key
from seawall.errors import ConfigError

KEY = "client-secret-0123456789"


@dataclass
class Script:
    """What the server answers next, and what it was sent."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    delay_s: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            script.seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
            if script.delay_s:
                release.wait(script.delay_s)
            self.send_response(script.status)
            for name, value in script.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(script.body)))
            self.end_headers()
            self.wfile.write(script.body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_a_post_sends_json_with_the_key_as_a_bearer_token(server: tuple[str, Script]) -> None:
    url, script = server
    script.body = b'{"id": 3}'

    answer = AdminClient(url + "/", KEY).post("/admin/rollouts/iris/pause", {"reason": "x"})

    assert answer == {"id": 3}
    [request] = script.seen
    assert (request["method"], request["path"]) == ("POST", "/admin/rollouts/iris/pause")
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["headers"]["content-type"] == "application/json"
    assert json.loads(request["body"]) == {"reason": "x"}


def test_a_get_sends_its_query(server: tuple[str, Script]) -> None:
    url, script = server
    script.body = b"[]"
    assert AdminClient(url, KEY).get("/admin/rollouts", {"active_only": True, "limit": 5}) == []
    assert script.seen[0]["path"] == "/admin/rollouts?active_only=true&limit=5"
    assert script.seen[0]["body"] == b""


def test_an_error_carries_the_status_and_the_gateways_message(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.status, script.body = 409, b'{"error": "pause: the rollout is paused"}'
    with pytest.raises(GatewayError) as failed:
        AdminClient(url, KEY).post("/admin/rollouts/iris/pause", {})
    assert (failed.value.status, failed.value.message) == (409, "pause: the rollout is paused")


def test_an_error_without_json_quotes_the_start_of_the_body(server: tuple[str, Script]) -> None:
    url, script = server
    script.status, script.body = 502, b"<html>" + b"x" * 500
    script.headers = {"content-type": "text/html"}
    with pytest.raises(GatewayError) as failed:
        AdminClient(url, KEY).get("/admin/rollouts")
    assert failed.value.status == 502
    assert failed.value.message == "502 Bad Gateway: <html>" + "x" * 194


def test_a_success_without_json_is_an_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.body = b"not json"
    with pytest.raises(GatewayError, match="the gateway answered 200 with no JSON"):
        AdminClient(url, KEY).get("/admin/rollouts")


def test_a_redirect_is_not_followed_and_the_key_goes_nowhere_else(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.status, script.body = 307, b""
    script.headers = {"location": "http://elsewhere.example/admin/rollouts"}
    with pytest.raises(GatewayError) as failed:
        AdminClient(url, KEY).get("/admin/rollouts")
    assert failed.value.status == 307
    assert failed.value.message == (
        "redirected (307) to http://elsewhere.example/admin/rollouts: pass that URL as --gateway"
    )
    assert len(script.seen) == 1


def test_no_answer_in_time_is_an_error_without_a_status(server: tuple[str, Script]) -> None:
    url, script = server
    script.delay_s = 5.0
    with pytest.raises(GatewayError) as failed:
        AdminClient(url, KEY, timeout_s=0.2).get("/admin/rollouts")
    assert failed.value.status is None
    assert failed.value.message == f"cannot reach {url}: no answer in time"


@pytest.mark.parametrize("url", ["ftp://gateway", "gateway:8000", "http://", "file:///etc/x"])
def test_only_http_urls_are_taken(url: str) -> None:
    with pytest.raises(ConfigError, match="--gateway: an http:// or https:// URL"):
        AdminClient(url, KEY)


def test_the_key_never_shows(server: tuple[str, Script]) -> None:
    url, _ = server
    client = AdminClient(url, KEY)
    assert KEY not in repr(client)
    assert KEY not in str(vars(client).get("base_url"))


# --- admin_key --------------------------------------------------------------------------------


def test_the_key_file_wins_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("from-file\n", encoding="utf-8")
    assert admin_key(path, {"SEAWALL_ADMIN_KEY": "from-env"}) == "from-file"


def test_the_key_comes_from_the_variable_or_the_file_it_names(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("mounted\r\n", encoding="utf-8")
    assert admin_key(None, {"SEAWALL_ADMIN_KEY": "plain"}) == "plain"
    assert admin_key(None, {"SEAWALL_ADMIN_KEY_FILE": str(path)}) == "mounted"
    with pytest.raises(ConfigError, match="are both set"):
        admin_key(None, {"SEAWALL_ADMIN_KEY": "a", "SEAWALL_ADMIN_KEY_FILE": str(path)})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--key-file: cannot read {path}: No such file or directory"),
        (b"\n", "--key-file: {path} is empty"),
        (b"\xff\xfe", "--key-file: {path} is not UTF-8 text"),
    ],
)
def test_a_bad_key_file_is_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as refused:
        admin_key(path, {})
    assert str(refused.value) == message.format(path=path)


def test_no_key_anywhere_says_where_to_put_one() -> None:
    with pytest.raises(ConfigError, match="no admin API key: set SEAWALL_ADMIN_KEY"):
        admin_key(None, {})
