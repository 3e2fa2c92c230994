"""`seawall models`: sign and verify (exit 0 if the artifact holds, 1 with the reason, 2 on
misuse), and the registry commands on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from seawall.cli.main import app
from seawall.registry import Registry, materialize
from seawall.security import PASSPHRASE_ENV, generate_signing_key, key_id, read_public_key
from seawall.store import AuditLog, BlobStore, Database

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


# ------------------------------------------------------------------------------- registry
# Registry commands run as `cli:<LOGNAME>`: each call names its user, so four eyes can be tested.


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database's URL: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return _migrated(f"sqlite:///{tmp_path / 'registry.db'}")
    return _migrated(request.getfixturevalue("postgres_url"))


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A migrated SQLite database's URL."""
    return _migrated(f"sqlite:///{tmp_path / 'registry.db'}")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


@pytest.fixture
def joblib_file(tmp_path: Path) -> Path:
    path = tmp_path / "iris.joblib"
    path.write_bytes(b"not really a model, but bytes to store" * 10)
    return path


def _migrated(url: str) -> str:
    database = Database(url)
    try:
        database.upgrade()
    finally:
        database.close()
    return url


def _models(url: str, *args: str, user: str = "alice", env: dict[str, str] | None = None) -> Result:
    result = runner.invoke(
        app, ["models", *args, "--url", url], env={"LOGNAME": user, **(env or {})}
    )
    # Success, or a deliberate exit: never an exception escaping with a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def _register(url: str, store: Path, path: Path, *args: str, user: str = "alice") -> Result:
    return _models(
        url, "register", "iris", str(path), "--framework", "sklearn",
        "--artifact-store", str(store), *args, user=user,
    )  # fmt: skip


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def _refused(result: Result, message: str, status: int = 1) -> None:
    assert result.exit_code == status, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert result.stdout == ""


