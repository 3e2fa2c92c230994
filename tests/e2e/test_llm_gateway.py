"""Issue 5's LLM gateway acceptance, on a real `seawall serve` in front of fake OpenAI processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.e2e.conftest import GatewayProcess, Launch

pytestmark = pytest.mark.e2e

FAKE = Path(__file__).with_name("fake_openai.py")
ROOT = Path(__file__).resolve().parents[2]
#: The consumer key of the test gateway.
KEY = "sk-seawall-e2e-0123456789abcdef"
AUTH = {"authorization": f"Bearer {KEY}"}
#: Longest any single HTTP call of these tests may take.
HTTP_TIMEOUT_S = 15.0
#: Longest wait for something that should happen within a fraction of a second.
POLL_TIMEOUT_S = 10.0
#: The `chat` group's primary is cut after this much silence (first token, and idle mid-stream).
CUT_MS = 300
MESSAGES = [{"role": "user", "content": "Hello"}]

GATEWAY = """
server: {{host: 127.0.0.1, port: 8000, shutdown_grace_s: 1, log_level: info}}
auth:
  keys:
    - {{name: tester, key: "{key}", roles: [consumer]}}
llm:
  models:
    - name: chat
      deployments:
        - name: primary
          base_url: "{primary}/v1"
          model: upstream-primary
          tier: 0
          timeouts: {{connect_ms: 1000, first_token_ms: {cut}, idle_ms: {cut}}}
        - name: secondary
          base_url: "{secondary}"
          model: upstream-secondary
          tier: 1
          timeouts: {{connect_ms: 1000, first_token_ms: 5000, idle_ms: 5000}}
          policies: {{retry: {{attempts: 2, base_delay_ms: 10}}}}
      failover: {{allowed_fails: 1, cooldown_s: 0, budget: null}}
    - name: chat-rl
      deployments:
        - {{name: primary, base_url: "{primary}", model: rl-primary, tier: 0}}
        - {{name: secondary, base_url: "{secondary}", model: rl-secondary, tier: 1}}
      failover: {{allowed_fails: 1, cooldown_s: 0, budget: null}}
    - name: load
      deployments:
        - name: primary
          base_url: "{killable}"
          model: load-primary
          tier: 0
          timeouts: {{connect_ms: 1000, first_token_ms: 2000, idle_ms: 2000}}
        - name: secondary
          base_url: "{secondary}"
          model: load-secondary
          tier: 1
          timeouts: {{connect_ms: 1000, first_token_ms: 5000, idle_ms: 5000}}
      failover:
        allowed_fails: 1
        cooldown_s: 30
        budget: {{ratio: 1.0, window_s: 10, min_per_s: 10}}
    - name: drip
      deployments:
        - name: only
          base_url: "{drip}"
          model: drip-model
          timeouts: {{connect_ms: 1000, first_token_ms: 2000, idle_ms: 10000}}
    - name: patient
      deployments:
        - name: only
          base_url: "{drip}"
          model: patient-model
          timeouts: {{connect_ms: 1000, first_token_ms: {patience}, idle_ms: {patience}}}
      failover: {{allowed_fails: 1, cooldown_s: 0, budget: null}}
    - name: retrying
      deployments:
        - name: only
          base_url: "{primary}"
          model: retry-model
          policies: {{retry: {{attempts: 3, base_delay_ms: 10, max_delay_ms: 20}}}}
    - name: solo
      deployments:
        - {{name: only, base_url: "{primary}", model: solo-model}}
      fallbacks: [backup]
    - name: backup
      deployments:
        - {{name: only, base_url: "{secondary}", model: backup-model}}
