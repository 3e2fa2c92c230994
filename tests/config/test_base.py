"""`Settings`: unknown fields refused, values frozen, field docstrings as descriptions."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from seawall.config import SeawallConfig, Settings
from seawall.config.base import NAME_PATTERN


class Example(Settings):
    """An example."""

    size: int = 1
    """How big."""


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Example.model_validate({"size": 1, "colour": "red"})


def test_settings_are_frozen() -> None:
    example = Example()
    with pytest.raises(ValidationError):
        example.size = 2  # type: ignore[misc]


def test_field_docstrings_are_descriptions() -> None:
    assert Example.model_fields["size"].description == "How big."


def test_every_field_of_the_file_is_documented() -> None:
    schema = SeawallConfig.model_json_schema()
    undocumented = [
        f"{model}.{field}"
        for model, body in schema.get("$defs", {}).items()
        for field, spec in body.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undocumented == []


@pytest.mark.parametrize("name", ["iris", "iris-onnx", "v1.2_b", "A" * 128])
def test_names_that_fit_urls_and_labels_are_accepted(name: str) -> None:
    assert re.match(NAME_PATTERN, name)


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "é", "A" * 129])
def test_other_names_are_refused(name: str) -> None:
    assert not re.match(NAME_PATTERN, name)
