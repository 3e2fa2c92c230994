"""`traffic:`: roles name configured versions, differ from each other, and every bound holds."""

from __future__ import annotations

import pytest

from seawall.config import TrafficSettings, parse_config
from seawall.errors import ConfigError

MODELS = """
models:
  - {name: m, version: "1", backend: {kind: mock}}
  - {name: m, version: "2", backend: {kind: mock}}
"""


def test_defaults_split_nothing_and_allow_the_override_header() -> None:
    settings = TrafficSettings(stable="1")
    assert (settings.canary, settings.canary_weight, settings.shadow) == (None, 0.0, None)
    assert settings.override_header == "x-seawall-variant"
    assert settings.sticky_header is None


def test_a_full_section_parses() -> None:
    config = parse_config(
        MODELS
        + """
traffic:
  m:
    stable: "1"
    canary: "2"
    canary_weight: 12.5
    sticky_header: x-user-id
    shadow: {version: "2", sample_rate: 0.25, max_concurrency: 4, timeout_s: 2}
"""
    )
    traffic = config.traffic["m"]
    assert (traffic.canary, traffic.canary_weight, traffic.sticky_header) == (
        "2",
        12.5,
        "x-user-id",
    )
    assert traffic.shadow is not None
    assert (traffic.shadow.sample_rate, traffic.shadow.max_concurrency) == (0.25, 4)


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ('{stable: "9"}', r"traffic\.m\.stable: 'm' version '9' is not a configured model"),
        ('{stable: "1", shadow: {version: "1"}}', "shadow.version: must differ from stable"),
        ('{stable: "1", canary: "2", canary_weight: 101}', "canary_weight"),
        ('{stable: "1", sticky_header: "X User"}', "sticky_header"),
        ('{stable: "1", shadow: {version: "2", sample_rate: 2}}', "sample_rate"),
        ('{stable: "1", colour: red}', "colour"),
    ],
)
def test_bad_sections_name_the_field(section: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(MODELS + f"traffic:\n  m: {section}\n")


def test_an_unknown_model_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"traffic\.n\.stable: 'n' version '1' is not a config"):
        parse_config(MODELS + 'traffic:\n  n: {stable: "1"}\n')
