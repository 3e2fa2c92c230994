"""The OIP v2 REST routes, in process over ASGI against the demo models."""

from __future__ import annotations

import copy
import gzip
import math
import re
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from seawall import __version__
from seawall.assemble import assemble
from seawall.config import SeawallConfig, ServerSettings, parse_config
from seawall.gateway import Gateway
from seawall.types import Datatype

#: Demo model -> number of features of its one input, `input-0`.
MODELS = {"iris": 4, "iris-onnx": 4, "diabetes": 10, "iris-rules": 4}
METADATA: dict[str, dict[str, Any]] = {
    "iris": {
        "name": "iris",
        "versions": ["1"],
        "platform": "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
        ],
    },
    "iris-onnx": {
        "name": "iris-onnx",
        "versions": ["1"],
        "platform": "onnxruntime",
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "predict_proba", "datatype": "FP32", "shape": [-1, 3]},
        ],
    },
    "diabetes": {
        "name": "diabetes",
        "versions": ["1"],
        "platform": "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 10]}],
        "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
    },
    "iris-rules": {
        "name": "iris-rules",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
    },
}
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
#: An error body names the field, a colon and the reason.
ERROR_FORM = re.compile(r"^[A-Za-z_\-][\w\-\.\[\]]*: .+", re.DOTALL)
HEX_ID = re.compile(r"^[0-9a-f]{32}$")
IRIS_CONFIG = """\
models:
  - name: iris
    backend: {kind: sklearn, path: iris.joblib}
"""
BROKEN_CONFIG = (
    IRIS_CONFIG
    + """\
  - name: broken
    backend: {kind: sklearn, path: missing.joblib}
"""
)


def _infer_body(*rows: list[float], datatype: str = "FP64", **top: Any) -> dict[str, Any]:
    tensor = {"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": datatype}
    return {"inputs": [{**tensor, "data": [list(r) for r in rows]}], **top}


@dataclass
class _Served:
    gateway: Gateway
    client: httpx.AsyncClient


async def _serve(config: SeawallConfig, settings: ServerSettings) -> AsyncIterator[_Served]:
    gateway = Gateway(assemble(config), settings)
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield _Served(gateway, http)
    finally:
        await gateway.shutdown()


@pytest.fixture
async def broken(demo_dir: Path) -> AsyncIterator[_Served]:
    """iris, and a model whose file is missing."""
    config = parse_config(BROKEN_CONFIG, base_dir=demo_dir, environ={})
    async for served in _serve(config, config.server):
        yield served


@pytest.fixture
async def small(demo_dir: Path) -> AsyncIterator[_Served]:
    """iris behind a 1 KiB body limit."""
    config = parse_config(IRIS_CONFIG, base_dir=demo_dir, environ={})
    async for served in _serve(config, ServerSettings(max_body_bytes=1024)):
        yield served


# --- server routes --------------------------------------------------------------------------


async def test_server_metadata(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "name": "seawall",
        "version": __version__,
        "extensions": ["binary_tensor_data", "model_repository"],
    }


async def test_liveness(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/health/live")
    assert (response.status_code, response.json()) == (200, {"live": True})


async def test_readiness_is_200_when_the_models_are_loaded(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/health/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True})


async def test_readiness_is_503_once_draining(
    client: httpx.AsyncClient, demo_gateway: Gateway
) -> None:
    demo_gateway.drain()
    response = await client.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reason": "shutting down"}
    assert (await client.get("/v2/health/live")).status_code == 200


async def test_readiness_is_503_before_startup(demo_config: SeawallConfig) -> None:
    gateway = Gateway(assemble(demo_config), demo_config.server)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        response = await http.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reason": "loading models"}
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/repository/index", "/v2/models/iris"])
async def test_head_is_answered_like_get(client: httpx.AsyncClient, path: str) -> None:
    response = await client.head(path)
    assert response.status_code == 200


