"""The policy pipeline: the `Policy` protocol and `Pipeline`. Knows no particular policy."""

from seawall.pipeline.events import EventSink, discard
from seawall.pipeline.pipeline import Pipeline
from seawall.pipeline.policy import Handler, Policy

__all__ = ["EventSink", "Handler", "Pipeline", "Policy", "discard"]
