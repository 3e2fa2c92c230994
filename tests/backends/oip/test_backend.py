"""OipBackend against real in-process OIP v2 servers: metadata, infer (JSON, binary), failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pytest

from seawall.backends.base import Backend, HealthChecked
from seawall.backends.http import HttpOptions, HttpUpstream
from seawall.backends.oip import OipBackend
from seawall.backends.oip.codec import decode_infer_request
from seawall.backends.pool import (
    EndpointLoaded,
    EndpointLoadFailed,
    EndpointPool,
    EndpointUnhealthy,
    HealthCheckOptions,
)
from seawall.context import CallContext
from seawall.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadResponseError,
    ConfigError,
    InvalidInputError,
    ModelNotReadyError,
    NotFoundError,
)
from seawall.types import Datatype, InferenceRequest, RequestedOutput, Tensor, TensorSpec

if TYPE_CHECKING:  # conftest is not importable at run time (--import-mode=importlib)
    from tests.backends.oip.conftest import StandIn, StartStandIn

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
#: Long enough for a local call on a busy machine; far shorter than any timeout default.
WAIT_S = 10.0


def iris_request(**fields: Any) -> InferenceRequest:
    return InferenceRequest("front-iris", [Tensor.from_numpy("input-0", ROWS)], **fields)


def backend_for(url: str, model: str = "iris", **kwargs: Any) -> OipBackend:
    options = kwargs.pop("options", None)
    return OipBackend(HttpUpstream(url, options), model, **kwargs)


@pytest.fixture
async def backend(stand_in: StandIn) -> AsyncIterator[OipBackend]:
    """An OipBackend for the stand-in's `iris`, loaded."""
    oip = backend_for(stand_in.url)
    await oip.load()
    try:
        yield oip
    finally:
        await oip.close()


async def eventually(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {WAIT_S} s"
        await asyncio.sleep(0.01)


# --- lifecycle and metadata ------------------------------------------------------------------


async def test_is_a_health_checked_backend_named_after_its_upstream_model(
    stand_in: StandIn,
) -> None:
    oip = backend_for(stand_in.url + "/")
    assert isinstance(oip, Backend)
    assert isinstance(oip, HealthChecked)
    assert oip.name == f"oip:{stand_in.url}/iris"
    assert backend_for(stand_in.url, version="7").name == f"oip:{stand_in.url}/iris/versions/7"
    assert not oip.ready()
    with pytest.raises(ModelNotReadyError, match="not loaded"):
        oip.metadata()
    with pytest.raises(ModelNotReadyError, match="not loaded"):
        await oip.infer(iris_request(), CallContext.new())


async def test_load_reads_the_upstream_models_metadata(backend: OipBackend) -> None:
    assert backend.ready()
    metadata = backend.metadata()
    assert metadata.name == "iris"
    assert metadata.platform == "sklearn"
    assert metadata.versions == ("7",)
    assert metadata.inputs == (TensorSpec("input-0", Datatype.FP64, (-1, 4)),)
    assert metadata.outputs == (
        TensorSpec("predict", Datatype.INT64, (-1,)),
        TensorSpec("predict_proba", Datatype.FP64, (-1, 3)),
    )


async def test_a_versioned_backend_asks_for_that_version(stand_in: StandIn) -> None:
    oip = backend_for(stand_in.url, version="7")
    await oip.load()
    try:
        await oip.infer(iris_request(), CallContext.new())
    finally:
        await oip.close()
    assert stand_in.received[0].path == "/v2/models/iris/versions/7/infer"


async def test_load_fails_clearly_when_the_upstream_is_down(unused_port: int) -> None:
    oip = backend_for(f"http://127.0.0.1:{unused_port}")
    with pytest.raises(BackendUnavailableError) as caught:
        await oip.load()
    message = str(caught.value)
    assert message.startswith(
        f"oip:http://127.0.0.1:{unused_port}/iris: cannot read the model's metadata: "
    )
    assert "cannot connect" in message
    assert not oip.ready()
    await oip.close()


async def test_a_tls_file_it_cannot_use_is_a_config_error(
    stand_in: StandIn, tmp_path: Path
) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    options = HttpOptions(ca_file=str(tmp_path / "ca.pem"))
    oip = backend_for(stand_in.url.replace("http:", "https:"), options=options)
    with pytest.raises(ConfigError, match=r"^oip:https://127\.0\.0\.1:\d+/iris: cannot set up TLS"):
        await oip.load()
    await oip.close()


async def test_load_fails_clearly_when_the_upstream_does_not_know_the_model(
    stand_in: StandIn,
) -> None:
    oip = backend_for(stand_in.url, "iris-v9")
    with pytest.raises(NotFoundError) as caught:
        await oip.load()
    assert str(caught.value) == (
        f"oip:{stand_in.url}/iris-v9: the upstream has no model 'iris-v9' "
        "(404: model 'iris-v9' not found)"
    )
    await oip.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"inputs": "x"}, "inputs: expected a list"),
        ({"outputs": [{"name": "y", "datatype": "FP128", "shape": [1]}]}, "outputs[0].datatype"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}, "inputs[0].shape"),
        ({"inputs": [{"datatype": "FP32", "shape": [1]}]}, "inputs[0].name"),
        ({"versions": [1]}, "versions"),
    ],
)
async def test_invalid_metadata_is_a_bad_response_naming_the_field(
    stand_in: StandIn, change: dict[str, Any], field: str
) -> None:
    stand_in.models["iris"] = {**stand_in.models["iris"], **change}
    oip = backend_for(stand_in.url)
    with pytest.raises(BadResponseError, match=r"invalid model metadata: " + _re(field)):
        await oip.load()
    await oip.close()