async def test_a_json_integer_for_a_float_input_is_a_number_like_any_other(
    client: httpx.AsyncClient,
) -> None:
    # 16777217 has no exact FP32 form; like the literal 16777217.0 it is read at FP32 precision.
    body = {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [16777217, 3, 1, 0]}
        ]
    }
    response = await client.post("/v2/models/iris-onnx/infer", json=body)
    assert response.status_code == 200, response.text


# --- model metadata and readiness ------------------------------------------------------------


@pytest.mark.parametrize("model", list(METADATA))
async def test_model_metadata(client: httpx.AsyncClient, model: str) -> None:
    response = await client.get(f"/v2/models/{model}")
    assert response.status_code == 200
    assert response.json() == METADATA[model]
    versioned = await client.get(f"/v2/models/{model}/versions/1")
    assert versioned.json() == METADATA[model]


@pytest.mark.parametrize("path", ["/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"])
async def test_model_readiness(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {"name": "iris", "version": "1", "ready": True}


@pytest.mark.parametrize(
    "path",
    ["/v2/models/nope", "/v2/models/nope/ready", "/v2/models/nope/versions/1/ready"],
)
async def test_unknown_model_is_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "model 'nope' not found"}


async def test_unknown_model_is_404_on_infer(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/models/nope/infer", json=_infer_body(SETOSA))
    assert response.status_code == 404
    assert response.json() == {"error": "model 'nope' not found"}
    assert HEX_ID.match(response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/iris/versions/2"),
        ("GET", "/v2/models/iris/versions/2/ready"),
        ("POST", "/v2/models/iris/versions/2/infer"),
    ],
)
async def test_unknown_version_is_404_listing_the_versions(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json=_infer_body(SETOSA))
    assert response.status_code == 404
    assert response.json() == {"error": "model 'iris' has no version '2' (versions: 1)"}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/iris/explain",
        "/v2/models/iris/versions/1/explain",
        "/v2/models/iris/infer/more",
        "/v2/models",
        "/v2/health",
        "/v2/unknown",
    ],
)
async def test_unknown_path_is_404_naming_it(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": f"path {path!r} not found"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v2", "GET"),
        ("POST", "/v2/health/live", "GET"),
        ("DELETE", "/v2/health/ready", "GET"),
        ("POST", "/v2/models/iris", "GET"),
        ("PUT", "/v2/models/iris/ready", "GET"),
        ("GET", "/v2/models/iris/infer", "POST"),
        ("GET", "/v2/models/iris/versions/1/infer", "POST"),
        ("DELETE", "/v2/repository/index", "GET, POST"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json() == {
        "error": f"method {method} is not allowed on {path} (allow: {allow})"
    }


# --- repository index -----------------------------------------------------------------------


async def test_repository_index_lists_every_model_version(client: httpx.AsyncClient) -> None:
    expected = [{"name": name, "version": "1", "state": "READY", "reason": ""} for name in MODELS]
    assert (await client.get("/v2/repository/index")).json() == expected
    posted = await client.post("/v2/repository/index")
    assert (posted.status_code, posted.json()) == (200, expected)


async def test_repository_index_shows_a_failed_model_and_filters_on_ready(
    broken: _Served,
) -> None:
    everything = (await broken.client.get("/v2/repository/index")).json()
    assert [(m["name"], m["state"]) for m in everything] == [
        ("iris", "READY"),
        ("broken", "FAILED"),
    ]
    assert everything[1]["reason"].startswith("FileNotFoundError: model file not found: ")
    assert everything[1]["reason"].endswith("missing.joblib")
    ready = await broken.client.post("/v2/repository/index", json={"ready": True})
    assert ready.json() == [{"name": "iris", "version": "1", "state": "READY", "reason": ""}]
    not_filtered = await broken.client.post("/v2/repository/index", json={"ready": False})
    assert not_filtered.json() == everything


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"ready": "yes"}', "ready: expected true or false"),
        (b"[true]", "ready: expected true or false"),
        (b"{ready", "body: invalid JSON: "),
    ],
)
async def test_repository_index_refuses_a_bad_filter(
    client: httpx.AsyncClient, body: bytes, error: str
) -> None:
    response = await client.post("/v2/repository/index", content=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(error)


# --- inference ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS))
async def test_infer_on_every_demo_model(client: httpx.AsyncClient, model: str) -> None:
    row = [0.1] * MODELS[model]
    response = await client.post(f"/v2/models/{model}/infer", json=_infer_body(row, row))
    assert response.status_code == 200
    document = response.json()
    assert (document["model_name"], document["model_version"]) == (model, "1")
    assert "id" not in document
    wanted = [o["name"] for o in METADATA[model]["outputs"]]
    assert [o["name"] for o in document["outputs"]] == wanted
    assert document["outputs"][0]["shape"] == [2]


async def test_infer_classifies_iris_and_echoes_the_id(client: httpx.AsyncClient) -> None:
    body = _infer_body(SETOSA, VIRGINICA, id="req-1")
    response = await client.post("/v2/models/iris-onnx/versions/1/infer", json=body)
    assert response.status_code == 200
    document = response.json()
    assert document["id"] == "req-1"
    outputs = {o["name"]: o for o in document["outputs"]}
    assert outputs["predict"] == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [2],
        "data": [0, 2],
    }
    assert outputs["predict_proba"]["shape"] == [2, 3]
    assert outputs["predict_proba"]["datatype"] == "FP32"


