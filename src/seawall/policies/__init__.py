"""Policies: one module per policy, each with `XOptions`, `XPolicy` and `XEvent` classes."""

from seawall.policies.validation import InputRejected, ValidationOptions, ValidationPolicy

__all__ = ["InputRejected", "ValidationOptions", "ValidationPolicy"]