"""
GROUPS = {"chat", "chat-rl", "load", "drip", "patient", "retrying", "solo", "backup"}
#: How long the `patient` group waits for a silent upstream's first token.
PATIENCE_MS = 3000


def text(name: str, chunks: int = 3) -> str:
    """What fake upstream `name` answers (as `fake_openai.text`)."""
    return "".join(f"{name}:{i} " for i in range(chunks))


class FakeUpstream:
    """One `fake_openai.py` process, scripted and inspected through its admin routes."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self._port_file = directory / f"{name}.port"
        self._log_path = directory / f"{name}.log"
        self._log = self._log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(FAKE), "--name", name, "--port-file", str(self._port_file)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + POLL_TIMEOUT_S
            while not self._port_file.exists():
                assert self.process.poll() is None, f"fake {name} exited: {self.log()}"
                assert time.monotonic() < deadline, f"fake {name} did not start: {self.log()}"
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{int(self._port_file.read_text())}"

    def _admin(self, method: str, path: str, document: Any = None) -> dict[str, Any]:
        response = httpx.request(method, self.url + path, json=document, timeout=HTTP_TIMEOUT_S)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def script(self, **fields: Any) -> None:
        """Replace the script (unnamed fields get their defaults: mode ok, 3 chunks...)."""
        self._admin("POST", "/admin/script", fields)

    def reset(self) -> None:
        self._admin("POST", "/admin/reset")

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "/admin/stats")

    def calls(self) -> int:
        """Model calls received since the last reset."""
        return int(self.stats()["calls"])

    def kill(self) -> None:
        """SIGKILL: the process dies at once, its connections with it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")


@dataclass(frozen=True)
class Fakes:
    primary: FakeUpstream
    secondary: FakeUpstream
    killable: FakeUpstream
    drip: FakeUpstream


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    directory = tmp_path_factory.mktemp("fakes")
    started: list[FakeUpstream] = []
    try:
        for name in ("primary", "secondary", "killable", "drip"):
            started.append(FakeUpstream(name, directory))
        yield Fakes(*started)
    finally:
        for fake in started:
            fake.stop()


@pytest.fixture(scope="module")
def gateway(
    fakes: Fakes, launch_shared: Launch, tmp_path_factory: pytest.TempPathFactory
) -> GatewayProcess:
    path = tmp_path_factory.mktemp("llm") / "seawall.yaml"
    path.write_text(
        GATEWAY.format(
            key=KEY,
            cut=CUT_MS,
            patience=PATIENCE_MS,
            primary=fakes.primary.url,
            secondary=fakes.secondary.url,
            killable=fakes.killable.url,
            drip=fakes.drip.url,
        ),
        encoding="utf-8",
    )
    return launch_shared(path)


@pytest.fixture(autouse=True)
def fresh(fakes: Fakes) -> None:
    """Every fake that outlives a test answers normally and counts from zero."""
    for fake in (fakes.primary, fakes.secondary, fakes.drip):
        fake.script()
        fake.reset()


@pytest.fixture
def sdk(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    """The official SDK on the gateway; no retries of its own, so every failure shows."""
    with openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0, timeout=HTTP_TIMEOUT_S
    ) as client:
        yield client


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = POLL_TIMEOUT_S) -> float:
    """Poll until `condition()`; the seconds it took. Fails after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"still not {what} after {timeout_s} s"
        time.sleep(0.01)
    return time.monotonic() - start