async def test_infer_returns_only_the_requested_outputs(client: httpx.AsyncClient) -> None:
    body = _infer_body(SETOSA, outputs=[{"name": "predict_proba"}])
    response = await client.post("/v2/models/iris/infer", json=body)
    (output,) = response.json()["outputs"]
    assert output["name"] == "predict_proba"
    assert output["data"][0] > 0.9


async def test_infer_error_names_field_and_reason(client: httpx.AsyncClient) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    response = await client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "inputs[0].shape: input 'input-0' of model 'iris' takes shape [-1, 4], got [1, 3]"
    }
    assert HEX_ID.match(response.headers["x-request-id"])


async def test_infer_echoes_the_callers_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v2/models/iris/infer", json=_infer_body(SETOSA), headers={"x-request-id": "abc-123"}
    )
    assert response.headers["x-request-id"] == "abc-123"


async def test_infer_generates_a_request_id_when_none_or_an_invalid_one_is_given(
    client: httpx.AsyncClient,
) -> None:
    plain = await client.post("/v2/models/iris/infer", json=_infer_body(SETOSA))
    too_long = await client.post(
        "/v2/models/iris/infer", json=_infer_body(SETOSA), headers={"x-request-id": "a" * 129}
    )
    longest = await client.post(
        "/v2/models/iris/infer", json=_infer_body(SETOSA), headers={"x-request-id": "b" * 128}
    )
    assert HEX_ID.match(plain.headers["x-request-id"])
    assert HEX_ID.match(too_long.headers["x-request-id"])
    assert plain.headers["x-request-id"] != too_long.headers["x-request-id"]
    assert longest.headers["x-request-id"] == "b" * 128


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("GZIP", gzip.compress),
    ],
)
async def test_compressed_request_bodies_are_accepted(
    client: httpx.AsyncClient, encoding: str, compress: Any
) -> None:
    body = compress(orjson.dumps(_infer_body(SETOSA, VIRGINICA)))
    response = await client.post(
        "/v2/models/iris/infer", content=body, headers={"content-encoding": encoding}
    )
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [0, 2]


async def test_unknown_content_encoding_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v2/models/iris/infer",
        content=orjson.dumps(_infer_body(SETOSA)),
        headers={"content-encoding": "br"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "content-encoding: 'br' is not supported (gzip, deflate or identity)"
    }