def _history(url: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = json.loads(_ok(_models(url, "history", "iris", "--json")))
    return events


def test_create_register_stage_approve_promote_with_four_eyes(
    any_url: str, store: Path, joblib_file: Path, keys: Path
) -> None:
    url = any_url
    _ok(_models(url, "create", "iris", "--description", "Iris species", "--tag", "team=ml"))
    out = _ok(_register(url, store, joblib_file, "--key", str(keys / "signing.key")))
    kid = key_id(read_public_key(keys / "signing.pub"))
    assert out.startswith("registered iris version 1 (models:/iris/1), stage none\n")
    assert f"signed by:     key {kid}" in out
    assert f"iris.joblib  sha256:{hashlib.sha256(joblib_file.read_bytes()).hexdigest()}" in out

    assert _ok(_models(url, "promote", "iris", "1", "--stage", "staging")) == (
        "iris version 1: none → staging\n"
    )
    _refused(
        _models(url, "promote", "iris", "1", "--alias", "champion"),
        "refused: approvals: 'iris' version 1 needs 1 approval(s) from approvers other than its "
        "author; it has 0",
    )
    _refused(
        _models(url, "approve", "iris", "1"),
        "refused: four eyes: 'cli:alice' registered 'iris' version 1 and cannot approve it",
    )
    approved = _ok(_models(url, "approve", "iris", "1", "--comment", "eval OK", user="bob"))
    assert approved.startswith("approved iris version 1 as cli:bob (counts until ")
    assert "approvals: 1 of 1 (cli:bob): may enter production" in approved
    promoted = _ok(_models(url, "promote", "iris", "1", "--alias", "champion", user="carol"))
    assert promoted == "iris version 1: staging → production\niris@champion → version 1\n"

    shown = json.loads(_ok(_models(url, "show", "iris", "@champion", "--json")))
    assert (shown["version"], shown["stage"], shown["aliases"]) == (1, "production", ["champion"])
    assert shown["artifact"]["signed_by"] == kid
    assert shown["approval"]["approved_by"] == ["cli:bob"]
    assert shown["approval"]["satisfied"] is True
    events = _history(url)
    assert [(e["action"], e["actor"], e["version"]) for e in events] == [
        ("model.create", "cli:alice", None),
        ("model.register", "cli:alice", 1),
        ("model.stage", "cli:alice", 1),
        ("model.approve", "cli:bob", 1),
        ("model.stage", "cli:carol", 1),
        ("model.alias", "cli:carol", 1),
    ]
    database = Database(url)
    try:  # each change is in the audit log too, and the chain holds
        log = AuditLog(database)
        records = asyncio.run(log.records())
        assert [r.action for r in records] == [e["action"] for e in events]
        assert asyncio.run(log.verify()).ok
    finally:
        database.close()


def test_history_lists_every_action_in_words(
    url: str, store: Path, joblib_file: Path, keys: Path
) -> None:
    _ok(_register(url, store, joblib_file, "--key", str(keys / "signing.key")))
    _ok(_models(url, "promote", "iris", "1", "--stage", "staging", "--comment", "try it"))
    _ok(_models(url, "approve", "iris", "1", "--comment", "eval OK", user="bob"))
    _ok(_models(url, "reject", "iris", "1", "--comment", "drift", user="carol"))
    _ok(_models(url, "approve", "iris", "1", user="carol"))
    _ok(_models(url, "promote", "iris", "1", "--alias", "champion"))
    _ok(_models(url, "alias", "iris", "shadow", "1"))
    _ok(_models(url, "alias", "iris", "shadow", "--delete"))

    out = _ok(_models(url, "history", "iris"))
    rows = [line.split(None, 4)[1:] for line in out.splitlines()[1:]]
    kid = key_id(read_public_key(keys / "signing.pub"))
    assert rows == [
        ["cli:alice", "-", "model.create", "needs 1 approval(s)"],
        ["cli:alice", "1", "model.register", f"sklearn, 1 file(s), signed by key {kid}"],
        ["cli:alice", "1", "model.stage", "none → staging: try it"],
        ["cli:bob", "1", "model.approve", "eval OK"],
        ["cli:carol", "1", "model.reject", "drift"],
        ["cli:carol", "1", "model.approve"],
        ["cli:alice", "1", "model.stage", "staging → production (approved by cli:bob, cli:carol)"],
        ["cli:alice", "1", "model.alias", "@champion: - → 1"],
        ["cli:alice", "1", "model.alias", "@shadow: - → 1"],
        ["cli:alice", "1", "model.alias", "@shadow: 1 → deleted"],
    ]
    last_two = _ok(_models(url, "history", "iris", "--limit", "2")).splitlines()
    assert len(last_two) == 3
    assert "@shadow: - → 1" in last_two[1]


def test_a_signed_registration_verifies_once_materialized(
    url: str, store: Path, model: Path, keys: Path, tmp_path: Path
) -> None:
    _ok(_register(url, store, model, "--key", str(keys / "signing.key"), "--version", "3"))
    database = Database(url)
    try:
        blobs = BlobStore(store)
        record = asyncio.run(Registry(database, blobs=blobs).get_version("iris", 3))
        built = materialize(blobs, record, tmp_path / "cache")
    finally:
        database.close()
    assert built.manifest is not None

    code, output = verify(
        built.path, keys, "--manifest", str(built.manifest), "--name", "iris", "--version", "3"
    )

    assert code == 0, output
    assert "iris version 3, 2 file(s) match" in output
    assert verify(built.path, keys, "--manifest", str(built.manifest), "--version", "2")[0] == 1


def test_versions_are_numbered_and_an_explicit_number_is_never_reused(
    url: str, store: Path, joblib_file: Path
) -> None:
    assert "version 1 " in _ok(_register(url, store, joblib_file))
    assert "version 2 " in _ok(_register(url, store, joblib_file, "--parent", "1"))
    assert "version 7 " in _ok(_register(url, store, joblib_file, "--version", "7"))
    assert "version 8 " in _ok(_register(url, store, joblib_file))

    _refused(
        _register(url, store, joblib_file, "--version", "7"),
        "refused: version: 'iris' version 7 exists",
    )
    _refused(
        _register(url, store, joblib_file, "--parent", "5"),
        "error: parent_version: 'iris' has no version 5",
        status=2,
    )


def test_register_creates_a_missing_model_and_says_so(
    url: str, store: Path, joblib_file: Path
) -> None:
    out = _ok(_register(url, store, joblib_file))

    assert out.startswith("registered iris version 1 (models:/iris/1), stage none, a new model\n")
    assert "unsigned" in out
    assert ", a new model" not in _ok(_register(url, store, joblib_file))
    as_json = json.loads(_ok(_register(url, store, joblib_file, "--json")))
    assert (as_json["version"], as_json["stage"], as_json["author"]) == (3, "none", "cli:alice")
    assert as_json["artifact"]["uri"] == str(store)


def test_a_passphrase_protected_key_signs_with_the_passphrase_from_the_environment(
    url: str, store: Path, joblib_file: Path, tmp_path: Path
) -> None:
    generate_signing_key(tmp_path / "k.key", tmp_path / "k.pub", passphrase="hunter2")
    args = ["register", "iris", str(joblib_file), "--framework", "sklearn"]
    args += ["--artifact-store", str(store), "--key", str(tmp_path / "k.key")]

    _refused(_models(url, *args), "the private key is encrypted", status=2)
    out = _ok(_models(url, *args, env={PASSPHRASE_ENV: "hunter2"}))

    assert f"key {key_id(read_public_key(tmp_path / 'k.pub'))}" in out


def test_a_manifest_signed_beforehand_is_taken_if_it_names_the_version(
    url: str, store: Path, model: Path, keys: Path
) -> None:
    sign(model, keys)  # as iris version 2

    _refused(
        _register(url, store, model),
        "signed for 'iris' version '2', not 'iris' version '1' (sign again, or register with "
        "that version)",
        status=2,
    )
    out = _ok(_register(url, store, model, "--version", "2"))

    assert f"key {key_id(read_public_key(keys / 'signing.pub'))}" in out


def test_metrics_parameters_tags_provenance_and_signature_are_kept(
    url: str, store: Path, joblib_file: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "signature.yaml"
    signature.write_text(
        "inputs: [{name: x, datatype: FP64, shape: [-1, 4]}]\n"
        "outputs: [{name: label, datatype: INT64, shape: [-1]}]\n"
    )
    _ok(_register(url, store, joblib_file))
    _ok(
        _register(
            url, store, joblib_file,
            "--metric", "accuracy=0.97", "--metric", "f1=1",
            "--param", "C=1.0", "--param", "kernel=rbf", "--param", "layers=[4, 8]",
            "--tag", "team=ml", "--tag", "ticket=123",
            "--dataset", "snap-2026-11", "--code-version", "3f2c1ab", "--parent", "1",
            "--description", "more data", "--signature", str(signature),
        )
    )  # fmt: skip

    shown = json.loads(_ok(_models(url, "show", "iris", "2", "--json")))
    assert shown["metrics"] == {"accuracy": 0.97, "f1": 1.0}
    assert shown["parameters"] == {"C": 1.0, "kernel": "rbf", "layers": [4, 8]}
    assert shown["tags"] == {"team": "ml", "ticket": "123"}
    assert (shown["dataset_snapshot"], shown["code_version"]) == ("snap-2026-11", "3f2c1ab")
    assert (shown["parent_version"], shown["description"]) == (1, "more data")
    assert shown["signature"] == {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
    }
    text = _ok(_models(url, "show", "iris", "2"))
    assert "  metrics:       accuracy=0.97, f1=1.0\n" in text
    assert "  parameters:    C=1.0, kernel=rbf, layers=[4,8]\n" in text
    assert "  signature:     inputs x FP64 [-1, 4]; outputs label INT64 [-1]\n" in text
    assert "  approvals:     0 of 1: needs 1 more\n" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--framework", "Sk Learn"], "error: framework: a lower-case name"),
        (["--metric", "accuracy=high"], "error: --metric: accuracy: a number, got 'high'"),
        (["--metric", "accuracy=nan"], "error: --metric: accuracy: a number, got 'nan'"),
        (["--metric", "accuracy"], "error: --metric: KEY=VALUE, got 'accuracy'"),
        (["--metric", "a=1", "--metric", "a=2"], "error: --metric: 'a' is given twice"),
        (["--param", "=1"], "error: --param: KEY=VALUE, got '=1'"),
        (["--tag", "team"], "error: --tag: KEY=VALUE, got 'team'"),
        (["--key", "{pub}"], "not a PEM private key"),
        (["--key", "{key}", "--manifest", "{missing}"], "error: --manifest: not with --key"),
        (["--signature", "{missing}"], "error: --signature: {missing}: No such file"),
        (["--signature", "{bad_signature}"], "error: --signature: {bad_signature}: outputs:"),
        (["--description", "nul\x00"], "error: description: contains a NUL character"),
    ],
)
def test_bad_register_input_names_the_field_and_exits_2(
    url: str,
    store: Path,
    joblib_file: Path,
    keys: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    bad_signature = tmp_path / "bad.json"
    bad_signature.write_text('{"inputs": [{"name": "x", "datatype": "FP64", "shape": [4]}]}')
    values = {
        "pub": str(keys / "signing.pub"),
        "key": str(keys / "signing.key"),
        "missing": str(tmp_path / "missing"),
        "bad_signature": str(bad_signature),
    }
    command = ["register", "iris", str(joblib_file), "--artifact-store", str(store)]
    if "--framework" not in args:
        command += ["--framework", "sklearn"]

    result = _models(url, *command, *(a.format(**values) for a in args))

    _refused(result, message.format(**values), status=2)
    assert json.loads(_ok(_models(url, "list", "--json"))) == []


def test_a_missing_artifact_is_bad_input(url: str, store: Path, tmp_path: Path) -> None:
    _refused(
        _register(url, store, tmp_path / "nothere.joblib"),
        f"error: {tmp_path / 'nothere.joblib'}: no such file or directory",
        status=2,
    )


def test_list_and_show_a_model(url: str, store: Path, joblib_file: Path, keys: Path) -> None:
    assert _ok(_models(url, "list")) == "no registered models\n"
    _ok(_models(url, "create", "iris", "--required-approvals", "2", "--description", "Iris"))
    _ok(_models(url, "create", "zebra"))
    _ok(_register(url, store, joblib_file, "--key", str(keys / "signing.key"), "--metric", "a=1"))
    _ok(_register(url, store, joblib_file))
    _ok(_models(url, "alias", "iris", "challenger", "2"))

    listed = _ok(_models(url, "list")).splitlines()
    assert listed[0].split() == ["name", "latest", "aliases", "approvals", "created_by", "created"]
    assert listed[1].split()[:5] == ["iris", "2", "@challenger→2", "2", "cli:alice"]
    assert listed[2].split()[:5] == ["zebra", "-", "-", "1", "cli:alice"]
    as_json = json.loads(_ok(_models(url, "list", "--json")))
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in as_json] == [
        ("iris", 2, {"challenger": 2}),
        ("zebra", None, {}),
    ]

    shown = _ok(_models(url, "show", "iris")).splitlines()
    assert shown[:3] == ["iris: Iris", "  approvals:     2 needed for production",
                         "  aliases:       @challenger→2"]  # fmt: skip
    kid = key_id(read_public_key(keys / "signing.pub"))
    rows = [line.split() for line in shown[shown.index("") + 2 :]]
    assert [r[:4] + r[-2:] for r in rows] == [
        ["2", "@challenger", "none", "sklearn", "unsigned", "-"],
        ["1", "none", "sklearn", "cli:alice", kid, "a=1.0"],
    ]
    model = json.loads(_ok(_models(url, "show", "iris", "--json")))
    assert [v["version"] for v in model["versions"]] == [2, 1]
    assert model["required_approvals"] == 2


