"""Model settings: backend kinds, versions as text, validation settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from seawall.config import ModelSettings
from seawall.config.models import BACKEND_KINDS


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
