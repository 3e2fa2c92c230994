"""`seawall config check | schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from seawall.cli.main import app

runner = CliRunner()


def write(tmp_path: Path, text: str, name: str = "seawall.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def models_yaml(model_file: str = "model.joblib", search_path: str = ".") -> str:
    return f"""\
models:
  - name: clf
    version: "2"
    backend: {{kind: sklearn, path: {model_file}}}
  - name: rules
    backend:
      kind: python
      target: rules:predict
      search_path: {search_path}
      inputs: [{{name: x, datatype: FP64, shape: [-1, 4]}}]
      outputs: [{{name: y, datatype: INT64, shape: [-1]}}]
  - name: echo
    backend: {{kind: mock}}
"""


def test_check_accepts_a_valid_file(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"")  # check looks for the file, it does not load it
    config = write(tmp_path, models_yaml())

    result = runner.invoke(app, ["config", "check", str(config)])

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"ok: {config}: 3 model(s): clf:2, rules:1, echo:1\n"
    assert result.stderr == ""


def test_check_warns_about_a_missing_model_file_and_still_exits_0(tmp_path: Path) -> None:
    config = write(tmp_path, models_yaml(model_file="models/missing.joblib"))

    result = runner.invoke(app, ["config", "check", str(config)])

    assert result.exit_code == 0
    missing = tmp_path.resolve() / "models" / "missing.joblib"
    assert result.stderr == f"warning: models[0].backend.path: file not found: {missing}\n"
    assert result.stdout.startswith(f"ok: {config}: 3 model(s)")


def test_check_warns_about_a_missing_search_path(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"")
    config = write(tmp_path, models_yaml(search_path="lib"))

    result = runner.invoke(app, ["config", "check", str(config)])

    assert result.exit_code == 0
    lib = tmp_path.resolve() / "lib"
    assert result.stderr == f"warning: models[1].backend.search_path: directory not found: {lib}\n"


def test_strict_check_turns_warnings_into_exit_1(tmp_path: Path) -> None:
    config = write(tmp_path, models_yaml(model_file="missing.joblib", search_path="lib"))

    result = runner.invoke(app, ["config", "check", "--strict", str(config)])

    assert result.exit_code == 1
    assert "models[0].backend.path: file not found" in result.stderr
    assert "models[1].backend.search_path: directory not found" in result.stderr


def test_strict_check_without_warnings_exits_0(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"")
    config = write(tmp_path, models_yaml())

    result = runner.invoke(app, ["config", "check", "--strict", str(config)])

    assert result.exit_code == 0, result.stderr


def test_check_of_an_empty_file_serves_no_model(tmp_path: Path) -> None:
    config = write(tmp_path, "")

    result = runner.invoke(app, ["config", "check", str(config)])

    assert result.exit_code == 0
    assert result.stdout == f"ok: {config}: 0 model(s): none\n"


def test_check_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
server:
  port: -1
  log_level: loud
models:
  - name: "bad name"
    backend: {kind: tensorflow, path: m.pb}
  - name: ok
    backend: {kind: mock, error_rate: 2}
""",
    )

    result = runner.invoke(app, ["config", "check", str(config)])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {config}: 5 problem(s):\n")
    for problem in (
        "server.port: Input should be greater than or equal to 0",
        "server.log_level: Input should be 'debug', 'info', 'warning' or 'error'",
        "models[0].name: String should match pattern",
        "models[0].backend: unknown backend kind; expected one of mock, oip, onnx, python, "
        "registry, sklearn",
        "models[1].backend.error_rate: Input should be less than or equal to 1",
    ):
        assert f"  {problem}" in result.stderr, problem


def test_check_names_an_unset_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEAWALL_TEST_UNSET_HOST", raising=False)
    config = write(tmp_path, "server:\n  host: ${SEAWALL_TEST_UNSET_HOST}\n")

    result = runner.invoke(app, ["config", "check", str(config)])

    assert result.exit_code == 2
    assert "server.host: environment variable SEAWALL_TEST_UNSET_HOST is not set" in (result.stderr)


def test_check_of_invalid_yaml_exits_2(tmp_path: Path) -> None:
    config = write(tmp_path, "server: [unclosed\n")

    result = runner.invoke(app, ["config", "check", str(config)])

    assert result.exit_code == 2
    assert f"error: {config}: invalid YAML" in result.stderr


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    resolved: dict[str, Any] = schema["$defs"][ref.removeprefix("#/$defs/")]
    return resolved


def test_schema_is_json_with_a_description_for_every_field() -> None:
    result = runner.invoke(app, ["config", "schema"])

    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    server = resolve(schema, schema["properties"]["server"])
    assert server["properties"]["port"]["description"] == (
        "TCP port to listen on (0 picks a free one)."
    )
    assert server["additionalProperties"] is False  # unknown fields are refused
    objects = [schema, *schema["$defs"].values()]
    fields = [
        (obj.get("title"), name, prop)
        for obj in objects
        for name, prop in obj.get("properties", {}).items()
    ]
    assert len(fields) > 30
    undocumented = [(title, name) for title, name, prop in fields if not prop.get("description")]
    assert undocumented == []
