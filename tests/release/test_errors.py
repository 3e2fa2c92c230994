"""The release controller's errors sit in seawall's error tree with codes of their own."""

from __future__ import annotations

from seawall.errors import ConflictError, RejectedError, SeawallError
from seawall.release.errors import MetricUnavailableError, RolloutStateError


def test_a_refused_command_is_a_conflict() -> None:
    error = RolloutStateError("resume: the rollout of iris 2 is running, not paused")
    assert isinstance(error, ConflictError)
    assert isinstance(error, RejectedError)
    assert error.code == "rollout_state"
    assert str(error) == "resume: the rollout of iris 2 is running, not paused"


def test_an_unavailable_metric_is_no_rejection() -> None:
    error = MetricUnavailableError("error_rate: no data")
    assert isinstance(error, SeawallError)
    assert not isinstance(error, RejectedError)
    assert error.code == "metric_unavailable"
