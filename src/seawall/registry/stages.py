"""A version's stage, and the transitions allowed between stages.

```
            ┌──────────────► archived ◄──────────────┐
            │                   │                    │
  none ─► staging ─(approvals)─► production ─────────┘
            ▲                   │
            └───────────────────┘  (demote)
```

A new version starts in `none`. It enters `production` only from `staging`, and only with its
model's required approvals (checked by the registry, not here). `archived` is a resting state a
version can leave again only back to `staging`, so an old version is re-approved before it
serves again.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TRANSITIONS", "Stage", "check_transition"]


class Stage(StrEnum):
    """Where a version is in its life."""

    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


#: Stage → the stages it may move to.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.NONE: frozenset({Stage.STAGING, Stage.ARCHIVED}),
    Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED, Stage.NONE}),
    Stage.PRODUCTION: frozenset({Stage.STAGING, Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.STAGING}),
}


def check_transition(current: Stage, target: Stage) -> str | None:
    """None if `current` may move to `target`; else why not, in words for an error message."""
    if target in TRANSITIONS[current]:
        return None
    allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
    if current is target:
        return f"the version is already in {current}"
    return f"{current} → {target} is not allowed (from {current}: {allowed})"
