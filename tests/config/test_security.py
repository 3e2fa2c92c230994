"""`SecuritySettings`: off by default; requiring signatures needs a key to trust."""

from __future__ import annotations

import pytest

from seawall.config import SecuritySettings, parse_config
from seawall.errors import ConfigError


def test_by_default_nothing_is_required_and_nothing_trusted() -> None:
    settings = SecuritySettings()
    assert settings.trusted_keys == []
    assert settings.require_signed is False


def test_require_signed_without_a_trusted_key_is_refused_at_its_path() -> None:
    with pytest.raises(ConfigError, match="security: trusted_keys: require_signed needs"):
        parse_config("security: {require_signed: true}")


def test_keys_and_the_requirement_are_read_from_the_file() -> None:
    config = parse_config("security:\n  trusted_keys: [keys/release.pub]\n  require_signed: true\n")
    assert config.security.trusted_keys == ["keys/release.pub"]
    assert config.security.require_signed is True


def test_an_empty_key_entry_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"security.trusted_keys\[0\]"):
        parse_config("security: {trusted_keys: ['']}")


def test_require_signed_can_be_switched_on_from_the_environment() -> None:
    config = parse_config(
        "security: {trusted_keys: [k.pub]}",
        environ={"SEAWALL_SECURITY__REQUIRE_SIGNED": "true"},
    )
    assert config.security.require_signed is True
