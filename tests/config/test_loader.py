"""Config: YAML file, ${VAR} interpolation, SEAWALL_* overrides, errors naming path and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from seawall.config import (
    CallableBackendSettings,
    MockBackendSettings,
    OnnxBackendSettings,
    SeawallConfig,
    SklearnBackendSettings,
    load_config,
    parse_config,
)
from seawall.errors import ConfigError
from seawall.types import Datatype

UNKNOWN = "unknown field (check the spelling; see `seawall config schema`)"
KINDS = "unknown backend kind; expected one of mock, oip, onnx, python, registry, sklearn"

FULL = """
server:
  host: 0.0.0.0
  port: 9001
  max_body_bytes: 1024
  shutdown_grace_s: 5
  shutdown_delay_s: 1.5
  strict_readiness: true
  access_log: true
  log_level: debug
  log_format: text

models:
  - name: iris
    version: "1"
    backend: {kind: sklearn, path: iris.joblib, workers: 2, max_queue: 8}
  - name: iris
    version: "2"
    default: true
    backend: {kind: sklearn, path: /abs/iris2.joblib, input_name: x, input_datatype: FP32}
    validation: {convert_datatypes: false}
  - name: iris-onnx
    backend: {kind: onnx, path: iris.onnx, intra_op_threads: 2}
  - name: rules
    backend:
      kind: python
      target: my_rules:predict
      search_path: .
      inputs:  [{name: input-0, datatype: FP64, shape: [-1, 4]}]
      outputs: [{name: predict, datatype: INT64, shape: [-1]}]
  - name: stand-in
    backend: {kind: mock, latency_ms: 20, error_rate: 0.25, seed: 7}