def metric(gateway: GatewayProcess, name: str, **labels: str) -> float:
    """One sample of the gateway's /metrics, 0.0 when absent."""
    response = httpx.get(f"{gateway.url}/metrics", timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of an SSE response, parsed (`[DONE]` stays a string)."""
    out: list[Any] = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def content_of(chunks: list[Any]) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in chunks
        if isinstance(c, dict) and c.get("choices")
    )


def answer_text(response: httpx.Response, *, stream: bool) -> str:
    """The text of a complete answer: the message, or a whole stream's deltas."""
    if not stream:
        content: str = response.json()["choices"][0]["message"]["content"]
        return content
    chunks = events(response)
    assert chunks[-1] == "[DONE]", chunks
    assert not any(isinstance(c, dict) and "error" in c for c in chunks), chunks
    return content_of(chunks)


def overhead_ms(headers: httpx.Headers) -> float:
    value = float(headers["x-seawall-overhead-ms"])
    assert 0.0 <= value < 1000.0, value
    return value


# --- 1. the official SDK --------------------------------------------------------------------


def test_the_openai_sdk_works_for_every_route(
    sdk: openai.OpenAI, fakes: Fakes, gateway: GatewayProcess
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    chat = raw.parse()
    assert chat.choices[0].message.content == text("primary")
    assert chat.usage is not None
    assert chat.usage.total_tokens == 10
    assert raw.headers["x-seawall-served-by"] == "chat/primary"
    overhead_ms(raw.headers)
    last = fakes.primary.stats()["last"]
    # The provider's model name replaces the group's; the client's key never reaches it.
    assert (last["path"], last["model"], last["authorization"]) == (
        "/v1/chat/completions",
        "upstream-primary",
        None,
    )

    stream = sdk.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
    with stream:
        deltas = [c.choices[0].delta.content for c in stream if c.choices]
    assert deltas == ["primary:0 ", "primary:1 ", "primary:2 ", None]

    completion = sdk.completions.create(model="chat", prompt="Say hi")
    assert completion.choices[0].text == text("primary")
    with sdk.completions.create(model="chat", prompt="Say hi", stream=True) as pieces:
        assert "".join(p.choices[0].text for p in pieces if p.choices) == text("primary")

    embeddings = sdk.embeddings.create(model="chat", input=["abc", "de"])
    assert [e.embedding for e in embeddings.data] == [[3.0, 0.5, -0.25], [2.0, 0.5, -0.25]]
    encoded = sdk.embeddings.create(model="chat", input="abcd", encoding_format="base64")
    assert encoded.data[0].embedding == "AACAQAAAAD8AAIC+"  # 4.0, 0.5, -0.25 as float32

    assert {m.id for m in sdk.models.list()} == GROUPS
    assert sdk.models.retrieve("chat-rl").id == "chat-rl"
    assert fakes.primary.stats()["requests"] == {
        "/v1/chat/completions": 2,
        "/v1/completions": 2,
        "/v1/embeddings": 2,
    }
    assert fakes.secondary.calls() == 0


def test_errors_surface_as_the_sdk_error_classes(
    sdk: openai.OpenAI, gateway: GatewayProcess, fakes: Fakes
) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")

    with pytest.raises(openai.BadRequestError) as hot:
        sdk.chat.completions.create(model="chat", messages=MESSAGES, temperature=5)
    assert (hot.value.param, hot.value.type) == ("temperature", "invalid_request_error")
    with pytest.raises(openai.BadRequestError) as role:
        sdk.chat.completions.create(model="chat", messages=[{"role": "robot", "content": "x"}])  # type: ignore[list-item]
    assert role.value.param == "messages[0].role"

    with (
        openai.OpenAI(
            base_url=f"{gateway.url}/v1", api_key="sk-wrong-key-0123456789", max_retries=0
        ) as stranger,
        pytest.raises(openai.AuthenticationError) as denied,
    ):
        stranger.chat.completions.create(model="chat", messages=MESSAGES)
    assert denied.value.code == "invalid_api_key"
    # No key at all: the same 401, in OpenAI's shape.
    body = {"model": "chat", "messages": MESSAGES}
    anonymous = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=15)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert fakes.primary.calls() == 0  # none of these reached a provider


# --- 2. scripted upstream failures ----------------------------------------------------------

#: Failures before the first chunk (or before the answer): the client never sees them.
BEFORE_THE_ANSWER = [
    pytest.param({"mode": "fail500"}, False, id="500-json"),
    pytest.param({"mode": "fail500"}, True, id="500-sse"),
    pytest.param({"mode": "stall_first"}, False, id="headers-then-silence-json"),
    pytest.param({"mode": "stall_first"}, True, id="headers-then-silence-sse"),
    pytest.param({"mode": "ping"}, True, id="keep-alives-only-sse"),
    pytest.param({"mode": "stall_mid"}, False, id="half-a-body-then-silence-json"),
    pytest.param({"mode": "drop"}, False, id="dropped-before-a-byte-json"),
    pytest.param({"mode": "drop", "after_chunks": 0}, True, id="dropped-after-headers-sse"),
]


@pytest.mark.parametrize(("script", "stream"), BEFORE_THE_ANSWER)
def test_failover_before_the_first_chunk_is_invisible(
    script: dict[str, Any], stream: bool, gateway: GatewayProcess, fakes: Fakes
) -> None:
    fakes.primary.script(**script)
    body = {"model": "chat", "messages": MESSAGES, "stream": stream}
    with (
        httpx.Client(base_url=gateway.url, headers=AUTH, timeout=HTTP_TIMEOUT_S) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        response.read()
    assert response.status_code == 200, response.text
    assert answer_text(response, stream=stream) == text("secondary")
    assert response.headers["x-seawall-served-by"] == "chat/secondary"
    assert response.headers["x-seawall-attempts"] == "1"  # the secondary's retry policy
    overhead_ms(response.headers)
    assert (fakes.primary.calls(), fakes.secondary.calls()) == (1, 1)
    # Whatever the primary did, no connection to it is left waiting on an answer.
    wait_for(lambda: fakes.primary.stats()["busy"] == 0, "let go of the primary")


@pytest.mark.parametrize(
    ("script", "code"),
    [
        pytest.param({"mode": "stall_mid"}, "timeout", id="stall-mid-stream"),
        pytest.param({"mode": "drop"}, "bad_response", id="drop-mid-stream"),
    ],
)
def test_a_failure_after_the_first_chunk_ends_the_stream_with_an_error_event(
    script: dict[str, Any], code: str, gateway: GatewayProcess, fakes: Fakes
) -> None:
    fakes.primary.script(**script)
    body = {"model": "chat", "messages": MESSAGES, "stream": True}
    with (
        httpx.Client(base_url=gateway.url, headers=AUTH, timeout=HTTP_TIMEOUT_S) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        chunks = events(response)
    assert response.status_code == 200
    assert response.headers["x-seawall-served-by"] == "chat/primary"
    # The first chunk, then one error event (an OpenAI error object), then [DONE].
    assert len(chunks) == 3, chunks
    assert content_of(chunks[:1]) == "primary:0 "
    error = chunks[1]["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("server_error", code)
    assert chunks[2] == "[DONE]"
    assert fakes.secondary.calls() == 0  # a started stream is never switched to another provider
    wait_for(lambda: fakes.primary.stats()["busy"] == 0, "let go of the primary")


def test_the_sdk_raises_api_error_on_a_mid_stream_failure(sdk: openai.OpenAI, fakes: Fakes) -> None:
    fakes.primary.script(mode="stall_mid")
    with sdk.chat.completions.create(model="chat", messages=MESSAGES, stream=True) as stream:
        chunks = iter(stream)
        assert next(chunks).choices[0].delta.content == "primary:0 "
        with pytest.raises(openai.APIError) as failed:
            next(chunks)
    assert f"{CUT_MS} ms" in failed.value.message
    wait_for(lambda: fakes.primary.stats()["disconnects"] == 1, "closed on the primary")


def test_retry_after_of_a_429_cools_the_primary_down(sdk: openai.OpenAI, fakes: Fakes) -> None:
    fakes.primary.script(mode="429", retry_after="2")
    raw = sdk.chat.completions.with_raw_response.create(
        model="chat-rl", messages=MESSAGES, stream=True
    )
    limited_at = time.monotonic()
    with raw.parse() as stream:
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text(
            "secondary"
        )
    assert raw.headers["x-seawall-served-by"] == "chat-rl/secondary"
    fakes.primary.script()  # healthy again, but its Retry-After still holds

    for _ in range(5):
        raw = sdk.chat.completions.with_raw_response.create(model="chat-rl", messages=MESSAGES)
        assert raw.headers["x-seawall-served-by"] == "chat-rl/secondary"
    assert time.monotonic() - limited_at < 2.0, "too slow to test the cooldown"
    assert (fakes.primary.calls(), fakes.secondary.calls()) == (1, 6)

    time.sleep(max(0.0, limited_at + 2.3 - time.monotonic()))
    raw = sdk.chat.completions.with_raw_response.create(model="chat-rl", messages=MESSAGES)
    assert raw.headers["x-seawall-served-by"] == "chat-rl/primary"
    assert fakes.primary.calls() == 2


def test_retries_and_fallback_groups(sdk: openai.OpenAI, fakes: Fakes) -> None:
    fakes.primary.script(fail_next=2)  # two 500s, then answers
    raw = sdk.chat.completions.with_raw_response.create(model="retrying", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == text("primary")
    assert raw.headers["x-seawall-attempts"] == "3"
    assert raw.headers["x-seawall-served-by"] == "retrying/only"
    assert fakes.primary.calls() == 3

    fakes.primary.script(mode="fail500")
    raw = sdk.chat.completions.with_raw_response.create(model="solo", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == text("secondary")
    assert raw.headers["x-seawall-fallback"] == "backend_error"
    assert fakes.secondary.stats()["last"]["model"] == "backup-model"


# --- 3. the primary process killed under load -----------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it: ok, failed (an answer, but wrong) or lost (none)."""

    started: float
    served_by: str = ""
    failure: str = ""
    lost: bool = False

    @property
    def ok(self) -> bool:
        return not self.failure and not self.lost


def one_call(http: httpx.Client, stream: bool) -> Outcome:
    started = time.monotonic()
    body = {"model": "load", "messages": MESSAGES, "stream": stream}
    try:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            response.read()
    except httpx.HTTPError as exc:
        return Outcome(started, lost=True, failure=repr(exc))
    served_by = response.headers.get("x-seawall-served-by", "")
    expected = text({"load/primary": "killable", "load/secondary": "secondary"}.get(served_by, "?"))
    if response.status_code != 200:
        return Outcome(started, served_by, f"{response.status_code}: {response.text[:200]}")
    if stream:
        chunks = events(response)
        got = content_of(chunks) if chunks[-1:] == ["[DONE]"] else f"unfinished: {chunks}"
    else:
        got = response.json()["choices"][0]["message"]["content"]
    return Outcome(started, served_by, "" if got == expected else f"got {got!r}")


def test_killing_the_primary_under_load_loses_nothing(
    gateway: GatewayProcess, fakes: Fakes
) -> None:
    clients, duration_s, kill_after_s = 8, 5.0, 1.5
    start = threading.Barrier(clients + 1)

    def client(index: int) -> list[Outcome]:
        seen: list[Outcome] = []
        with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=HTTP_TIMEOUT_S) as http:
            http.get("/v1/models")  # connected before the clock starts
            start.wait(timeout=POLL_TIMEOUT_S)
            end = time.monotonic() + duration_s
            while time.monotonic() < end:
                seen.append(one_call(http, stream=index % 2 == 1))
        return seen

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        start.wait(timeout=POLL_TIMEOUT_S)
        began = time.monotonic()
        time.sleep(kill_after_s)
        killed_at = time.monotonic()
        fakes.killable.kill()
        outcomes = [o for f in futures for o in f.result(timeout=duration_s + 2 * HTTP_TIMEOUT_S)]

    ok = sum(o.ok for o in outcomes)
    lost = [o for o in outcomes if o.lost]
    failed = [o for o in outcomes if o.failure and not o.lost]
    served = Counter(o.served_by for o in outcomes if o.ok)
    after = Counter(o.served_by for o in outcomes if o.ok and o.started > killed_at + 0.1)
    print(
        f"\nkill under load: {len(outcomes)} requests in {time.monotonic() - began:.1f} s, "
        f"{ok} ok ({ok / len(outcomes):.4%}), {len(failed)} failed, {len(lost)} lost; "
        f"served by {dict(served)}; after the kill {dict(after)}"
    )
    assert lost == [], lost[:5]
    assert ok / len(outcomes) >= 0.999, failed[:5]
    assert served["load/primary"] > 0
    assert served["load/secondary"] > 0
    assert set(after) == {"load/secondary"}


# --- 4. a silent upstream -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_silent_upstream_is_cut_at_the_first_token_timeout(
    stream: bool, gateway: GatewayProcess, fakes: Fakes
) -> None:
    fakes.primary.script(mode="hang")  # accepts, reads the request, never sends a byte
    body = {"model": "chat", "messages": MESSAGES, "stream": stream}
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=HTTP_TIMEOUT_S) as http:
        http.get("/v1/models")  # connected: only the call is timed
        began = time.monotonic()
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            response.read()
        latency_s = time.monotonic() - began
    print(
        f"\nsilent primary ({'sse' if stream else 'json'}): answered in {latency_s * 1000:.0f} ms"
    )
    assert response.status_code == 200
    assert response.headers["x-seawall-served-by"] == "chat/secondary"
    assert answer_text(response, stream=stream) == text("secondary")
    assert CUT_MS / 1000 <= latency_s < 2.0
    # The silent connection was closed by the gateway when it gave up.
    wait_for(lambda: fakes.primary.stats()["disconnects"] == 1, "closed on the primary")
    assert (fakes.primary.calls(), fakes.primary.stats()["busy"]) == (1, 0)


# --- 5. clients that leave mid-stream -------------------------------------------------------


def open_and_leave(http: httpx.Client, x_fake: dict[str, Any]) -> None:
    """Start a `drip` stream, read its first chunk, and close the connection."""
    body = {"model": "drip", "messages": MESSAGES, "stream": True, "x_fake": x_fake}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise AssertionError(f"{response.status_code}: {response.text}")
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
        assert "drip:0 " in first
    # Leaving a response unread makes httpx close the connection: the client is gone.


#: An upstream that goes silent after the first chunk, and one that keeps streaming.
SILENT_AFTER_FIRST = {"mode": "stall_mid"}
STILL_STREAMING = {"mode": "ok", "chunks": 100_000, "interval_ms": 20}


@pytest.mark.parametrize(
    "x_fake", [SILENT_AFTER_FIRST, STILL_STREAMING], ids=["silent", "streaming"]
)
def test_a_client_leaving_closes_the_upstream_connection_within_a_second(
    x_fake: dict[str, Any], gateway: GatewayProcess, fakes: Fakes
) -> None:
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=HTTP_TIMEOUT_S) as http:
        open_and_leave(http, x_fake)
        left_at = time.monotonic()
    wait_for(lambda: fakes.drip.stats()["disconnects"] == 1, "closed upstream")
    took_s = time.monotonic() - left_at
    print(
        f"\nclient left ({'silent' if x_fake is SILENT_AFTER_FIRST else 'streaming'}): "
        f"upstream closed {took_s * 1000:.0f} ms later"
    )
    assert took_s < 1.0
    assert fakes.drip.stats()["open"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_client_leaving_before_the_first_chunk_cancels_the_upstream_call(
    stream: bool, gateway: GatewayProcess, fakes: Fakes
) -> None:
    body = {"model": "patient", "messages": MESSAGES, "stream": stream, "x_fake": {"mode": "hang"}}
    gone = httpx.Timeout(HTTP_TIMEOUT_S, read=0.3)  # the client gives up after 0.3 s
    try:
        with (
            httpx.Client(base_url=gateway.url, headers=AUTH, timeout=gone) as http,
            pytest.raises(httpx.ReadTimeout),
        ):
            http.post("/v1/chat/completions", json=body)
        left_at = time.monotonic()
        wait_for(lambda: fakes.drip.stats()["disconnects"] == 1, "closed upstream")
        took_s = time.monotonic() - left_at
    finally:  # the next test starts with no call still running
        wait_for(lambda: fakes.drip.stats()["busy"] == 0, "let go of the upstream")
    print(f"\nclient left before the first chunk: upstream closed {took_s * 1000:.0f} ms later")
    assert fakes.drip.calls() == 1
    assert took_s < 1.0, (
        f"the upstream call ran on {took_s:.1f} s after its client left "
        f"(until first_token_ms: {PATIENCE_MS})"
    )


def test_a_thousand_departures_leak_no_task_or_connection(
    gateway: GatewayProcess, fakes: Fakes
) -> None:
    total, concurrency = 1000, 8
    closed_before = metric(
        gateway, "seawall_requests_total", model="drip", version="", status="499"
    )

    def client(index: int) -> None:
        with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=HTTP_TIMEOUT_S) as http:
            for i in range(index, total, concurrency):
                open_and_leave(http, SILENT_AFTER_FIRST if i % 2 else STILL_STREAMING)

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(client, c) for c in range(concurrency)]:
            future.result(timeout=60)
    sent_s = time.monotonic() - began
    settled_s = wait_for(lambda: fakes.drip.stats()["open"] == 0, "every upstream closed")
    stats = fakes.drip.stats()
    in_flight = metric(gateway, "seawall_requests_in_flight", model="drip")
    closed = (
        metric(gateway, "seawall_requests_total", model="drip", version="", status="499")
        - closed_before
    )
    print(
        f"\n{total} departures: {sent_s:.1f} s, upstream settled {settled_s * 1000:.0f} ms later;"
        f" upstream calls {stats['calls']}, disconnects {stats['disconnects']}, open"
        f" {stats['open']}; gateway in flight {in_flight}, 499s {closed}"
    )
    assert (stats["calls"], stats["disconnects"], stats["open"]) == (total, total, 0)
    assert in_flight == 0
    assert closed == total


# --- the example config ---------------------------------------------------------------------


def test_the_example_config_serves_chat_default(launch: Launch, fakes: Fakes) -> None:
    key = "example-key-0123456789abcdef"
    gateway = launch(
        ROOT / "examples" / "llm-failover.yaml",
        env={
            "PRIMARY_BASE_URL": f"{fakes.primary.url}/v1",
            "SECONDARY_BASE_URL": f"{fakes.secondary.url}/v1",
            "SEAWALL_EXAMPLE_KEY": key,
        },
    )
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        assert [m.id for m in client.models.list()] == ["chat-default"]
        raw = client.chat.completions.with_raw_response.create(
            model="chat-default", messages=MESSAGES
        )
        assert raw.parse().choices[0].message.content == text("primary")
        assert raw.headers["x-seawall-served-by"] == "chat-default/primary"
        assert fakes.primary.stats()["last"]["model"] == "gpt-4o-mini"

        fakes.primary.script(mode="fail500")
        with client.chat.completions.create(
            model="chat-default", messages=MESSAGES, stream=True
        ) as stream:
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
                text("secondary")
            )
    with (
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x" * 20, max_retries=0) as other,
        pytest.raises(openai.AuthenticationError),
    ):
        other.chat.completions.create(model="chat-default", messages=MESSAGES)


