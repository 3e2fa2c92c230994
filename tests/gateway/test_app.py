"""`Gateway`: lifespan, readiness rules, index and 404s, /metrics and the access log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from seawall.backends import MockBackend, ModelRepository, ModelState, ServedModel
from seawall.config import ServerSettings
from seawall.gateway import Gateway
from seawall.gateway.asgi import Message

INFER_BODY = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


def _repository(*models: str, failed: tuple[str, ...] = ()) -> ModelRepository:
    """Mock models that echo their input; those named in `failed` fail to load."""
    repository = ModelRepository()
    for name in (*models, *failed):
        error = RuntimeError(f"{name}.bin not found") if name in failed else None
        backend = MockBackend(name, load_error=error)
        repository.add(ServedModel(name, "1", backend, backend.infer))
    return repository


async def _started(repository: ModelRepository, **settings: Any) -> Gateway:
    gateway = Gateway(repository, ServerSettings(**settings))
    await gateway.startup()
    return gateway


async def _client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A started gateway with `iris` ready and `broken` failed."""
    started = await _started(_repository("iris", failed=("broken",)))
    yield started
    await started.shutdown()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(gateway):
        yield http


async def _drive(gateway: Gateway, scope: dict[str, Any], *inbox: Message) -> list[Message]:
    """Run the app on `scope` with `inbox` as the received messages; return what it sent."""
    pending = list(inbox)
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await gateway(scope, receive, send)
    return sent


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


# --- lifespan --------------------------------------------------------------------------------


async def test_lifespan_starts_and_stops_the_models() -> None:
    repository = _repository("iris")
    gateway = Gateway(repository)
    sent = await _drive(
        gateway,
        {"type": "lifespan", "asgi": {"version": "3.0"}},
        {"type": "lifespan.startup"},
        {"type": "lifespan.shutdown"},
    )
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert gateway.started
    assert gateway.readiness() == (False, "shutting down")
    assert [m.state for m in repository] == [ModelState.UNLOADED]


async def test_lifespan_reports_startup_failed_when_loading_raises() -> None:
    class ExplodingRepository(ModelRepository):
        async def load_all(self) -> None:
            raise RuntimeError("disk on fire")

    gateway = Gateway(ExplodingRepository())
    inbox: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent = await _drive(gateway, {"type": "lifespan"}, *inbox)
    assert sent == [{"type": "lifespan.startup.failed", "message": "disk on fire"}]
    assert not gateway.started
    assert gateway.readiness() == (False, "loading models")


async def test_a_model_failing_to_load_does_not_fail_startup() -> None:
    gateway = Gateway(_repository("iris", failed=("broken",)))
    inbox: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    seen: list[tuple[str, dict[str, ModelState], bool]] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        states = {m.name: m.state for m in gateway.repository}
        seen.append((message["type"], states, gateway.readiness()[0]))

    await gateway({"type": "lifespan"}, receive, send)
    assert seen == [
        (
            "lifespan.startup.complete",
            {"iris": ModelState.READY, "broken": ModelState.FAILED},
            True,
        ),
        (
            "lifespan.shutdown.complete",
            {"iris": ModelState.UNLOADED, "broken": ModelState.UNLOADED},
            False,
        ),
    ]
    assert gateway.repository.get("broken").reason == "RuntimeError: broken.bin not found"


async def test_a_websocket_is_closed() -> None:
    gateway = Gateway(_repository("iris"))
    sent = await _drive(
        gateway, {"type": "websocket", "path": "/v2"}, {"type": "websocket.connect"}
    )
    assert sent == [{"type": "websocket.close", "code": 1003}]


# --- readiness -------------------------------------------------------------------------------


async def test_strict_readiness_names_the_failed_model() -> None:
    gateway = await _started(_repository("iris", failed=("broken",)), strict_readiness=True)
    async for http in _client(gateway):
        response = await http.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.json() == {
        "ready": False,
        "reason": "model 'broken' version '1' is not ready: RuntimeError: broken.bin not found",
    }
    await gateway.shutdown()


async def test_lenient_readiness_is_ready_while_one_model_is(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/health/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True})


@pytest.mark.parametrize("strict", [True, False])
async def test_no_model_ready_is_not_ready(strict: bool) -> None:
    gateway = await _started(_repository(failed=("a", "b")), strict_readiness=strict)
    assert not gateway.readiness()[0]
    if not strict:
        assert gateway.readiness() == (False, "no model is ready")
    async for http in _client(gateway):
        response = await http.get("/v2/health/ready")
    assert response.status_code == 503
    await gateway.shutdown()