async def test_corrupt_gzip_is_400(client: httpx.AsyncClient) -> None:
    body = gzip.compress(orjson.dumps(_infer_body(SETOSA)))
    response = await client.post(
        "/v2/models/iris/infer", content=body[:-12], headers={"content-encoding": "gzip"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "body: truncated gzip data"}


async def test_binary_request_from_the_triton_client(client: httpx.AsyncClient) -> None:
    tensor = triton.InferInput("input-0", [2, 4], "FP32")
    tensor.set_data_from_numpy(np.array([SETOSA, VIRGINICA], np.float32), binary_data=True)
    wanted = [
        triton.InferRequestedOutput("predict", binary_data=True),
        triton.InferRequestedOutput("predict_proba", binary_data=False),
    ]
    body, json_length = triton.InferenceServerClient.generate_request_body(
        [tensor], outputs=wanted, request_id="bin-1"
    )
    response = await client.post(
        "/v2/models/iris/infer",
        content=body,
        headers={
            "inference-header-content-length": str(json_length),
            "content-type": "application/octet-stream",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    header_length = int(response.headers["inference-header-content-length"])
    head = orjson.loads(response.content[:header_length])
    assert head["id"] == "bin-1"
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 16}
    result = triton.InferResult.from_response_body(response.content, header_length=header_length)
    assert result.as_numpy("predict").tolist() == [0, 2]
    assert result.as_numpy("predict_proba").shape == (2, 3)


@pytest.mark.parametrize("value", ["abc", "-1", "\u00b2"])
async def test_bad_inference_header_content_length_is_400(
    client: httpx.AsyncClient, value: str
) -> None:
    response = await client.post(
        "/v2/models/iris/infer",
        content=orjson.dumps(_infer_body(SETOSA)),
        headers={b"inference-header-content-length": value.encode("latin-1")},
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": f"inference-header-content-length: expected a byte count, got {value!r}"
    }


# --- body limits ----------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413(small: _Served) -> None:
    body = orjson.dumps(_infer_body(*[SETOSA] * 60))
    assert len(body) > 1024
    response = await small.client.post("/v2/models/iris/infer", content=body)
    assert response.status_code == 413
    assert response.json() == {"error": "body: larger than the limit of 1024 bytes"}


async def test_a_streamed_body_over_the_limit_is_413(small: _Served) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 200

    response = await small.client.post("/v2/models/iris/infer", content=chunks())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"error": "body: larger than the limit of 1024 bytes"}


async def test_a_body_at_the_limit_is_served(small: _Served) -> None:
    body = orjson.dumps(_infer_body(SETOSA))
    padded = body[:-1] + b" " * (1024 - len(body)) + b"}"
    assert len(padded) == 1024
    response = await small.client.post("/v2/models/iris/infer", content=padded)
    assert response.status_code == 200


async def test_a_gzip_bomb_is_413(small: _Served) -> None:
    inflated = orjson.dumps(_infer_body(SETOSA))[:-1] + b" " * 500_000 + b"}"
    bomb = gzip.compress(inflated)
    assert len(bomb) < 1024
    response = await small.client.post(
        "/v2/models/iris/infer", content=bomb, headers={"content-encoding": "gzip"}
    )
    assert response.status_code == 413
    assert response.json() == {"error": "body: larger than the limit of 1024 bytes"}


# --- a model that failed to load ------------------------------------------------------------


async def test_a_failed_model_answers_503_with_the_reason(broken: _Served) -> None:
    infer = await broken.client.post("/v2/models/broken/infer", json=_infer_body(SETOSA))
    ready = await broken.client.get("/v2/models/broken/ready")
    metadata = await broken.client.get("/v2/models/broken/versions/1")
    for response in (infer, ready, metadata):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
    reason = broken.gateway.repository.get("broken").reason
    assert reason.startswith("FileNotFoundError: model file not found: ")
    assert infer.json() == {"error": f"model 'broken' version '1' is failed: {reason}"}
    assert metadata.json() == infer.json()
    assert ready.json() == {"name": "broken", "version": "1", "ready": False, "reason": reason}


async def test_the_other_models_serve_beside_a_failed_one(broken: _Served) -> None:
    response = await broken.client.post("/v2/models/iris/infer", json=_infer_body(SETOSA))
    assert response.status_code == 200
    assert (await broken.client.get("/v2/models/iris/ready")).status_code == 200
    ready = await broken.client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


# --- acceptance property: no body makes the gateway answer 5xx ------------------------------


@dataclass
class _Call:
    """One infer request: where, the JSON document (or raw bytes), binary tail and headers."""

    path: str
    document: Any
    tail: bytes = b""
    encoding: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)

    def content(self) -> tuple[bytes, dict[bytes, bytes]]:
        head = self.document if isinstance(self.document, bytes) else orjson.dumps(self.document)
        headers = dict(self.headers)
        if self.tail and b"inference-header-content-length" not in headers:
            headers[b"inference-header-content-length"] = str(len(head)).encode()
        body = head + self.tail
        if self.encoding == "gzip":
            body = gzip.compress(body)
        elif self.encoding == "deflate":
            body = zlib.compress(body)
        if self.encoding:
            headers[b"content-encoding"] = self.encoding.encode()
        return body, headers


