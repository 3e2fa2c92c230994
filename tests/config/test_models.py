"""Model settings: backend kinds, versions as text, validation settings, remote OIP backends."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from seawall.backends.http import HttpOptions
from seawall.backends.outlier import OutlierOptions
from seawall.backends.pool import HealthCheckOptions
from seawall.config import ModelSettings, parse_config
from seawall.config.models import (
    BACKEND_KINDS,
    HealthCheckSettings,
    HttpClientSettings,
    OipBackendSettings,
    OutlierSettings,
)
from seawall.errors import ConfigError


@pytest.mark.parametrize("kind", sorted(BACKEND_KINDS))
def test_backend_kinds_are_the_union_members(kind: str) -> None:
    schema = ModelSettings.model_json_schema()
    mapping = schema["properties"]["backend"]["discriminator"]["mapping"]
    assert kind in mapping


@pytest.mark.parametrize(("given", "read"), [(2, "2"), ("2", "2"), ("v2", "v2")])
def test_versions_are_text(given: object, read: str) -> None:
    model = ModelSettings.model_validate(
        {"name": "m", "version": given, "backend": {"kind": "mock"}}
    )
    assert model.version == read


def test_a_boolean_version_is_not_taken_as_text() -> None:
    with pytest.raises(ValidationError, match="version"):
        ModelSettings.model_validate({"name": "m", "version": True, "backend": {"kind": "mock"}})


def test_validation_converts_datatypes_by_default() -> None:
    model = ModelSettings.model_validate({"name": "m", "backend": {"kind": "mock"}})
    assert model.validation.convert_datatypes is True


# --- kind: oip (remote OIP v2 servers) -------------------------------------------------------


def oip(**backend: Any) -> OipBackendSettings:
    settings = ModelSettings.model_validate(
        {
            "name": "m",
            "backend": {"kind": "oip", "endpoints": [{"url": "http://up:8000"}], **backend},
        }
    ).backend
    assert isinstance(settings, OipBackendSettings)
    return settings


def test_oip_defaults() -> None:
    settings = oip()
    assert (settings.model, settings.version, settings.balancer) == (None, None, "round_robin")
    assert settings.binary is False
    assert [(e.url, e.weight) for e in settings.endpoints] == [("http://up:8000", 1)]
    assert settings.health_check == HealthCheckSettings()
    assert settings.outlier == OutlierSettings()
    assert settings.http.headers == {}


def test_oip_defaults_are_the_runtime_defaults() -> None:
    """The YAML defaults and the options objects' defaults must not drift apart."""
    http, options = HttpClientSettings(), HttpOptions()
    assert http.connect_timeout_ms / 1000 == options.connect_timeout_s
    assert http.first_byte_timeout_ms / 1000 == options.first_byte_timeout_s
    assert http.idle_read_timeout_ms / 1000 == options.idle_read_timeout_s
    assert http.total_timeout_ms is options.total_timeout_s is None
    assert http.max_connections == options.max_connections
    assert http.keepalive_s == options.keepalive_s
    assert http.verify_tls is options.verify_tls
    health, checks = HealthCheckSettings(), HealthCheckOptions()
    assert health.interval_s == checks.interval_s
    assert health.timeout_ms / 1000 == checks.timeout_s
    assert health.unhealthy_threshold == checks.unhealthy_threshold
    assert health.healthy_threshold == checks.healthy_threshold
    outlier, ejection = OutlierSettings(), OutlierOptions()
    assert outlier.consecutive_5xx == ejection.consecutive_5xx
    assert outlier.base_ejection_s == ejection.base_ejection_time_s
    assert outlier.max_ejection_s == ejection.max_ejection_time_s
    assert outlier.max_ejection_percent == ejection.max_ejection_percent