def test_show_a_version_in_full(url: str, store: Path, model: Path, keys: Path) -> None:
    _ok(_register(url, store, model, "--key", str(keys / "signing.key"), "--dataset", "s1"))
    _ok(_models(url, "promote", "iris", "1", "--stage", "staging"))
    _ok(_models(url, "approve", "iris", "1", "--comment", "fine", user="bob"))

    out = _ok(_models(url, "show", "iris", "1"))

    digest = hashlib.sha256((model / "weights" / "w.bin").read_bytes()).hexdigest()
    assert out.startswith("iris version 1 (models:/iris/1)\n  stage:         staging since ")
    assert "  dataset:       s1\n" in out
    assert f"  artifact:      directory, 2 file(s), 1088 bytes\n  store:         {store}\n" in out
    assert f"  - weights/w.bin  sha256:{digest}\n" in out
    assert "  - manifest       sha256:" in out
    assert "  approvals:     1 of 1 (cli:bob): may enter production\n" in out
    assert re.search(r"\n  - \S+ approve by cli:bob, expires \S+: fine\n", out)


def test_show_names_what_is_not_there(url: str, store: Path, joblib_file: Path) -> None:
    _ok(_register(url, store, joblib_file))

    _refused(_models(url, "show", "nope"), "error: model 'nope' is not registered", status=2)
    _refused(_models(url, "show", "iris", "4"), "error: model 'iris' has no version 4", status=2)
    _refused(
        _models(url, "show", "iris", "@champion"),
        "error: model 'iris' has no alias 'champion'",
        status=2,
    )
    _refused(_models(url, "show", "iris", "Champ!"), "error: alias: a lower-case word", status=2)


