"""`Settings`: the base of every configuration model (unknown fields refused, frozen)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["NAME_PATTERN", "Settings"]

#: Model, version and key names: they appear in URLs, metric labels and logs.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"


class Settings(BaseModel):
    """Frozen, `extra="forbid"`; the docstring under each field is its description."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
