"""The stage table: which moves are allowed, and how a refusal reads."""

from __future__ import annotations

import itertools

import pytest

from seawall.registry.stages import TRANSITIONS, Stage, check_transition


def test_every_stage_has_a_row() -> None:
    assert set(TRANSITIONS) == set(Stage)


def test_production_is_entered_only_from_staging() -> None:
    assert [s for s in Stage if Stage.PRODUCTION in TRANSITIONS[s]] == [Stage.STAGING]


def test_an_archived_version_goes_back_through_staging() -> None:
    assert TRANSITIONS[Stage.ARCHIVED] == {Stage.STAGING}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(Stage, Stage)))
def test_check_agrees_with_the_table(current: Stage, target: Stage) -> None:
    why = check_transition(current, target)
    assert (why is None) == (target in TRANSITIONS[current])
    if why is not None:
        assert str(current) in why


def test_a_refusal_lists_what_is_allowed() -> None:
    assert check_transition(Stage.NONE, Stage.PRODUCTION) == (
        "none → production is not allowed (from none: archived, staging)"
    )
    assert check_transition(Stage.STAGING, Stage.STAGING) == "the version is already in staging"