def test_the_example_consumer_is_held_to_its_budget(
    launch: Launch, fakes: Fakes, tmp_path: Path
) -> None:
    key = "example-key-0123456789abcdef"
    gateway = launch(
        ROOT / "examples" / "llm-failover.yaml",
        env={
            "PRIMARY_BASE_URL": f"{fakes.primary.url}/v1",
            "SECONDARY_BASE_URL": f"{fakes.secondary.url}/v1",
            "SEAWALL_EXAMPLE_KEY": key,
            "SEAWALL_EXAMPLE_BUDGET_USD": "0.000001",  # one call's worth at the example's prices
        },
    )
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as client:
        client.chat.completions.create(model="chat-default", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="chat-default", messages=MESSAGES)
    assert refused.value.code == "insufficient_quota"
    assert "example-consumer" in refused.value.message
    assert int(refused.value.response.headers["retry-after"]) > 0
    assert fakes.primary.stats()["calls"] == 1  # the refused call never reached a provider

    database = f"sqlite:///{gateway.log_path.parent / 'seawall.db'}"
    deadline = time.monotonic() + 10.0
    while True:  # the spend buffer writes within a second or so
        shown = subprocess.run(
            [sys.executable, "-m", "seawall", "db", "spend", "example-consumer", "--url", database],
            capture_output=True,
            text=True,
            check=False,
        )
        if "chat-default/primary" in shown.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert shown.returncode == 0, shown.stderr
    row = next(line.split() for line in shown.stdout.splitlines() if "primary" in line)
    assert row[0] == "chat-default/primary"
    assert float(row[1]) > 0
    assert row[4] == "1"