"""


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ=environ or {})
    return info.value.problems


def one_problem(text: str, environ: dict[str, str] | None = None) -> str:
    problems = problems_of(text, environ)
    assert len(problems) == 1, problems
    return problems[0]


# --- defaults and a full file ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "{}"])
def test_an_empty_file_gives_the_defaults(text: str) -> None:
    config = parse_config(text, environ={})
    assert config == SeawallConfig()
    server = config.server
    assert (server.host, server.port) == ("127.0.0.1", 8000)
    assert server.max_body_bytes == 16 * 1024 * 1024
    assert (server.shutdown_grace_s, server.shutdown_delay_s) == (30.0, 0.0)
    assert server.strict_readiness is False
    assert server.access_log is False
    assert (server.log_level, server.log_format) == ("info", "json")
    assert config.models == []


def test_a_full_file_is_read_into_typed_settings() -> None:
    config = parse_config(FULL, environ={})
    server = config.server
    assert (server.host, server.port, server.max_body_bytes) == ("0.0.0.0", 9001, 1024)
    assert (server.shutdown_grace_s, server.shutdown_delay_s) == (5.0, 1.5)
    assert server.strict_readiness is True
    assert server.access_log is True
    assert (server.log_level, server.log_format) == ("debug", "text")

    v1, v2, onnx, rules, mock = config.models
    assert (v1.name, v1.version, v1.default) == ("iris", "1", False)
    assert isinstance(v1.backend, SklearnBackendSettings)
    assert (v1.backend.path, v1.backend.workers, v1.backend.max_queue) == ("iris.joblib", 2, 8)
    assert v1.backend.input_name == "input-0"
    assert v1.backend.input_datatype is Datatype.FP64
    assert v1.validation.convert_datatypes is True

    assert (v2.version, v2.default) == ("2", True)
    assert isinstance(v2.backend, SklearnBackendSettings)
    assert (v2.backend.input_name, v2.backend.input_datatype) == ("x", Datatype.FP32)
    assert v2.validation.convert_datatypes is False

    assert onnx.version == "1"
    assert isinstance(onnx.backend, OnnxBackendSettings)
    assert (onnx.backend.intra_op_threads, onnx.backend.workers) == (2, 1)

    assert isinstance(rules.backend, CallableBackendSettings)
    assert rules.backend.target == "my_rules:predict"
    assert rules.backend.search_path == "."
    (spec,) = rules.backend.inputs
    assert (spec.name, spec.datatype, spec.shape) == ("input-0", Datatype.FP64, [-1, 4])
    assert rules.backend.outputs[0].datatype is Datatype.INT64

    assert isinstance(mock.backend, MockBackendSettings)
    assert (mock.backend.latency_ms, mock.backend.error_rate, mock.backend.seed) == (20, 0.25, 7)


def test_settings_are_frozen() -> None:
    config = parse_config(FULL, environ={})
    with pytest.raises(ValidationError):
        config.server.port = 1  # type: ignore[misc]


# --- every error names the field's path and the reason ---------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("bogus: 1\n", f"bogus: {UNKNOWN}"),
        ("server: {prot: 1}\n", f"server.prot: {UNKNOWN}"),
        (
            "models:\n - {name: a, backend: {kind: sklearn, path: p, pathh: q}}\n",
            f"models[0].backend.pathh: {UNKNOWN}",
        ),
        (
            "models:\n - {name: a, backend: {kind: mock, workers: 2}}\n",
            f"models[0].backend.workers: {UNKNOWN}",
        ),
        (
            "models:\n - {name: a, backend: {kind: mock}, validation: {convert: false}}\n",
            f"models[0].validation.convert: {UNKNOWN}",
        ),
        (
            "server: {port: abc}\n",
            "server.port: Input should be a valid integer, unable to parse string as an integer",
        ),
        ("server: {port: 70000}\n", "server.port: Input should be less than or equal to 65535"),
        (
            "server: {access_log: maybe}\n",
            "server.access_log: Input should be a valid boolean, unable to interpret input",
        ),
        (
            "server: {log_level: loud}\n",
            "server.log_level: Input should be 'debug', 'info', 'warning' or 'error'",
        ),
        (
            "server: [1]\n",
            "server: Input should be a valid dictionary or instance of ServerSettings",
        ),
        ("models: {a: 1}\n", "models: Input should be a valid list"),
        (
            "models:\n - {name: a, backend: {kind: sklearn, path: p, workers: 0}}\n",
            "models[0].backend.workers: Input should be greater than or equal to 1",
        ),
        (
            "models:\n - {name: a, version: 2.5, backend: {kind: mock}}\n",
            "models[0].version: Input should be a valid string",
        ),
        (
            "models:\n - {name: a, backend: {kind: mock, error_rate: 1.5}}\n",
            "models[0].backend.error_rate: Input should be less than or equal to 1",
        ),
        ("models:\n - {name: a, backend: {kind: tf}}\n", f"models[0].backend: {KINDS}"),
        (
            "models:\n - {name: a, backend: {path: p}}\n",
            "models[0].backend: `kind` is required: one of mock, oip, onnx, python, registry, "
            "sklearn",
        ),
        (
            "models:\n - {name: a, backend: {kind: sklearn}}\n",
            "models[0].backend.path: Field required",
        ),
        ("models:\n - {backend: {kind: mock}}\n", "models[0].name: Field required"),
        ("models:\n - {name: a}\n", "models[0].backend: Field required"),
        (
            "models:\n - {name: '-a', backend: {kind: mock}}\n",
            "models[0].name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}$'",
        ),
        (
            "models:\n - {name: a, version: 'v 1', backend: {kind: mock}}\n",
            "models[0].version: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}$'",
        ),
        (
            "models:\n - {name: a, backend: {kind: python, target: nocolon, inputs: [{name: x,"
            " datatype: FP32, shape: [1]}], outputs: [{name: y, datatype: FP32, shape: [1]}]}}\n",
            "models[0].backend.target: String should match pattern "
            "'^[A-Za-z_][\\w.]*:[A-Za-z_][\\w.]*$'",
        ),
        (
            "models:\n - {name: a, backend: {kind: python, target: m:f, inputs: [{name: x,"
            " datatype: FP33, shape: [1]}], outputs: [{name: y, datatype: FP32, shape: [-2]}]}}\n",
            "models[0].backend.inputs[0].datatype: Input should be 'BOOL', 'UINT8', 'UINT16', "
            "'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64' or "
            "'BYTES'",
        ),
    ],
)
def test_an_invalid_field_is_reported_with_its_path_and_reason(text: str, problem: str) -> None:
    problems = problems_of(text)
    assert problem in problems


def test_every_problem_is_reported_at_once() -> None:
    text = (
        "bogus: 1\n"
        "server: {port: -1}\n"
        "models:\n"
        " - {name: a, backend: {kind: sklearn}}\n"
        " - {name: b, backend: {kind: nope}}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={}, source="my.yaml")
    assert sorted(info.value.problems) == sorted(
        [
            f"bogus: {UNKNOWN}",
            "server.port: Input should be greater than or equal to 0",
            "models[0].backend.path: Field required",
            f"models[1].backend: {KINDS}",
        ]
    )
    message = str(info.value)
    assert message.startswith("my.yaml: 4 problem(s):\n")
    assert all(f"\n  {p}" in message for p in info.value.problems)


def test_a_model_version_listed_twice_names_both_entries() -> None:
    text = (
        "models:\n"
        " - {name: a, backend: {kind: mock}}\n"
        " - {name: b, backend: {kind: mock}}\n"
        " - {name: a, version: '1', backend: {kind: mock}}\n"
    )
    assert one_problem(text) == (
        "models: model 'a' version '1' is listed twice (models[0] and models[2])"
    )


def test_two_default_versions_name_both_entries() -> None:
    text = (
        "models:\n"
        " - {name: a, version: '1', default: true, backend: {kind: mock}}\n"
        " - {name: a, version: '2', default: true, backend: {kind: mock}}\n"
    )
    assert one_problem(text) == (
        "models: model 'a' has more than one default version (models[0] and models[1])"
    )


def test_versions_and_defaults_of_different_models_do_not_clash() -> None:
    text = (
        "models:\n"
        " - {name: a, version: '1', default: true, backend: {kind: mock}}\n"
        " - {name: a, version: '2', backend: {kind: mock}}\n"
        " - {name: b, version: '1', default: true, backend: {kind: mock}}\n"
    )
    config = parse_config(text, environ={})
    assert [(m.name, m.version, m.default) for m in config.models] == [
        ("a", "1", True),
        ("a", "2", False),
        ("b", "1", True),
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("server: [\n", "invalid YAML"),
        ("server: {port: 1\n", "invalid YAML"),
        ("a: b: c\n", "invalid YAML"),
        ("- 1\n- 2\n", "the top level must be a mapping, got list"),
        ("42\n", "the top level must be a mapping, got int"),
        ("just text\n", "the top level must be a mapping, got str"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"^cfg\.yaml: {reason}"):
        parse_config(text, environ={}, source="cfg.yaml")


# --- ${VAR} interpolation --------------------------------------------------------------------

SKLEARN_PATH = "models:\n - {name: a, backend: {kind: sklearn, path: '%s'}}\n"


def model_path(value: str, environ: dict[str, str]) -> str:
    config = parse_config(SKLEARN_PATH % value, environ=environ)
    backend = config.models[0].backend
    assert isinstance(backend, SklearnBackendSettings)
    return backend.path


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${DIR}/m.joblib", {"DIR": "/models"}, "/models/m.joblib"),
        ("${DIR:-/default}/m.joblib", {}, "/default/m.joblib"),
        ("${DIR:-/default}/m.joblib", {"DIR": "/set"}, "/set/m.joblib"),
        ("${DIR:-/default}/m.joblib", {"DIR": ""}, "/default/m.joblib"),  # empty takes default
        ("x${DIR}", {"DIR": ""}, "x"),  # empty without a default is empty
        ("${A}-${B}", {"A": "one", "B": "two"}, "one-two"),
        ("$${DIR}", {"DIR": "ignored"}, "${DIR}"),  # $${ is a literal ${
        ("$${NOT_SET}", {}, "${NOT_SET}"),
        ("cost $5", {}, "cost $5"),
        ("${DIR:-}m", {}, "m"),
        ("${REF}", {"REF": "${OTHER}"}, "${OTHER}"),  # values are not expanded again
    ],
)
def test_interpolation(value: str, environ: dict[str, str], expected: str) -> None:
    assert model_path(value, environ) == expected


def test_interpolated_strings_are_then_validated_as_their_field_type() -> None:
    config = parse_config("server: {port: '${PORT}'}\n", environ={"PORT": "9000"})
    assert config.server.port == 9000
    problem = one_problem("server: {port: '${PORT}'}\n", {"PORT": "high"})
    assert problem.startswith("server.port: Input should be a valid integer")


def test_an_unset_variable_is_an_error_naming_the_field() -> None:
    text = (
        "server: {host: '${HOST}'}\n"
        "models:\n"
        " - {name: a, backend: {kind: mock}}\n"
        " - name: b\n"
        "   backend:\n"
        "     kind: python\n"
        "     target: m:f\n"
        "     inputs: [{name: '${IN_NAME}', datatype: FP32, shape: [1]}]\n"
        "     outputs: [{name: y, datatype: FP32, shape: [1]}]\n"
    )
    assert problems_of(text) == [
        "server.host: environment variable HOST is not set (write ${HOST:-default} to give a "
        "default)",
        "models[1].backend.inputs[0].name: environment variable IN_NAME is not set (write "
        "${IN_NAME:-default} to give a default)",
    ]


def test_interpolation_reads_os_environ_when_no_environ_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEAWALL_TEST_HOST", "10.0.0.1")
    config = parse_config("server: {host: '${SEAWALL_TEST_HOST}'}\n")
    assert config.server.host == "10.0.0.1"


# --- SEAWALL_* overrides ---------------------------------------------------------------------

ONE_MODEL = "models:\n - {name: a, backend: {kind: sklearn, path: p, workers: 1}}\n"


def test_overrides_replace_file_values_read_as_yaml_scalars() -> None:
    environ = {
        "SEAWALL_SERVER__PORT": "9000",
        "SEAWALL_SERVER__ACCESS_LOG": "true",
        "SEAWALL_SERVER__HOST": "[not yaml",  # unparsable YAML is taken as a string
        "SEAWALL_MODELS__0__BACKEND__WORKERS": "4",
        "SEAWALL_MODELS__0__VALIDATION__CONVERT_DATATYPES": "false",
    }
    config = parse_config("server: {port: 1234}\n" + ONE_MODEL, environ=environ)
    assert config.server.port == 9000
    assert config.server.access_log is True
    assert config.server.host == "[not yaml"
    backend = config.models[0].backend
    assert isinstance(backend, SklearnBackendSettings)
    assert backend.workers == 4
    assert config.models[0].validation.convert_datatypes is False


def test_overrides_apply_after_interpolation() -> None:
    environ = {"PORT": "1111", "SEAWALL_SERVER__PORT": "2222"}
    assert parse_config("server: {port: '${PORT}'}\n", environ=environ).server.port == 2222


def test_an_override_creates_a_missing_section() -> None:
    config = parse_config("", environ={"SEAWALL_SERVER__SHUTDOWN_DELAY_S": "2.5"})
    assert config.server.shutdown_delay_s == 2.5


def test_override_values_are_validated_like_the_file() -> None:
    problems = problems_of(
        ONE_MODEL,
        {"SEAWALL_SERVER__PORT": "not-a-port", "SEAWALL_MODELS__0__BACKEND__WORKERZ": "2"},
    )
    assert "server.port: Input should be a valid integer, unable to parse string as an integer" in (
        problems
    )
    assert f"models[0].backend.workerz: {UNKNOWN}" in problems


@pytest.mark.parametrize(
    "var",
    [
        "SEAWALL_EXAMPLE_KEY",  # not a section: left for ${SEAWALL_EXAMPLE_KEY}
        "SEAWALL_API_TOKEN",
        "SEAWALL_",
        "SEAWALL_SERVER__",
        "SEAWALL___PORT",
        "seawall_server__port",
        "SERVER__PORT",
    ],
)
def test_variables_that_are_not_overrides_are_ignored(var: str) -> None:
    config = parse_config("server: {port: 1234}\n", environ={var: "oops"})
    assert config.server.port == 1234


def test_a_non_section_seawall_variable_still_interpolates() -> None:
    environ = {"SEAWALL_EXAMPLE_KEY": "from-env"}
    config = parse_config("server: {host: '${SEAWALL_EXAMPLE_KEY}'}\n", environ=environ)
    assert config.server.host == "from-env"


@pytest.mark.parametrize(
    ("var", "problem"),
    [
        (
            "SEAWALL_MODELS__3__BACKEND__WORKERS",
            "cannot override models.3.backend.workers: no item 3 in a list of 1",
        ),
        (
            "SEAWALL_MODELS__FIRST__BACKEND__WORKERS",
            "cannot override models.first.backend.workers: no item first in a list of 1",
        ),
        (
            "SEAWALL_MODELS__0__NAME__X",
            "cannot override models.0.name.x: models.0.name is a str, not a section",
        ),
    ],
)
def test_an_override_that_cannot_apply_names_the_variable(var: str, problem: str) -> None:
    assert one_problem(ONE_MODEL, {var: "4"}) == f"{var}: {problem}"


def test_a_list_index_override_without_the_list_names_the_variable() -> None:
    var = "SEAWALL_MODELS__0__BACKEND__WORKERS"
    assert one_problem("", {var: "4"}) == (
        f"{var}: cannot override models.0.backend.workers: no item 0 in a list of 0"
    )


def test_interpolation_and_override_problems_are_reported_together() -> None:
    problems = problems_of(
        "server: {host: '${NOPE}'}\n" + ONE_MODEL, {"SEAWALL_MODELS__9__NAME": "x"}
    )
    assert len(problems) == 2
    assert problems[0].startswith("server.host: environment variable NOPE is not set")
    assert problems[1].startswith("SEAWALL_MODELS__9__NAME: cannot override models.9.name")


# --- files and paths -------------------------------------------------------------------------


def test_load_config_reads_a_file_and_resolves_paths_against_its_directory(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "conf"
    directory.mkdir()
    file = directory / "seawall.yaml"
    file.write_text(
        "models:\n - {name: a, backend: {kind: sklearn, path: '${MODEL:-models/a.joblib}'}}\n",
        encoding="utf-8",
    )
    config = load_config(file, environ={})
    assert config.base_dir == directory.resolve()
    backend = config.models[0].backend
    assert isinstance(backend, SklearnBackendSettings)
    assert config.resolve_path(backend.path) == directory.resolve() / "models" / "a.joblib"
    assert config.resolve_path("/srv/model.onnx") == Path("/srv/model.onnx")
    assert config.resolve_path("../up.joblib") == directory.resolve() / ".." / "up.joblib"

    overridden = load_config(str(file), environ={"MODEL": "/abs/b.joblib"})
    backend = overridden.models[0].backend
    assert isinstance(backend, SklearnBackendSettings)
    assert overridden.resolve_path(backend.path) == Path("/abs/b.joblib")


def test_paths_resolve_against_the_real_directory_even_when_loaded_relatively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = load_config("sub/c.yaml", environ={})
    monkeypatch.chdir("/")  # moving afterwards must not change where paths point
    assert config.resolve_path("m.onnx") == tmp_path.resolve() / "sub" / "m.onnx"


def test_parse_config_resolves_against_base_dir_or_the_working_directory(tmp_path: Path) -> None:
    assert parse_config("", base_dir=tmp_path, environ={}).resolve_path("x") == tmp_path / "x"
    assert parse_config("", environ={}).resolve_path("x") == Path.cwd() / "x"


def test_a_home_relative_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = parse_config("", base_dir=Path("/elsewhere"), environ={})
    assert config.resolve_path("~/m.joblib") == tmp_path / "m.joblib"


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read: No such file or directory"):
        load_config(missing, environ={})


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        load_config(tmp_path, environ={})


def test_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes("server: {host: 'caf\u00e9'}\n".encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"latin1\.yaml: not UTF-8 text \(invalid .* at byte 19\)"
    ):
        load_config(file, environ={})


def test_load_config_names_the_file_in_errors(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("server: {port: nine}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(file, environ={})
    assert str(info.value).startswith(f"{file}: 1 problem(s):")
    assert info.value.problems[0].startswith("server.port: Input should be a valid integer")


def test_an_unquoted_integer_version_is_read_as_text() -> None:
    config = parse_config("models:\n - {name: a, version: 2, backend: {kind: mock}}\n", environ={})
    assert config.models[0].version == "2"
