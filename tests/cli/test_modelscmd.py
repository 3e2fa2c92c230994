"""`seawall models sign | verify`: exit 0 if the artifact holds, 1 with the reason, 2 on misuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seawall.cli.main import app
from seawall.security import generate_signing_key

runner = CliRunner()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir()
    generate_signing_key(directory / "signing.key", directory / "signing.pub")
    generate_signing_key(directory / "other.key", directory / "other.pub")
    return directory


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    (directory / "weights").mkdir(parents=True)
    (directory / "model.onnx").write_bytes(b"\x08\x07" * 512)
    (directory / "weights" / "w.bin").write_bytes(b"\x00" * 64)
    return directory


def sign(model: Path, keys: Path, *extra: str) -> str:
    args = ["models", "sign", str(model), "--key", str(keys / "signing.key")]
    result = runner.invoke(app, [*args, "--name", "iris", "--version", "2", *extra], env={})
    assert result.exit_code == 0, result.output
    return result.stdout


def verify(model: Path, keys: Path, *extra: str, key: str = "signing.pub") -> tuple[int, str]:
    args = ["models", "verify", str(model), "--trusted", str(keys / key), *extra]
    result = runner.invoke(app, args, env={})
    return result.exit_code, result.output


def test_sign_then_verify_succeeds(model: Path, keys: Path) -> None:
    out = sign(model, keys)

    assert "iris version 2, 2 file(s), 1088 bytes" in out
    assert (model.parent / "model.manifest.json").is_file()
    code, output = verify(model, keys, "--name", "iris", "--version", "2")
    assert code == 0, output
    assert output.startswith(f"ok: {model}: iris version 2, 2 file(s) match")


def test_verify_accepts_any_of_several_trusted_keys(model: Path, keys: Path) -> None:
    sign(model, keys)

    code, output = verify(model, keys, "--trusted", str(keys / "signing.pub"), key="other.pub")

    assert code == 0, output


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (
            lambda m: (m / "model.onnx").write_bytes(b"\x08\x06" * 512),
            "digest mismatch: model.onnx",
        ),
        (lambda m: (m / "weights" / "w.bin").write_bytes(b"\x00"), "size mismatch: weights/w.bin"),
        (lambda m: (m / "weights" / "w.bin").unlink(), "file missing: weights/w.bin"),
        (lambda m: (m / "extra.py").write_text("x"), "extra file: extra.py"),
        (lambda m: (m.parent / "model.manifest.json").unlink(), "unsigned: no manifest"),
    ],
)
def test_verify_exits_1_naming_the_reason(
    model: Path, keys: Path, damage: object, reason: str
) -> None:
    sign(model, keys)
    assert callable(damage)
    damage(model)

    code, output = verify(model, keys)

    assert code == 1
    assert f"refused: {model}: {reason}" in output


def test_verify_refuses_an_untrusted_signer_and_a_wrong_version(model: Path, keys: Path) -> None:
    sign(model, keys)

    untrusted = verify(model, keys, key="other.pub")
    wrong = verify(model, keys, "--version", "3")

    assert untrusted[0] == wrong[0] == 1
    assert "untrusted key" in untrusted[1]
    assert "wrong model: signed version is '2', not '3'" in wrong[1]


def test_verify_refuses_an_edited_manifest(model: Path, keys: Path) -> None:
    sign(model, keys)
    manifest = model.parent / "model.manifest.json"
    data = json.loads(manifest.read_text())
    data["manifest"]["version"] = "3"
    manifest.write_text(json.dumps(data))

    code, output = verify(model, keys)

    assert code == 1
    assert "bad signature" in output


def test_a_manifest_may_be_written_and_read_elsewhere(
    model: Path, keys: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "iris-2.json"

    out = sign(model, keys, "--manifest", str(elsewhere))

    assert f"wrote {elsewhere}" in out
    assert not (model.parent / "model.manifest.json").exists()
    assert verify(model, keys, "--manifest", str(elsewhere))[0] == 0
    assert verify(model, keys)[0] == 1  # not at the default place


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sign", "{missing}", "--key", "{key}", "--name", "n", "--version", "1"], "no such file"),
        (["sign", "{model}", "--key", "{missing}", "--name", "n", "--version", "1"], "cannot read"),
        (
            ["sign", "{model}", "--key", "{pub}", "--name", "n", "--version", "1"],
            "not a PEM private",
        ),
        (
            ["sign", "{model}", "--key", "{key}", "--name", "", "--version", "1"],
            "name and a version",
        ),
        (["verify", "{model}", "--trusted", "{missing}"], "cannot read the public key"),
        (["verify", "{model}", "--trusted", "{key}"], "not a PEM public key"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    model: Path, keys: Path, args: list[str], message: str
) -> None:
    values = {
        "missing": str(model.parent / "missing"),
        "key": str(keys / "signing.key"),
        "pub": str(keys / "signing.pub"),
        "model": str(model),
    }

    result = runner.invoke(app, ["models", *(a.format(**values) for a in args)], env={})

    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr


def test_verify_needs_a_trusted_key(model: Path) -> None:
    result = runner.invoke(app, ["models", "verify", str(model)])

    assert result.exit_code == 2
    assert "--trusted" in result.output