# -- token and budget limits shared by two gateways through Redis ------------------------------

SHARED = """\
server: {{log_level: info}}
auth: {{keys: [{{name: "{who}", key: "{key}"}}]}}
ratelimit: {{storage: redis, redis_url: "{redis}", on_storage_error: deny}}
database_url: "sqlite:///{db}"
llm:
  {budgets}
  models:
    - name: shared
      {tokens}
      deployments:
        - name: only
          base_url: "{upstream}/v1"
          model: m
          price: {{input_per_mtok: 1000000, output_per_mtok: 0}}
"""


def two_gateways(
    launch: Launch, tmp_path: Path, redis_url: str, upstream: str, *, budgets: str, tokens: str
) -> tuple[list[GatewayProcess], str, str]:
    who, key = f"app-{uuid.uuid4().hex[:12]}", f"key-{uuid.uuid4().hex}"
    text = SHARED.format(
        who=who,
        key=key,
        redis=redis_url,
        db=tmp_path / "spend.db",
        budgets=budgets,
        tokens=tokens,
        upstream=upstream,
    )
    gateways = []
    for i in range(2):
        path = tmp_path / f"gateway-{i}.yaml"
        path.write_text(text, encoding="utf-8")
        gateways.append(launch(path))
    return gateways, who, key


