"""ProfileCheckPolicy: requests outside the training profile are refused (naming the place,
feature and rule) or served and counted; the rules come from a real snapshot profile."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.clock import FakeClock
from seawall.context import CallContext
from seawall.data.profile import profile
from seawall.errors import ConfigError, InvalidInputError
from seawall.policies.profile import (
    InputOutOfProfile,
    ProfileCheckOptions,
    ProfileCheckPolicy,
    ProfileRules,
)
from seawall.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)

TRAINING = pd.DataFrame(
    {
        "length": [4.3, 5.0, 5.8, 7.9],
        "width": [2.0, 3.0, 3.5, 4.4],
        "count": pd.array([1, 2, 3, 10], dtype="Int64"),
        "colour": ["red", "green", "blue", "red"],
        "label": [0.0, 1.0, 1.0, 2.0],
    }
)
DTYPES = {"length": "float", "width": "float", "count": "int", "colour": "string", "label": "float"}
PROFILE = profile(TRAINING, DTYPES)
MATRIX = ModelMetadata(
    "m",
    "test",
    (TensorSpec("input-0", Datatype.FP64, (-1, 3)),),
    (TensorSpec("y", Datatype.FP64, (-1,)),),
)
COLUMNS = ("length", "width", "count")
NAMED = ModelMetadata(
    "m",
    "test",
    (
        TensorSpec("length", Datatype.FP64, (-1,)),
        TensorSpec("colour", Datatype.BYTES, (-1,)),
    ),
    (TensorSpec("y", Datatype.FP64, (-1,)),),
)


def matrix(rows: list[list[float]]) -> InferenceRequest:
    return InferenceRequest("m", [Tensor.from_numpy("input-0", np.array(rows, dtype=np.float64))])


def named(lengths: list[float], colours: list[str]) -> InferenceRequest:
    return InferenceRequest(
        "m",
        [
            Tensor.from_numpy("length", np.array(lengths, dtype=np.float64)),
            Tensor.from_numpy("colour", np.array(colours, dtype=object), Datatype.BYTES),
        ],
    )


class Harness:
    def __init__(self, rules: ProfileRules | None, **options: Any) -> None:
        self.events: list[InputOutOfProfile] = []
        self.served: list[InferenceRequest] = []
        self.clock = FakeClock()
        current = None if rules is None else ("3", rules)
        self.policy = ProfileCheckPolicy(
            lambda: current,
            ProfileCheckOptions(**options),
            clock=self.clock,
            on_event=self.events.append,  # type: ignore[arg-type]
            target="m:1",
        )

    async def call(self, request: InferenceRequest) -> None:
        async def call_next(req: InferenceRequest, ctx: CallContext) -> InferenceResponse:
            self.served.append(req)
            return InferenceResponse("m", [])

        await self.policy(request, CallContext("r1"), call_next)


def matrix_rules(margin: float = 0.0) -> ProfileRules:
    return ProfileRules.from_profile(
        PROFILE, MATRIX, features=COLUMNS, margin=margin, source="snapshot abc123"
    )


async def test_values_inside_the_training_ranges_pass() -> None:
    harness = Harness(matrix_rules())
    await harness.call(matrix([[4.3, 2.0, 1], [7.9, 4.4, 10], [5.5, 3.1, 4]]))
    assert len(harness.served) == 1
    assert harness.events == []


@pytest.mark.parametrize(
    ("row", "place", "rule", "words"),
    [
        ([8.5, 3.0, 2], "inputs[0].data[1][0]", "above_max", "above the training maximum 7.9"),
        ([5.0, 1.0, 2], "inputs[0].data[1][1]", "below_min", "below the training minimum 2"),
        ([5.0, np.nan, 2], "inputs[0].data[1][1]", "null", "training had no nulls"),
        ([5.0, 3.0, np.inf], "inputs[0].data[1][2]", "infinite", "no infinite values"),
    ],
)
async def test_reject_names_the_place_the_feature_and_the_rule(
    row: list[float], place: str, rule: str, words: str
) -> None:
    harness = Harness(matrix_rules())
    with pytest.raises(InvalidInputError) as caught:
        await harness.call(matrix([[5.0, 3.0, 2], row]))
    assert caught.value.field == place
    feature = COLUMNS[int(place[-2])]
    assert f"feature {feature!r}" in caught.value.reason
    assert words in caught.value.reason
    assert "snapshot abc123" in caught.value.reason
    assert harness.served == []
    assert harness.events == [InputOutOfProfile("m:1", "3", feature, rule, "rejected", 1)]


async def test_margin_widens_the_range_by_a_share_of_it() -> None:
    # length: 4.3..7.9, range 3.6; a margin of 0.1 accepts 3.94..8.26.
    harness = Harness(matrix_rules(margin=0.1))
    await harness.call(matrix([[8.25, 3.0, 2], [3.95, 3.0, 2]]))
    assert len(harness.served) == 1
    with pytest.raises(InvalidInputError, match=r"above the training maximum 8\.26"):
        await harness.call(matrix([[8.27, 3.0, 2]]))


async def test_flag_serves_counts_every_broken_rule_and_throttles_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = Harness(matrix_rules(), mode="flag", log_interval_s=60)
    bad = [[9.0, 1.0, 2], [9.5, 3.0, 2], [5.0, 3.0, 2]]
    with caplog.at_level(logging.WARNING, "seawall.policies"):
        await harness.call(matrix(bad))
        await harness.call(matrix(bad))
        harness.clock.advance(61)
        await harness.call(matrix(bad))
    assert len(harness.served) == 3
    assert harness.events[:2] == [
        InputOutOfProfile("m:1", "3", "width", "below_min", "flagged", 1),
        InputOutOfProfile("m:1", "3", "length", "above_max", "flagged", 2),
    ]
    assert len(harness.events) == 6
    logged = [(r.feature, r.rule, r.suppressed) for r in caplog.records]  # type: ignore[attr-defined]
    assert logged == [
        ("width", "below_min", 0),
        ("length", "above_max", 0),
        ("width", "below_min", 1),
        ("length", "above_max", 2),
    ]


async def test_categories_of_a_closed_set_and_inputs_named_as_features() -> None:
    rules = ProfileRules.from_profile(PROFILE, NAMED, source="file p.json")
    assert {r.name for r in rules.rules} == {"length", "colour"}
    harness = Harness(rules)
    await harness.call(named([5.0, 6.0], ["red", "blue"]))
    with pytest.raises(InvalidInputError) as caught:
        await harness.call(named([5.0, 6.0], ["red", "purple"]))
    assert caught.value.field == "inputs[1].data[1]"
    assert "'colour' = 'purple' is not a category seen in training" in caught.value.reason
    with pytest.raises(InvalidInputError) as caught:
        await harness.call(named([5.0, 99.0], ["red", "red"]))
    assert caught.value.field == "inputs[0].data[1]"


async def test_an_open_category_set_accepts_any_value() -> None:
    many = pd.DataFrame({"colour": [f"c{i}" for i in range(60)], "length": [1.0] * 60})
    open_profile = profile(many, {"colour": "string", "length": "float"})
    assert open_profile["columns"]["colour"]["other_count"] > 0
    harness = Harness(ProfileRules.from_profile(open_profile, NAMED))
    await harness.call(named([1.0], ["never-seen"]))
    assert len(harness.served) == 1


async def test_no_rules_means_no_check() -> None:
    harness = Harness(None)
    await harness.call(matrix([[1e9, -1e9, np.nan]]))
    assert len(harness.served) == 1


def test_layout_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"takes 3 columns, the features are 5 .*set `features`"):
        ProfileRules.from_profile(PROFILE, MATRIX, source="s")
    with pytest.raises(ConfigError, match="features not in the profile: height"):
        ProfileRules.from_profile(PROFILE, MATRIX, features=["length", "height", "count"])
    with pytest.raises(ConfigError, match="no `columns`"):
        ProfileRules.from_profile({"rows": 3}, MATRIX)
    other = ModelMetadata("m", "t", (TensorSpec("x", Datatype.FP64, (-1,)),), ())
    with pytest.raises(ConfigError, match=r"no input of the model \(x\) is a column"):
        ProfileRules.from_profile(PROFILE, other)


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="mode"):
        ProfileCheckOptions(mode="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="margin"):
        ProfileCheckOptions(margin=-0.1)


@given(
    st.lists(
        st.tuples(
            st.floats(-20, 20, allow_nan=False),
            st.floats(-20, 20, allow_nan=False),
            st.integers(-5, 20),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_violations_are_exactly_the_values_outside_the_ranges(
    rows: list[tuple[float, ...]],
) -> None:
    rules = matrix_rules()
    found = {
        (b.feature.name, b.rule): b.count for b in rules.violations(matrix([list(r) for r in rows]))
    }
    expected: dict[tuple[str, str], int] = {}
    bounds = {"length": (4.3, 7.9), "width": (2.0, 4.4), "count": (1, 10)}
    for row in rows:
        for name, value in zip(COLUMNS, row, strict=True):
            low, high = bounds[name]
            rule = "below_min" if value < low else "above_max" if value > high else None
            if rule is not None:
                expected[(name, rule)] = expected.get((name, rule), 0) + 1
    assert found == expected