async def test_strict_readiness_with_every_model_ready_is_ready() -> None:
    gateway = await _started(_repository("a", "b"), strict_readiness=True)
    assert gateway.readiness() == (True, "")
    await gateway.shutdown()


async def test_draining_wins_over_ready_models(gateway: Gateway) -> None:
    assert gateway.readiness() == (True, "")
    gateway.drain()
    assert gateway.readiness() == (False, "shutting down")


# --- index and unknown paths -----------------------------------------------------------------


async def test_index_lists_the_endpoints(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    document = response.json()
    assert document["name"] == "seawall"
    assert document["endpoints"]["inference"] == (
        "POST /v2/models/{model}[/versions/{version}]/infer"
    )
    assert document["endpoints"]["metrics"] == "GET /metrics"
    assert document["endpoints"]["readiness"] == "GET /v2/health/ready"
    assert document["endpoints"]["OpenAI chat"] == "POST /v1/chat/completions"
    assert document["endpoints"]["OpenAI models"] == "GET /v1/models[/{model}]"


async def test_v1_paths_go_to_the_openai_routes(client: httpx.AsyncClient) -> None:
    models = await client.get("/v1/models")
    assert models.status_code == 200
    assert models.json() == {"object": "list", "data": []}  # no LLM model group configured
    unknown = await client.get("/v1")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "invalid_request_error"  # OpenAI's error shape


@pytest.mark.parametrize("path", ["/nope", "/v1x", "/v2x", "/metrics/x"])
async def test_unknown_path_is_a_json_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": f"path {path!r} not found"}


# --- /metrics --------------------------------------------------------------------------------


async def test_metrics_count_each_answered_request(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await client.post("/v2/models/iris/infer", json=INFER_BODY)).status_code == 200
    bad = await client.post("/v2/models/iris/infer", json={"inputs": []})
    assert bad.status_code == 400
    response = await client.get("/metrics")
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples = _samples(response.text)
    iris = _labels(model="iris", version="1")
    assert samples["seawall_requests_total", _labels(model="iris", version="1", status="200")] == 5
    assert samples["seawall_requests_total", _labels(model="iris", version="1", status="400")] == 1
    assert samples["seawall_request_duration_seconds_count", iris] == 6
    assert samples["seawall_request_duration_seconds_bucket", iris | {("le", "+Inf")}] == 6
    assert samples["seawall_requests_in_flight", _labels(model="iris")] == 0


async def test_an_unknown_model_is_labelled_unknown_never_by_its_name(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/v2/models/secret-x/infer", json=INFER_BODY)).status_code == 404
    unknown_version = await client.post("/v2/models/iris/versions/7/infer", json=INFER_BODY)
    assert unknown_version.status_code == 404
    text = (await client.get("/metrics")).text
    assert "secret-x" not in text
    samples = _samples(text)
    assert (
        samples["seawall_requests_total", _labels(model="_unknown", version="", status="404")] == 2
    )
    assert (
        "seawall_requests_total",
        _labels(model="iris", version="7", status="404"),
    ) not in samples


async def test_model_ready_gauge_reflects_each_models_state(client: httpx.AsyncClient) -> None:
    samples = _samples((await client.get("/metrics")).text)
    ready = {
        dict(labels)["model"]: (dict(labels)["state"], value)
        for (name, labels), value in samples.items()
        if name == "seawall_model_ready"
    }
    assert ready == {"iris": ("READY", 1.0), "broken": ("FAILED", 0.0)}


async def test_a_failed_model_is_counted_as_503(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/models/broken/infer", json=INFER_BODY)
    assert response.status_code == 503
    samples = _samples((await client.get("/metrics")).text)
    assert (
        samples["seawall_requests_total", _labels(model="broken", version="1", status="503")] == 1
    )


# --- access log ------------------------------------------------------------------------------


@pytest.fixture
def access_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    """`caplog` for `seawall.access`, whatever logging set-up an earlier test left behind."""
    monkeypatch.setattr(logging.getLogger("seawall"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("seawall.access"), "disabled", False)
    caplog.set_level(logging.INFO, logger="seawall.access")
    return caplog


async def test_access_log_writes_one_record_per_request(
    access_log: pytest.LogCaptureFixture,
) -> None:
    gateway = await _started(_repository("iris"), access_log=True)
    async for http in _client(gateway):
        infer = await http.post("/v2/models/iris/infer", json=INFER_BODY)
        await http.get("/nope")
        await http.get("/v2/health/live")
    await gateway.shutdown()
    records = [r for r in access_log.records if r.name == "seawall.access"]
    assert [(r.method, r.path, r.status) for r in records] == [  # type: ignore[attr-defined]
        ("POST", "/v2/models/iris/infer", 200),
        ("GET", "/nope", 404),
        ("GET", "/v2/health/live", 200),
    ]
    for record in records:
        assert record.getMessage() == "request"
        assert isinstance(record.duration_ms, float)  # type: ignore[attr-defined]
        assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert records[0].request_id == infer.headers["x-request-id"]  # type: ignore[attr-defined]


async def test_no_access_log_by_default(
    access_log: pytest.LogCaptureFixture, client: httpx.AsyncClient
) -> None:
    await client.get("/v2/health/live")
    assert [r for r in access_log.records if r.name == "seawall.access"] == []


# --- lifecycle state machine -------------------------------------------------------------------


class GatewayLifecycle(RuleBasedStateMachine):
    """Models load, fail, serve, drain and unload in any order a run can produce.

    The reference model: a model serves (200) only when it loaded and the gateway has not shut
    down; everything else is a 503 that says why. Readiness follows `Gateway.readiness`'s rules.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.repository = ModelRepository()
        self.strict = False
        self.gateway: Gateway | None = None
        self.expected: dict[str, str] = {}  # name -> LOADING | READY | FAILED | UNLOADED
        self.started = self.draining = self.stopped = False

    def teardown(self) -> None:
        self.loop.close()

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _gateway(self) -> Gateway:
        if self.gateway is None:
            self.gateway = Gateway(self.repository, ServerSettings(strict_readiness=self.strict))
        return self.gateway

    @precondition(lambda self: self.gateway is None and len(self.expected) < 4)
    @rule(fails=st.booleans())
    def add_model(self, fails: bool) -> None:
        name = f"m{len(self.expected)}"
        backend = MockBackend(name, load_error=RuntimeError("corrupt") if fails else None)
        self.repository.add(ServedModel(name, "1", backend, backend.infer))
        self.expected[name] = "FAILED" if fails else "READY"

    @precondition(lambda self: self.gateway is None)
    @rule(strict=st.booleans())
    def choose_readiness(self, strict: bool) -> None:
        self.strict = strict

    @precondition(lambda self: not self.started)
    @rule()
    def start(self) -> None:
        self._run(self._gateway().startup())
        self.started = True

    @precondition(lambda self: self.started and not self.stopped)
    @rule()
    def drain(self) -> None:
        self._gateway().drain()
        self.draining = True

    @precondition(lambda self: self.started and not self.stopped)
    @rule()
    def stop(self) -> None:
        self._run(self._gateway().shutdown())
        self.stopped = self.draining = True

    @precondition(lambda self: bool(self.expected))
    @rule(data=st.data())
    def infer(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.expected)))
        status, body = self._run(self._post(name))
        serves = self.started and not self.stopped and self.expected[name] == "READY"
        assert status == (200 if serves else 503), (name, status, body)
        if not serves:
            assert body["error"].startswith(f"model '{name}' version '1' is")
            if self.started and not self.stopped:
                assert "RuntimeError: corrupt" in body["error"]

    @rule()
    def probe_readiness(self) -> None:
        ready, reason = self._gateway().readiness()
        status, body = self._run(self._get("/v2/health/ready"))
        assert (status, body) == (
            (200, {"ready": True}) if ready else (503, {"ready": False, "reason": reason})
        )

    async def _get(self, path: str) -> tuple[int, Any]:
        transport = httpx.ASGITransport(app=self._gateway())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            response = await http.get(path)
        return response.status_code, response.json()

    async def _post(self, name: str) -> tuple[int, Any]:
        transport = httpx.ASGITransport(app=self._gateway())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            response = await http.post(f"/v2/models/{name}/infer", json=INFER_BODY)
        return response.status_code, response.json()

    @invariant()
    def states_follow_the_lifecycle(self) -> None:
        for model in self.repository:
            if self.stopped:
                assert model.state is ModelState.UNLOADED
            elif self.started:
                assert model.state.value == self.expected[model.name]
            else:
                assert model.state is ModelState.LOADING

    @invariant()
    def readiness_follows_the_rules(self) -> None:
        if self.gateway is None:
            return
        ready, reason = self.gateway.readiness()
        states = list(self.expected.values())
        if self.draining:
            assert (ready, reason) == (False, "shutting down")
        elif not self.started:
            assert (ready, reason) == (False, "loading models")
        elif self.strict and "FAILED" in states:
            assert not ready
            assert "RuntimeError: corrupt" in reason
        elif states and "READY" not in states:
            assert (ready, reason) == (False, "no model is ready")
        else:
            assert (ready, reason) == (True, "")


TestGatewayLifecycle = GatewayLifecycle.TestCase
TestGatewayLifecycle.settings = settings(max_examples=60, stateful_step_count=12, deadline=None)