def _json_values(datatype: Datatype) -> st.SearchStrategy[Any]:
    if datatype is Datatype.BOOL:
        return st.booleans()
    if datatype is Datatype.BYTES:
        return st.text(max_size=6)
    if datatype.is_integer:
        info = np.iinfo(datatype.numpy_dtype)  # a little beyond the range, within JSON's
        return st.integers(max(int(info.min) - 2, -(2**63)), min(int(info.max) + 2, 2**64 - 1))
    return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)


def _binary_values(datatype: Datatype) -> st.SearchStrategy[Any]:
    if datatype is Datatype.BYTES:
        return st.binary(max_size=6)
    if datatype.is_integer:
        info = np.iinfo(datatype.numpy_dtype)
        return st.integers(int(info.min), int(info.max))
    if datatype.is_float:
        return {2: st.floats(width=16), 4: st.floats(width=32)}.get(
            datatype.numpy_dtype.itemsize, st.floats()
        )
    return st.booleans()


def _to_binary(values: list[Any], datatype: Datatype) -> bytes:
    if datatype is Datatype.BYTES:
        return b"".join(struct.pack("<I", len(v)) + v for v in values)
    little = datatype.numpy_dtype.newbyteorder("<")
    return np.array(values, dtype=datatype.numpy_dtype).astype(little).tobytes()