def _re(text: str) -> str:
    return text.replace("[", r"\[").replace("]", r"\]")


async def test_close_makes_it_unready_and_it_can_load_again(backend: OipBackend) -> None:
    await backend.close()
    assert not backend.ready()
    with pytest.raises(ModelNotReadyError):
        await backend.infer(iris_request(), CallContext.new())
    await backend.load()
    response = await backend.infer(iris_request(), CallContext.new())
    np.testing.assert_array_equal(response.outputs[0].data, ROWS)


# --- infer -----------------------------------------------------------------------------------


async def test_json_infer_round_trip_keeps_the_callers_id_and_the_upstreams_version(
    backend: OipBackend, stand_in: StandIn
) -> None:
    ctx = CallContext.new("trace-me")
    response = await backend.infer(iris_request(id="client-1"), ctx)

    (sent,) = stand_in.received
    assert sent.path == "/v2/models/iris/infer"
    assert sent.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in sent.headers
    assert sent.headers["x-request-id"] == "trace-me"
    document = orjson.loads(sent.body)
    assert document == {
        "id": "client-1",
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [2, 4], "data": ROWS.ravel().tolist()}
        ],
    }
    assert response.model == "front-iris"
    assert response.version == "7"
    assert response.id == "client-1"
    (output,) = response.outputs
    assert (output.name, output.datatype, output.shape) == ("out-input-0", Datatype.FP64, (2, 4))
    np.testing.assert_array_equal(output.data, ROWS)


async def test_binary_infer_sends_binary_tensors_and_reads_binary_outputs(
    stand_in: StandIn,
) -> None:
    oip = backend_for(stand_in.url, binary=True)
    await oip.load()
    words = Tensor.from_numpy("words", np.array([b"setosa", b"\xff\x00"], dtype=np.object_))
    request = InferenceRequest(
        "front-iris",
        [Tensor.from_numpy("input-0", ROWS), words],
        outputs=[
            RequestedOutput("out-input-0", {"binary_data": False}),
            RequestedOutput("out-words"),
        ],
    )
    try:
        response = await oip.infer(request, CallContext.new())
    finally:
        await oip.close()

    (sent,) = stand_in.received
    assert sent.headers["content-type"] == "application/octet-stream"
    length = int(sent.headers["inference-header-content-length"])
    document = orjson.loads(sent.body[:length])
    assert document["parameters"] == {"binary_data_output": True}
    assert [i["parameters"] for i in document["inputs"]] == [
        {"binary_data_size": 64},
        {"binary_data_size": 4 + 6 + 4 + 2},
    ]
    # the client's own binary_data choice is not forwarded: the gateway asks for binary
    assert document["outputs"] == [
        {"name": "out-input-0", "parameters": {"binary_data": True}},
        {"name": "out-words", "parameters": {"binary_data": True}},
    ]
    assert len(sent.body) == length + 64 + 16
    numbers, texts = response.outputs
    np.testing.assert_array_equal(numbers.data, ROWS)
    assert texts.data.tolist() == [b"setosa", b"\xff\x00"]


