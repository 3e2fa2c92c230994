"""`PolicyTelemetry`: the event sink that turns policy events into metrics and log lines.

Every event counts in `seawall_policy_events_total{target, event}` (the target is a configured
model version, the event a class name: the label set stays bounded). State changes an operator
must see (a breaker opening, an endpoint ejected, a shared limiter falling back to local) are
also logged, with the event's fields.

Each batch (`BatchExecuted`) is also observed in the histograms `seawall_batch_requests` and
`seawall_batch_rows`: how many calls, and rows, one backend call served. Values outside a
model's training profile (`InputOutOfProfile`) count in `seawall_input_out_of_profile_total`
by target, version, feature, rule and action (the features are the model's: bounded).
"""

from __future__ import annotations

import dataclasses
import logging

from prometheus_client import CollectorRegistry, Counter, Histogram

from seawall.policies.batching import BatchExecuted
from seawall.policies.profile import InputOutOfProfile

__all__ = ["LOGGED_EVENTS", "PolicyTelemetry"]

logger = logging.getLogger("seawall.policies")

#: Event class names written to the log as well as counted (warning level).
LOGGED_EVENTS = frozenset(
    {
        "CircuitOpened",
        "CircuitHalfOpened",
        "CircuitClosed",
        "CircuitForced",
        "EndpointEjected",
        "EndpointReturned",
        "EndpointUnhealthy",
        "EndpointHealthy",
        "EndpointLoaded",
        "EndpointLoadFailed",
        "DeploymentCooledDown",
        "GroupFallbackUsed",
        "RetryBudgetExhausted",
        "RateLimitStorageFailed",
        "FallbackExhausted",
    }
)


#: Batch sizes (calls or rows per backend call) worth telling apart.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class PolicyTelemetry:
    """Counts every event by target and kind; logs the state changes in `LOGGED_EVENTS`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.events = Counter(
            "seawall_policy_events",
            "Policy events (retries, rejections, breaker transitions...), by target and event.",
            ["target", "event"],
            registry=registry,
        )
        self.batch_requests = Histogram(
            "seawall_batch_requests",
            "Calls served by one backend call of a batching model, by target.",
            ["target"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            "seawall_batch_rows",
            "Rows in one backend call of a batching model, by target.",
            ["target"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.out_of_profile = Counter(
            "seawall_input_out_of_profile",
            "Input values outside the served version's training profile, by feature and rule.",
            ["target", "version", "feature", "rule", "action"],
            registry=registry,
        )
        self._children: dict[tuple[str, str], Counter] = {}

    def __call__(self, event: object) -> None:
        kind = type(event).__name__
        target = str(getattr(event, "target", ""))
        child = self._children.get((target, kind))
        if child is None:
            child = self._children[(target, kind)] = self.events.labels(target, kind)
        child.inc()
        if isinstance(event, BatchExecuted):
            self.batch_requests.labels(target).observe(event.requests)
            self.batch_rows.labels(target).observe(event.rows)
        elif isinstance(event, InputOutOfProfile):
            self.out_of_profile.labels(
                target, event.version, event.feature, event.rule, event.action
            ).inc(event.count)
        if kind in LOGGED_EVENTS:
            logger.warning(kind, extra={"event": kind, **_loggable(_fields(event))})


def _fields(event: object) -> dict[str, object]:
    # Shallow on purpose: asdict() deep-copies, and an exception in an event may not copy.
    if not dataclasses.is_dataclass(event):
        return {}
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}


def _loggable(fields: dict[str, object]) -> dict[str, object]:
    # LogRecord reserves some attribute names; never let an event field clobber them.
    reserved = {"name", "msg", "args", "message", "module", "filename", "lineno", "levelname"}
    return {(f"event_{k}" if k in reserved else k): _plain(v) for k, v in fields.items()}


def _plain(value: object) -> object:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return value