def _nest(values: list[Any], shape: list[int]) -> Any:
    if len(shape) <= 1:
        return values
    step = len(values) // shape[0] if shape[0] else 0
    return [_nest(values[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


@st.composite
def well_formed(draw: st.DrawFn) -> _Call:
    """A request a client could send to a demo model: right or wrong datatype, shape, names."""
    model = draw(st.sampled_from(list(MODELS)))
    datatype = draw(st.sampled_from([Datatype.FP64, Datatype.FP32, *Datatype]))
    rows = draw(st.integers(0, 3))
    shape = draw(
        st.just([rows, MODELS[model]])
        | hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4).map(list)
    )
    size = math.prod(shape)
    binary = draw(st.booleans())
    strategy = _binary_values(datatype) if binary else _json_values(datatype)
    values = draw(st.lists(strategy, min_size=size, max_size=size))
    name = draw(st.sampled_from(["input-0", "input-0", "input-1"]))
    tensor: dict[str, Any] = {
        "name": name,
        "datatype": draw(st.sampled_from([datatype.value, datatype.value.lower()])),
        "shape": shape,
    }
    tail = b""
    if binary:
        tail = _to_binary(values, datatype)
        tensor["parameters"] = {"binary_data_size": len(tail)}
    else:
        tensor["data"] = draw(st.sampled_from([values, _nest(values, shape)]))
    document: dict[str, Any] = {"inputs": [tensor]}
    if draw(st.booleans()):
        document["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        outputs = draw(st.lists(st.sampled_from(["predict", "predict_proba", "nope"]), max_size=2))
        document["outputs"] = [
            {"name": o, "parameters": {"binary_data": draw(st.booleans())}} for o in outputs
        ]
    if draw(st.booleans()):
        document["parameters"] = {"binary_data_output": draw(st.booleans())}
    version = draw(st.sampled_from(["", "/versions/1"]))
    encoding = draw(st.sampled_from([None, None, "gzip", "deflate"]))
    return _Call(f"/v2/models/{model}{version}/infer", document, tail, encoding)


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
KEYS = st.sampled_from(
    ["inputs", "name", "datatype", "shape", "data", "parameters", "outputs", "id", "ready"]
) | st.text(max_size=6)
JSON = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=16,
)


def _slots(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) in a JSON document, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key
            yield from _slots(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index
            yield from _slots(value)


@st.composite
def mutated(draw: st.DrawFn) -> _Call:
    """A well-formed request with parts deleted, replaced, wrapped or its binary tail cut."""
    call = draw(well_formed())
    document = copy.deepcopy(call.document)
    for _ in range(draw(st.integers(1, 3))):
        slots = list(_slots(document))
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["delete", "replace", "wrap", "negate"]))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(JSON)
        elif action == "wrap":
            container[key] = [container[key]]
        elif isinstance(container[key], int | float) and not isinstance(container[key], bool):
            container[key] = -container[key] - 1
    tail = call.tail
    if tail and draw(st.booleans()):
        cut = draw(st.integers(0, len(tail)))
        tail = tail[:cut] + draw(st.binary(max_size=4))
    headers: dict[bytes, bytes] = {}
    if draw(st.booleans()):
        latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
        headers[b"inference-header-content-length"] = draw(
            st.integers(0, 400).map(lambda n: str(n).encode())
            | st.text(latin1, max_size=4).map(lambda t: t.encode("latin-1"))
        )
    return _Call(call.path, document, tail, call.encoding, headers)


@st.composite
def arbitrary(draw: st.DrawFn) -> _Call:
    """Any JSON, OIP-shaped JSON with arbitrary values, or any bytes, under any encoding header."""
    model = draw(st.sampled_from(list(MODELS)))
    document = draw(
        JSON.map(orjson.dumps)
        | st.fixed_dictionaries(
            {"inputs": st.lists(st.dictionaries(KEYS, JSON, max_size=5), max_size=2)}
        ).map(orjson.dumps)
        | st.binary(max_size=64)
    )
    encoding = draw(st.sampled_from([None, "gzip", "deflate"]))
    headers: dict[bytes, bytes] = {}
    if draw(st.booleans()):
        headers[b"content-encoding"] = draw(
            st.sampled_from([b"gzip", b"deflate", b"x-gzip", b"zstd"])
        )
    return _Call(f"/v2/models/{model}/infer", document, b"", encoding, headers)


async def _assert_answered_in_protocol(client: httpx.AsyncClient, call: _Call) -> None:
    body, headers = call.content()
    response = await client.post(call.path, content=body, headers=headers)
    status = response.status_code
    event(f"status {status}")  # --hypothesis-show-statistics shows the mix
    assert status == 200 or 400 <= status < 500, (status, response.text)
    assert response.headers["x-request-id"]
    if status == 200:
        length = response.headers.get("inference-header-content-length")
        head = response.content if length is None else response.content[: int(length)]
        assert isinstance(orjson.loads(head)["outputs"], list)
        return
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error, str)
    if status not in (404, 405):
        assert ERROR_FORM.match(error), error