def test_aliases_are_set_moved_and_deleted(url: str, store: Path, joblib_file: Path) -> None:
    _ok(_register(url, store, joblib_file))
    _ok(_register(url, store, joblib_file))

    assert _ok(_models(url, "alias", "iris", "challenger", "1")) == "iris@challenger → version 1\n"
    _ok(_models(url, "alias", "iris", "challenger", "2"))
    assert json.loads(_ok(_models(url, "show", "iris", "@challenger", "--json")))["version"] == 2
    assert _ok(_models(url, "alias", "iris", "challenger", "--delete")) == (
        "deleted iris@challenger (it pointed at version 2)\n"
    )

    _refused(
        _models(url, "alias", "iris", "champion", "1"),
        "refused: alias: 'champion' is protected and points only at a version in production",
    )
    _refused(_models(url, "alias", "iris", "challenger"), "error: VERSION: the version", status=2)
    _refused(
        _models(url, "alias", "iris", "challenger", "1", "--delete"),
        "error: VERSION: not with --delete",
        status=2,
    )
    _refused(
        _models(url, "alias", "iris", "challenger", "--delete"),
        "error: model 'iris' has no alias 'challenger'",
        status=2,
    )
    _refused(_models(url, "alias", "iris", "2", "1"), "error: alias: a lower-case word", status=2)