def chat_once(gateway: GatewayProcess, key: str) -> httpx.Response:
    body = {"model": "shared", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=HTTP_TIMEOUT_S,
    )


def test_a_budget_holds_across_two_gateways_sharing_redis(
    launch: Launch, tmp_path: Path, redis_url: str, fakes: Fakes
) -> None:
    # $1 a prompt token and 7 prompt tokens a call (the fake's usage): $7 a call, $70 budget.
    gateways, who, key = two_gateways(
        launch,
        tmp_path,
        redis_url,
        fakes.secondary.url,
        budgets="budgets: {period: day, default_usd: 70}",
        tokens="",
    )
    statuses = [chat_once(gateways[i % 2], key).status_code for i in range(16)]
    assert statuses == [200] * 10 + [429] * 6, statuses
    refused = chat_once(gateways[0], key)
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert int(refused.headers["retry-after"]) >= 1
    assert (
        f"'{who}' has spent $70.0000 of its $70 daily budget" in refused.json()["error"]["message"]
    )


def test_tokens_per_minute_hold_across_two_gateways_sharing_redis(
    launch: Launch, tmp_path: Path, redis_url: str, fakes: Fakes
) -> None:
    # Each call uses 10 tokens (7 prompt + 3 completion, the fake's usage): 100 a minute = 10 calls.
    gateways, _, key = two_gateways(
        launch,
        tmp_path,
        redis_url,
        fakes.secondary.url,
        budgets="",
        tokens="tokens_per_minute: {per_key: 100}",
    )
    responses = [chat_once(gateways[i % 2], key) for i in range(20)]
    allowed = sum(r.status_code == 200 for r in responses)
    assert 9 <= allowed <= 11, [r.status_code for r in responses]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.headers["x-ratelimit-limit-tokens"] == "100"
    assert int(refused.headers["retry-after"]) >= 1