#: Model code warns on overflowing inputs (1e308 * weights); in production that is no error.
NUMERIC_WARNINGS = (
    "ignore:overflow encountered:RuntimeWarning",
    "ignore:invalid value encountered:RuntimeWarning",
    "ignore:divide by zero encountered:RuntimeWarning",
)
PROPERTY = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.mark.filterwarnings(*NUMERIC_WARNINGS)
@settings(PROPERTY, max_examples=150)
@given(call=well_formed())
async def test_well_formed_requests_never_get_a_5xx(client: httpx.AsyncClient, call: _Call) -> None:
    await _assert_answered_in_protocol(client, call)


@pytest.mark.filterwarnings(*NUMERIC_WARNINGS)
@settings(PROPERTY, max_examples=100)
@given(call=mutated())
async def test_mutated_requests_never_get_a_5xx(client: httpx.AsyncClient, call: _Call) -> None:
    await _assert_answered_in_protocol(client, call)


@pytest.mark.filterwarnings(*NUMERIC_WARNINGS)
@settings(PROPERTY, max_examples=100)
@given(call=arbitrary())
async def test_arbitrary_bodies_never_get_a_5xx(client: httpx.AsyncClient, call: _Call) -> None:
    await _assert_answered_in_protocol(client, call)


# --- response cache -------------------------------------------------------------------------

CACHED_CONFIG = IRIS_CONFIG + "    policies: {cache: {ttl_s: 60}}\n"


@pytest.fixture
async def cached(demo_dir: Path) -> AsyncIterator[_Served]:
    """iris with a response cache."""
    config = parse_config(CACHED_CONFIG, base_dir=demo_dir, environ={})
    async for served in _serve(config, config.server):
        yield served


async def test_a_repeated_infer_is_a_cache_hit_answered_with_the_callers_ids(
    cached: _Served,
) -> None:
    http, body = cached.client, _infer_body(SETOSA, VIRGINICA)
    first = await http.post("/v2/models/iris/infer", json={**body, "id": "one"})
    second = await http.post(
        "/v2/models/iris/versions/1/infer",  # the same resolved version: the same entry
        json={**body, "id": "two"},
        headers={"x-request-id": "req-2"},
    )

    assert [r.status_code for r in (first, second)] == [200, 200]
    assert [r.headers["x-seawall-cache"] for r in (first, second)] == ["miss", "hit"]
    assert (second.json()["id"], second.headers["x-request-id"]) == ("two", "req-2")
    assert second.json()["outputs"] == first.json()["outputs"]
    assert second.headers["x-seawall-served-by"] == "iris:1"


@pytest.mark.parametrize("directive", ["no-cache", "no-store"])
async def test_cache_control_on_the_request_reaches_the_cache(
    cached: _Served, directive: str
) -> None:
    http, body = cached.client, _infer_body(SETOSA)
    await http.post("/v2/models/iris/infer", json=body)
    bypassed = await http.post(
        "/v2/models/iris/infer", json=body, headers={"Cache-Control": directive}
    )
    assert bypassed.status_code == 200
    assert bypassed.headers["x-seawall-cache"] == "bypass"


async def test_a_hit_is_encoded_in_binary_when_asked(cached: _Served) -> None:
    http, body = cached.client, _infer_body(SETOSA, VIRGINICA)
    as_json = (await http.post("/v2/models/iris/infer", json=body)).json()
    binary = await http.post(
        "/v2/models/iris/infer", json={**body, "parameters": {"binary_data_output": True}}
    )

    assert binary.headers["x-seawall-cache"] == "hit"  # the encoding is not part of the key
    header_length = int(binary.headers["inference-header-content-length"])
    header = orjson.loads(binary.content[:header_length])
    raw = binary.content[header_length:]
    split = header["outputs"][0]["parameters"]["binary_data_size"]
    labels, probabilities = np.frombuffer(raw[:split], np.int64), np.frombuffer(raw[split:])
    assert labels.tolist() == as_json["outputs"][0]["data"]
    assert probabilities.tolist() == as_json["outputs"][1]["data"]
