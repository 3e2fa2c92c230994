"""`SeawallConfig`: unique versions, one default per model, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from seawall.config import SeawallConfig

MOCK = {"kind": "mock"}


def test_a_version_listed_twice_is_refused_naming_both_entries() -> None:
    models = [{"name": "a", "backend": MOCK}, {"name": "b", "backend": MOCK}]
    models.append({"name": "a", "backend": MOCK})
    with pytest.raises(ValidationError, match=r"listed twice \(models\[0\] and models\[2\]\)"):
        SeawallConfig.model_validate({"models": models})


def test_two_default_versions_are_refused() -> None:
    models = [
        {"name": "a", "version": "1", "default": True, "backend": MOCK},
        {"name": "a", "version": "2", "default": True, "backend": MOCK},
    ]
    with pytest.raises(ValidationError, match="more than one default version"):
        SeawallConfig.model_validate({"models": models})


def test_paths_resolve_against_the_base_directory(tmp_path: Path) -> None:
    config = SeawallConfig()
    config._base_dir = tmp_path
    assert config.resolve_path("m.joblib") == tmp_path / "m.joblib"
    assert config.resolve_path("/abs/m.onnx") == Path("/abs/m.onnx")
