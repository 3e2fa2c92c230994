"""`release:`: the rollout controller's settings, each bound and format checked."""

from __future__ import annotations

import pytest

from seawall.config import ReleaseSettings, parse_config
from seawall.errors import ConfigError


def test_defaults() -> None:
    settings = ReleaseSettings()
    assert (settings.prometheus_url, settings.min_requests, settings.plans) == (None, 20, [])
    assert settings.actor == "rollout-controller"


def test_a_full_section_parses() -> None:
    config = parse_config(
        """
release:
  prometheus_url: http://127.0.0.1:9090
  min_requests: 50
  registry_alias: champion
  plans: [canary-plan.yaml]
"""
    )
    assert config.release.prometheus_url == "http://127.0.0.1:9090"
    assert config.release.plans == ["canary-plan.yaml"]


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ("{prometheus_url: 'ftp://x'}", "prometheus_url"),
        ("{min_requests: 0}", "min_requests"),
        ("{registry_alias: 'Not An Alias'}", "registry_alias"),
        ("{plans: ['']}", "plans"),
        ("{colour: red}", "colour"),
    ],
)
def test_bad_values_name_the_field(section: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(f"release: {section}\n")
