"""`VersionRequest`: sign for the number it takes, retry once on a clash; option parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from seawall.cli.registration import (
    VersionRequest,
    json_value,
    key_values,
    number_value,
    read_signature,
    text_value,
)
from seawall.errors import ConflictError, InvalidInputError
from seawall.registry import ArtifactInfo, Registry, VersionRecord, materialize, store_artifact
from seawall.security import verify_artifact
from seawall.store import BlobStore, Database


class _Contested(Registry):
    """A registry where another client takes the wanted number just before each of the first
    `steals` registrations."""

    def __init__(self, database: Database, blobs: BlobStore, artifact: Path, steals: int) -> None:
        super().__init__(database, blobs=blobs)
        self._artifact, self._steals = artifact, steals

    async def register_version(
        self, name: str, artifact: ArtifactInfo, **kwargs: Any
    ) -> VersionRecord:
        if self._steals:
            self._steals -= 1
            assert self.blobs is not None
            theirs = store_artifact(self.blobs, self._artifact, name=name, version=0)
            await super().register_version(
                name, theirs, actor="cli:other", framework="onnx", version=kwargs["version"]
            )
        return await super().register_version(name, artifact, **kwargs)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    database.upgrade()
    yield database
    database.close()


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx bytes" * 100)
    return path


def test_a_clash_is_retried_once_signed_for_the_next_number(
    database: Database, artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGNAME", "alice")
    blobs = BlobStore(tmp_path / "store")
    key = Ed25519PrivateKey.generate()
    registry = _Contested(database, blobs, artifact, steals=1)
    request = VersionRequest("iris", artifact, "onnx", signing_key=key)

    record, created = asyncio.run(request.register(registry))

    assert (record.version, record.author, created) == (2, "cli:alice", True)
    versions = asyncio.run(registry.list_versions("iris"))
    assert [(v.version, v.author) for v in versions] == [(2, "cli:alice"), (1, "cli:other")]
    built = materialize(blobs, record, tmp_path / "cache")
    assert built.manifest is not None
    signed = verify_artifact(
        built.path, [key.public_key()], manifest=built.manifest, name="iris", version="2"
    )
    assert signed.version == "2"


def test_a_second_clash_or_a_clash_on_an_explicit_number_is_reported(
    database: Database, artifact: Path, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "store")

    with pytest.raises(ConflictError, match="version: 'iris' version 2 exists"):
        asyncio.run(
            VersionRequest("iris", artifact, "onnx").register(
                _Contested(database, blobs, artifact, steals=2)
            )
        )
    with pytest.raises(ConflictError, match="version: 'iris' version 7 exists"):
        asyncio.run(
            VersionRequest("iris", artifact, "onnx", version=7).register(
                _Contested(database, blobs, artifact, steals=1)
            )
        )


def test_the_fields_reach_the_registry(database: Database, artifact: Path, tmp_path: Path) -> None:
    registry = Registry(database, blobs=BlobStore(tmp_path / "store"))
    fields = {"metrics": {"auc": 0.9}, "dataset_snapshot": "s1", "description": "first"}

    record, created = asyncio.run(
        VersionRequest("iris", artifact, "onnx", version=4, fields=fields).register(registry)
    )

    assert (record.version, record.framework, created) == (4, "onnx", True)
    assert (record.metrics, record.dataset_snapshot, record.description) == (
        {"auc": 0.9},
        "s1",
        "first",
    )
    assert record.artifact.signed_by is None


def test_key_values_parse_each_pair_and_name_the_option() -> None:
    assert key_values("--tag", None, text_value) == {}
    assert key_values("--tag", ["a=1", " b =x=y", "c="], text_value) == {
        "a": "1",
        "b": "x=y",
        "c": "",
    }
    for items, reason in (
        (["a"], "--tag: KEY=VALUE, got 'a'"),
        (["=1"], "--tag: KEY=VALUE, got '=1'"),
        (["a=1", "a=2"], "--tag: 'a' is given twice"),
    ):
        with pytest.raises(InvalidInputError) as caught:
            key_values("--tag", items, text_value)
        assert str(caught.value) == reason


@pytest.mark.parametrize(("text", "number"), [("1", 1.0), ("-0.5", -0.5), ("1e3", 1000.0)])
def test_metrics_are_finite_numbers(text: str, number: float) -> None:
    assert number_value("--metric", "m", text) == number


@pytest.mark.parametrize("text", ["high", "", "nan", "inf", "-Infinity", "1,5"])
def test_anything_else_is_not_a_metric(text: str) -> None:
    with pytest.raises(InvalidInputError, match=f"--metric: m: a number, got {text!r}"):
        number_value("--metric", "m", text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("0.1", 0.1),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("rbf", "rbf"),
        ("NaN", "NaN"),
        ("1.0.0", "1.0.0"),
    ],
)
def test_parameters_are_json_else_text(text: str, value: object) -> None:
    assert json_value("--param", "p", text) == value


def test_a_signature_file_is_read_as_json_or_yaml_and_checked(tmp_path: Path) -> None:
    spec = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
    json_file, yaml_file = tmp_path / "s.json", tmp_path / "s.yaml"
    json_file.write_text(f'{{"inputs": [{json.dumps(spec)}], "outputs": [{json.dumps(spec)}]}}')
    yaml_file.write_text("inputs:\n- {name: x, datatype: FP32, shape: [-1, 4]}\noutputs: []\n")

    assert read_signature(json_file) == {"inputs": [spec], "outputs": [spec]}
    with pytest.raises(InvalidInputError, match=r"--signature: .*s\.yaml: outputs: List should"):
        read_signature(yaml_file)
    yaml_file.write_text("inputs: [{name: x, datatype: FP33, shape: [1]}]\noutputs: [{}]\n")
    with pytest.raises(InvalidInputError, match=r"s\.yaml: inputs\.0\.datatype: Input should be"):
        read_signature(yaml_file)
    yaml_file.write_text("inputs: [\n")
    with pytest.raises(InvalidInputError, match=r"s\.yaml: not JSON or YAML"):
        read_signature(yaml_file)
    with pytest.raises(InvalidInputError, match=r"missing\.yaml: No such file or directory"):
        read_signature(tmp_path / "missing.yaml")