def _in_production(url: str, store: Path, path: Path, *promote: str) -> int:
    out = _ok(_register(url, store, path))
    version = int(out.split()[3])
    _ok(_models(url, "promote", "iris", str(version), "--stage", "staging"))
    _ok(_models(url, "approve", "iris", str(version), user="bob"))
    _ok(_models(url, "promote", "iris", str(version), *promote))
    return version


def test_promotion_archives_the_previous_production_version_unless_kept(
    url: str, store: Path, joblib_file: Path
) -> None:
    _in_production(url, store, joblib_file)
    _ok(_register(url, store, joblib_file))
    _ok(_models(url, "promote", "iris", "2", "--stage", "staging"))
    _ok(_models(url, "approve", "iris", "2", user="bob"))

    out = _ok(_models(url, "promote", "iris", "2", "--comment", "better"))

    assert out == ("iris version 2: staging → production\niris version 1: production → archived\n")
    _in_production(url, store, joblib_file, "--keep-previous")
    stages = {
        v["version"]: v["stage"]
        for v in json.loads(_ok(_models(url, "show", "iris", "--json")))["versions"]
    }
    assert stages == {1: "archived", 2: "production", 3: "production"}


def test_stage_rules_are_refusals(url: str, store: Path, joblib_file: Path) -> None:
    version = _in_production(url, store, joblib_file, "--alias", "champion")
    _ok(_register(url, store, joblib_file))

    _refused(
        _models(url, "promote", "iris", "2"),
        "refused: stage: none → production is not allowed (from none: archived, staging)",
    )
    _refused(
        _models(url, "promote", "iris", str(version), "--stage", "archived"),
        "refused: stage: the protected alias 'champion' points at 'iris' version 1",
    )
    _refused(
        _models(url, "promote", "iris", "2", "--stage", "prod"),
        "error: stage: one of none, staging, production, archived, got 'prod'",
        status=2,
    )
    _refused(
        _models(url, "promote", "iris", "2", "--stage", "staging", "--alias", "champion"),
        "error: alias: an alias is moved with a promotion to production",
        status=2,
    )
    assert _ok(_models(url, "promote", "iris", "2", "--stage", "archived")) == (
        "iris version 2: none → archived\n"
    )
    _ok(_models(url, "promote", "iris", "2", "--stage", "staging"))
    assert _ok(_models(url, "promote", "iris", "2", "--stage", "none")) == (
        "iris version 2: staging → none\n"
    )