async def test_json_mode_sends_what_json_cannot_carry_in_binary(
    backend: OipBackend, stand_in: StandIn
) -> None:
    values = np.array([1.0, np.nan, np.inf], dtype=np.float32)
    words = np.array([b"ok", b"\xff"], dtype=np.object_)
    request = InferenceRequest(
        "front-iris", [Tensor.from_numpy("x", values), Tensor.from_numpy("w", words)]
    )
    response = await backend.infer(request, CallContext.new())

    sent = stand_in.received[0]
    length = int(sent.headers["inference-header-content-length"])
    received = decode_infer_request(sent.body, length, "iris", None)
    np.testing.assert_array_equal(received.inputs[0].data, values)
    assert received.inputs[1].data.tolist() == [b"ok", b"\xff"]
    # The answer came back as JSON: null for both non-finite values, base64 for the bytes.
    np.testing.assert_array_equal(response.outputs[0].data, [1.0, np.nan, np.nan])
    assert response.outputs[1].data.tolist() == [b"ok", b"\xff"]
    assert response.outputs[1].parameters == {}


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (400, InvalidInputError, "upstream: inputs[0].shape: wrong"),
        (422, InvalidInputError, "upstream: inputs[0].shape: wrong"),
        (503, BackendUnavailableError, "answered 503: inputs[0].shape: wrong"),
        (429, BackendUnavailableError, "answered 429: inputs[0].shape: wrong"),
        (500, BackendError, "answered 500: inputs[0].shape: wrong"),
    ],
)
async def test_upstream_error_statuses_become_the_error_tree(
    backend: OipBackend,
    stand_in: StandIn,
    status: int,
    error: type[Exception],
    message: str,
) -> None:
    stand_in.push_json({"error": "inputs[0].shape: wrong"}, status, **{"retry-after": "3"})
    with pytest.raises(error) as caught:
        await backend.infer(iris_request(), CallContext.new())
    assert type(caught.value) is error
    assert message in str(caught.value)
    if isinstance(caught.value, BackendUnavailableError):
        assert caught.value.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"outputs": [{"name": "y", "datatype": "FP99", "shape": [1], "data": [1]}]}, "outputs[0]"),
        ({"outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "data": [1]}]}, "outputs[0]"),
        ({"model_version": 1.5, "outputs": []}, "model_version"),
        ({"id": 3, "outputs": []}, "id"),
        ({"model_name": "iris"}, "outputs"),
    ],
)
async def test_an_invalid_response_is_a_bad_response_naming_the_field(
    backend: OipBackend, stand_in: StandIn, document: dict[str, Any], field: str
) -> None:
    stand_in.push_json(document)
    with pytest.raises(BadResponseError) as caught:
        await backend.infer(iris_request(), CallContext.new())
    text = str(caught.value)
    assert text.startswith(f"{backend.name}: model 'front-iris': ")
    assert f"invalid response: {field}" in text


async def test_a_response_that_is_not_json_is_a_bad_response(
    backend: OipBackend, stand_in: StandIn
) -> None:
    stand_in.push_raw(b"<html>gateway</html>", content_type="text/html")
    with pytest.raises(BadResponseError, match="body: invalid JSON"):
        await backend.infer(iris_request(), CallContext.new())


async def test_a_bad_inference_header_length_is_a_bad_response(
    backend: OipBackend, stand_in: StandIn
) -> None:
    stand_in.push_raw(b"{}", inference_header_content_length="many")
    with pytest.raises(BadResponseError, match="inference-header-content-length"):
        await backend.infer(iris_request(), CallContext.new())


async def test_a_hanging_upstream_is_cut_at_the_calls_deadline(
    backend: OipBackend, stand_in: StandIn
) -> None:
    stand_in.push_hang()
    ctx = CallContext.new(deadline=time.monotonic() + 0.2)
    with pytest.raises(BackendTimeoutError, match="the request's deadline"):
        await backend.infer(iris_request(), ctx)


