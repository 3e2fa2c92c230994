"""`ServerSettings`: defaults and bounds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from seawall.config import ServerSettings


def test_defaults_are_safe_for_a_first_run() -> None:
    settings = ServerSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.max_body_bytes == 16 * 1024 * 1024
    assert settings.shutdown_grace_s == 30.0
    assert settings.strict_readiness is False
    assert settings.access_log is False


@pytest.mark.parametrize(
    ("field", "value"),
    [("port", 70000), ("port", -1), ("max_body_bytes", 0), ("shutdown_grace_s", -1)],
)
def test_out_of_range_values_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        ServerSettings.model_validate({field: value})