def test_a_rejection_stops_promotion_until_withdrawn(
    url: str, store: Path, joblib_file: Path
) -> None:
    _ok(_register(url, store, joblib_file))
    _ok(_models(url, "promote", "iris", "1", "--stage", "staging"))
    _ok(_models(url, "approve", "iris", "1", user="bob"))

    rejected = _ok(_models(url, "reject", "iris", "1", "--comment", "drift", user="carol"))

    assert rejected == (
        "rejected iris version 1 as cli:carol: drift\n"
        "approvals: 1 of 1 (cli:bob): rejected by cli:carol\n"
    )
    _refused(
        _models(url, "promote", "iris", "1"),
        "refused: approvals: 'iris' version 1 is rejected by cli:carol",
    )
    _refused(_models(url, "reject", "iris", "1", "--comment", " ", user="carol"), "comment:", 2)
    assert _models(url, "reject", "iris", "1", user="carol").exit_code == 2  # --comment required
    _refused(_models(url, "reject", "iris", "1", "--comment", "mine"), "refused: four eyes:")
    _ok(_models(url, "approve", "iris", "1", user="carol"))
    _ok(_models(url, "promote", "iris", "1"))


def test_lineage_follows_parents(url: str, store: Path, joblib_file: Path) -> None:
    _ok(_register(url, store, joblib_file, "--dataset", "d1", "--code-version", "c1"))
    _ok(_register(url, store, joblib_file, "--dataset", "d2", "--parent", "1"))
    _ok(_register(url, store, joblib_file, "--dataset", "d3", "--parent", "2"))

    out = _ok(_models(url, "lineage", "iris", "3")).splitlines()
    nodes = json.loads(_ok(_models(url, "lineage", "iris", "3", "--json")))

    digest = hashlib.sha256(joblib_file.read_bytes()).hexdigest()
    assert [line.split()[0] for line in out] == ["version", "3", "2", "1"]
    assert out[3].split()[-3:] == ["d1", "c1", f"iris.joblib={digest[:12]}"]
    assert [(n["version"], n["dataset_snapshot"], n["parent_version"]) for n in nodes] == [
        (3, "d3", 2),
        (2, "d2", 1),
        (1, "d1", None),
    ]
    assert nodes[0]["artifact_digests"] == {"iris.joblib": digest}


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["create", "iris"],
        ["show", "iris"],
        ["history", "iris"],
        ["approve", "iris", "1"],
    ],
)
def test_an_unmigrated_database_is_an_error_naming_the_fix(tmp_path: Path, args: list[str]) -> None:
    result = _models(f"sqlite:///{tmp_path / 'empty.db'}", *args)

    _refused(result, "no model registry (run `seawall db upgrade`)")


def test_an_unreachable_database_is_exit_1(tmp_path: Path) -> None:
    result = _models("postgresql://nobody@127.0.0.1:1/seawall", "list")

    _refused(result, "error: database postgresql+psycopg://nobody@127.0.0.1:1/seawall:")


def test_the_config_gives_the_database_artifact_store_and_rules(
    tmp_path: Path, joblib_file: Path
) -> None:
    directory = tmp_path / "deploy"
    directory.mkdir()
    config = directory / "seawall.yaml"
    config.write_text(
        "database_url: sqlite:///registry.db\n"
        "registry:\n"
        "  artifact_store: artifacts\n"
        "  required_approvals: 2\n"
        "  protected_aliases: [live]\n"
    )
    _migrated(f"sqlite:///{directory / 'registry.db'}")

    def models(*args: str, user: str = "alice") -> Result:
        return runner.invoke(app, ["models", *args, "--config", str(config)], env={"LOGNAME": user})

    register = ["register", "iris", str(joblib_file), "--framework", "sklearn"]
    out = _ok(models(*register))
    assert f"  store:         {directory / 'artifacts'}\n" in out
    digest = hashlib.sha256(joblib_file.read_bytes()).hexdigest()
    assert BlobStore(directory / "artifacts").has(digest)
    _ok(models("promote", "iris", "1", "--stage", "staging"))
    _ok(models("approve", "iris", "1", user="bob"))
    _refused(models("promote", "iris", "1"), "needs 2 approval(s)")
    _refused(models("alias", "iris", "live", "1"), "refused: alias: 'live' is protected")
    _ok(models("alias", "iris", "champion", "1"))  # not protected by this config