async def test_a_hanging_upstream_is_cut_at_the_first_byte_timeout(stand_in: StandIn) -> None:
    oip = backend_for(stand_in.url, options=HttpOptions(first_byte_timeout_s=0.2))
    await oip.load()
    stand_in.push_hang()
    try:
        with pytest.raises(BackendTimeoutError, match="no response within 200 ms"):
            await oip.infer(iris_request(), CallContext.new())
    finally:
        await oip.close()


async def test_an_upstream_that_went_down_is_unavailable(
    start_stand_in: StartStandIn,
) -> None:
    server = await start_stand_in()
    oip = backend_for(server.url)
    await oip.load()
    await server.stop()
    try:
        with pytest.raises(BackendUnavailableError):
            await oip.infer(iris_request(), CallContext.new())
        assert await oip.check_health() is False
    finally:
        await oip.close()


# --- health checks ---------------------------------------------------------------------------


async def test_health_check_is_the_upstream_models_readiness(
    backend: OipBackend, stand_in: StandIn
) -> None:
    assert await backend.check_health() is True
    stand_in.ready_status = 503
    assert await backend.check_health() is False
    assert stand_in.probes == 2


async def test_a_hanging_health_check_fails_within_its_timeout(stand_in: StandIn) -> None:
    oip = backend_for(stand_in.url, health_timeout_s=0.2)
    await oip.load()
    stand_in.hang_readiness()
    try:
        assert await oip.check_health() is False
    finally:
        await oip.close()


async def test_an_unloaded_backend_fails_its_health_check(stand_in: StandIn) -> None:
    oip = backend_for(stand_in.url)
    assert await oip.check_health() is False
    assert stand_in.probes == 0


def test_options_are_checked() -> None:
    upstream = HttpUpstream("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="model: "):
        OipBackend(upstream, "")
    with pytest.raises(ValueError, match="health_timeout_s: must be more than 0"):
        OipBackend(upstream, "m", health_timeout_s=0)


# --- in a pool, against real servers ---------------------------------------------------------


async def test_a_pool_serves_around_a_dead_endpoint_and_takes_it_in_once_it_is_up(
    start_stand_in: StartStandIn, unused_port: int
) -> None:
    live = await start_stand_in()
    events: list[object] = []
    late_url = f"http://127.0.0.1:{unused_port}"
    pool = EndpointPool(
        [backend_for(live.url), backend_for(late_url)],
        health=HealthCheckOptions(interval_s=0.02, timeout_s=1.0),
        on_event=events.append,
        target="iris:1",
    )
    await pool.load()
    try:
        assert isinstance(events[0], EndpointLoadFailed)
        assert events[0].endpoint == f"oip:{late_url}/iris"
        for _ in range(4):
            await pool.infer(iris_request(), CallContext.new())
        assert len(live.received) == 4

        late = await start_stand_in(unused_port)
        await eventually(lambda: pool.loaded == (True, True), "loaded")
        loaded = [e for e in events if isinstance(e, EndpointLoaded)]
        assert [(e.index, e.endpoint) for e in loaded] == [(1, f"oip:{late_url}/iris")]
        assert loaded[0].attempts >= 1
        for _ in range(4):
            await pool.infer(iris_request(), CallContext.new())
        assert (len(live.received), len(late.received)) == (6, 2)
    finally:
        await pool.close()


async def test_a_pool_takes_an_unready_upstream_out_of_rotation(
    start_stand_in: StartStandIn,
) -> None:
    first, second = await start_stand_in(), await start_stand_in()
    events: list[object] = []
    pool = EndpointPool(
        [backend_for(first.url), backend_for(second.url)],
        health=HealthCheckOptions(interval_s=0.02, timeout_s=1.0, unhealthy_threshold=2),
        on_event=events.append,
        target="iris:1",
    )
    await pool.load()
    try:
        second.ready_status = 503
        await eventually(lambda: not pool.is_healthy(1), "unhealthy")
        unhealthy = [e for e in events if isinstance(e, EndpointUnhealthy)]
        assert [(e.index, e.consecutive_failures) for e in unhealthy] == [(1, 2)]
        for _ in range(6):
            await pool.infer(iris_request(), CallContext.new())
        assert (len(first.received), len(second.received)) == (6, 0)
    finally:
        await pool.close()
    probes = second.probes
    await asyncio.sleep(0.1)
    assert second.probes == probes  # closing the pool stopped the checks
