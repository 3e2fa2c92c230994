"""Errors of the release controller, under `SeawallError`.

```
SeawallError
├── RejectedError
│   └── ConflictError
│       └── RolloutStateError     a command the rollout's status does not allow (resume a
│                                 rollout that is not paused, abort a promoted one)
└── MetricUnavailableError        a guardrail's metric could not be read: no data, stale,
                                  not a number, the source down or too slow
```

A guardrail that fails is not an error: it is a verdict, recorded in the analysis run.
"""

from __future__ import annotations

from seawall.errors import ConflictError, SeawallError

__all__ = ["MetricUnavailableError", "RolloutStateError"]


class MetricUnavailableError(SeawallError):
    """A metric has no usable value now; the analysis counts the run as an error."""

    code = "metric_unavailable"


class RolloutStateError(ConflictError):
    """The rollout's status does not allow the command; the message says which status it is in."""

    code = "rollout_state"