def test_oip_every_field_from_yaml_with_interpolation() -> None:
    text = """
models:
  - name: iris
    backend:
      kind: oip
      model: iris-upstream
      version: 2
      endpoints:
        - {url: "${PRIMARY}", weight: 3}
        - {url: "https://replica.internal:8443/triton"}
      balancer: weighted
      binary: true
      http:
        connect_timeout_ms: 500
        first_byte_timeout_ms: 2000
        idle_read_timeout_ms: 1500
        total_timeout_ms: 9000
        max_connections: 8
        keepalive_s: 5
        verify_tls: false
        ca_file: ca.pem
        client_cert: client.pem
        client_key: client.key
        headers: {authorization: "Bearer ${TOKEN}"}
      health_check: {interval_s: 2, timeout_ms: 300, unhealthy_threshold: 4, healthy_threshold: 1}
      outlier:
        {consecutive_5xx: 2, base_ejection_s: 5, max_ejection_s: 50, max_ejection_percent: 50}
"""
    environ = {"PRIMARY": "http://10.0.0.1:8000", "TOKEN": "s3cret"}
    settings = parse_config(text, environ=environ).models[0].backend
    assert isinstance(settings, OipBackendSettings)
    assert (settings.model, settings.version) == ("iris-upstream", "2")
    assert [(e.url, e.weight) for e in settings.endpoints] == [
        ("http://10.0.0.1:8000", 3),
        ("https://replica.internal:8443/triton", 1),
    ]
    assert (settings.balancer, settings.binary) == ("weighted", True)
    assert settings.http.headers == {"authorization": "Bearer s3cret"}
    assert (settings.http.total_timeout_ms, settings.http.max_connections) == (9000, 8)
    assert settings.health_check == HealthCheckSettings(
        interval_s=2, timeout_ms=300, unhealthy_threshold=4, healthy_threshold=1
    )
    assert settings.outlier == OutlierSettings(
        consecutive_5xx=2, base_ejection_s=5, max_ejection_s=50, max_ejection_percent=50
    )


def test_oip_health_checks_and_ejection_can_be_turned_off() -> None:
    settings = oip(health_check=None, outlier=None)
    assert settings.health_check is None
    assert settings.outlier is None


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({"endpoints": []}, "endpoints: List should have at least 1 item"),
        ({"endpoints": [{"url": "ftp://up"}]}, "endpoints[0].url: expected an http:// or https://"),
        ({"endpoints": [{"url": "up:8000"}]}, "endpoints[0].url: expected an http:// or https://"),
        ({"endpoints": [{"url": "http://up?x=1"}]}, "endpoints[0].url: expected an http://"),
        (
            {"endpoints": [{"url": "http://a"}, {"url": "http://b", "weight": 2}]},
            "models[0].backend: endpoints[1].weight: only `balancer: weighted` uses weights "
            "(balancer is round_robin)",
        ),
        ({"balancer": "random"}, "balancer: Input should be 'round_robin'"),
        ({"http": {"client_cert": "c.pem"}}, "http: client_cert: give both client_cert and"),
        ({"http": {"connect_timeout_ms": 0}}, "http.connect_timeout_ms: Input should be greater"),
        ({"http": {"proxy": "x"}}, "http.proxy: unknown field"),
        ({"health_check": {"unhealthy_threshold": 0}}, "health_check.unhealthy_threshold: "),
        (
            {"outlier": {"base_ejection_s": 60, "max_ejection_s": 30}},
            "outlier: max_ejection_s: must be at least base_ejection_s (60)",
        ),
        ({"outlier": {"max_ejection_percent": 101}}, "outlier.max_ejection_percent: Input should"),
        ({"model": ""}, "model: String should have at least 1 character"),
    ],
)
def test_oip_invalid_settings_name_the_field(backend: dict[str, Any], message: str) -> None:
    document = {"kind": "oip", "endpoints": [{"url": "http://up:8000"}], **backend}
    with pytest.raises(ConfigError) as caught:
        parse_config(
            orjson.dumps({"models": [{"name": "m", "backend": document}]}).decode(), environ={}
        )
    (problem,) = caught.value.problems
    assert message in problem
    assert problem.startswith("models[0].backend")


@pytest.mark.parametrize("kind", ["sklearn", "onnx"])
def test_a_model_file_may_name_its_signed_manifest(kind: str) -> None:
    model = ModelSettings.model_validate(
        {"name": "m", "backend": {"kind": kind, "path": "m.bin"}, "signature": "sigs/m.json"}
    )
    assert model.signature == "sigs/m.json"
    assert (
        ModelSettings.model_validate(
            {"name": "m", "backend": {"kind": kind, "path": "m.bin"}}
        ).signature
        is None
    )


def test_only_models_loaded_from_a_file_have_a_signature() -> None:
    with pytest.raises(
        ConfigError, match=r"models\[0\]: signature: only models loaded from a file"
    ):
        parse_config(
            "models:\n  - name: m\n    backend: {kind: mock}\n    signature: m.manifest.json\n"
        )
