"""`registry` settings: defaults, limits, and that they match the registry's own rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from seawall.config import RegistrySettings, SeawallConfig
from seawall.registry import RegistryOptions
from seawall.registry.fields import ALIAS_PATTERN


def test_the_defaults_are_the_registrys() -> None:
    settings = SeawallConfig().registry
    options = RegistryOptions()
    assert settings.approval_ttl_s == options.approval_ttl_s
    assert settings.required_approvals == options.default_required_approvals
    assert frozenset(settings.protected_aliases) == options.protected_aliases


def test_alias_pattern_is_the_registrys() -> None:
    from seawall.config import registry as module

    assert module._ALIAS == ALIAS_PATTERN


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("poll_interval_s", 0),
        ("approval_ttl_s", -1),
        ("required_approvals", 11),
        ("protected_aliases", ["Champion"]),
        ("deployment_target", ""),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        RegistrySettings.model_validate({field: value})


def test_the_settings_become_the_registrys_options() -> None:
    settings = RegistrySettings(
        approval_ttl_s=60, required_approvals=2, protected_aliases=["prod"], require_signed=True
    )
    assert settings.options() == RegistryOptions(
        approval_ttl_s=60,
        protected_aliases=frozenset({"prod"}),
        default_required_approvals=2,
        require_signed=True,
    )
