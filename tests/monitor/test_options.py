"""Drift options: named defaults, per-feature thresholds, and refusals that name the field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from seawall.monitor.options import (
    DEFAULT_ALPHA,
    DEFAULT_BINS,
    DEFAULT_JS,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_NEW_CATEGORY_SHARE,
    DEFAULT_PSI,
    DriftOptions,
    DriftThresholds,
)


def test_the_defaults_are_the_named_constants() -> None:
    options = DriftOptions()

    assert options.thresholds == DriftThresholds(
        psi=DEFAULT_PSI,
        js=DEFAULT_JS,
        alpha=DEFAULT_ALPHA,
        new_category_share=DEFAULT_NEW_CATEGORY_SHARE,
    )
    assert (DEFAULT_PSI, DEFAULT_JS, DEFAULT_ALPHA) == (0.2, 0.1, 0.01)
    assert options.min_samples == DEFAULT_MIN_SAMPLES
    assert options.bins == DEFAULT_BINS == 10


def test_a_feature_gets_its_own_thresholds_or_the_shared_ones() -> None:
    strict = DriftThresholds(psi=0.1, alpha=0.001)
    options = DriftOptions(per_feature={"age": strict})

    assert options.for_feature("age") is strict
    assert options.for_feature("income") == DriftThresholds()


def test_options_are_immutable_even_when_built_from_a_dict() -> None:
    source = {"age": DriftThresholds(psi=0.1)}
    options = DriftOptions(per_feature=source)
    source["income"] = DriftThresholds()

    assert "income" not in options.per_feature
    with pytest.raises(TypeError):
        options.per_feature["x"] = DriftThresholds()  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.bins = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"psi": 0.0}, "psi: must be positive, got 0.0"),
        ({"js": 1.5}, r"js: must be in \(0, 1\], got 1.5"),
        ({"alpha": 1.0}, r"alpha: must be in \(0, 1\), got 1.0"),
        ({"new_category_share": 0.0}, r"new_category_share: must be in \(0, 1\], got 0.0"),
    ],
)
def test_bad_thresholds_name_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftThresholds(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_samples": 0}, "min_samples: must be at least 1, got 0"),
        ({"bins": 3}, r"bins: must divide 100 \(2, 4, 5, 10, 20, ...\), got 3"),
        ({"bins": 200}, "bins: must divide 100"),
        ({"per_feature": {"age": 0.1}}, "per_feature.age: must be DriftThresholds, got 0.1"),
    ],
)
def test_bad_options_name_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftOptions(**kwargs)
