"""A rollout plan as a JSON document (the YAML shape of `seawall.config.release`), and back.

The database keeps each rollout's plan with it, so a restarted controller walks the same steps
even if the configuration changed meanwhile. `plan_to_json` writes every field (defaults too),
in the shape a plan file has, so the document is also what `parse_plan` reads; `plan_from_json`
rebuilds the identical plan, and a document that is not one is a ValueError naming the path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from seawall.release.plan import (
    DEFAULT_APPROVAL_POLL_S,
    DEFAULT_CONSECUTIVE_ERROR_LIMIT,
    DEFAULT_FAILURE_LIMIT,
    DEFAULT_METRIC_TIMEOUT_S,
    Analysis,
    Guardrail,
    Inconclusive,
    MetricRef,
    Pause,
    RolloutPlan,
    SetWeight,
    Step,
)

__all__ = ["plan_from_json", "plan_to_json"]

_PLAN_KEYS = frozenset({"model", "stable_version", "canary_version", "steps", "approval_poll_s"})
_STEP_KINDS = ("set_weight", "pause", "analysis")
_PAUSE_KEYS = frozenset({"duration_s", "until_approved"})
_ANALYSIS_KEYS = frozenset(
    {
        "interval_s",
        "count",
        "failure_limit",
        "consecutive_error_limit",
        "inconclusive",
        "metric_timeout_s",
        "guardrails",
    }
)
_GUARDRAIL_KEYS = frozenset({"name", "metric", "max", "min", "relative_to_stable"})
_METRIC_KEYS = frozenset({"kind", "name", "query", "function", "pushed"})


def plan_to_json(plan: RolloutPlan) -> dict[str, Any]:
    """`plan` in plain JSON types, shaped like a plan file."""
    return {
        "model": plan.model,
        "stable_version": plan.stable_version,
        "canary_version": plan.canary_version,
        "approval_poll_s": plan.approval_poll_s,
        "steps": [_step_json(step) for step in plan.steps],
    }


def plan_from_json(data: object) -> RolloutPlan:
    """The plan `plan_to_json` wrote; ValueError naming the path of what is wrong."""
    with _within("plan"):
        _known("", data, _PLAN_KEYS)
        assert isinstance(data, Mapping)  # _known checked
        steps = data.get("steps")
        if not isinstance(steps, list):
            raise ValueError(f"steps: expected a list, got {type(steps).__name__}")
        parsed = tuple(_step(f"steps[{i}]", step) for i, step in enumerate(steps))
        return RolloutPlan(
            _text("model", data.get("model")),
            _text("stable_version", data.get("stable_version")),
            _text("canary_version", data.get("canary_version")),
            parsed,
            _number("approval_poll_s", data.get("approval_poll_s", DEFAULT_APPROVAL_POLL_S)),
        )


def _step_json(step: Step) -> dict[str, Any]:
    if isinstance(step, SetWeight):
        return {"set_weight": step.percent}
    if isinstance(step, Pause):
        if step.until_approved:
            return {"pause": {"until_approved": True}}
        return {"pause": {"duration_s": step.duration_s}}
    return {
        "analysis": {
            "interval_s": step.interval_s,
            "count": step.count,
            "failure_limit": step.failure_limit,
            "consecutive_error_limit": step.consecutive_error_limit,
            "inconclusive": step.inconclusive.value,
            "metric_timeout_s": step.metric_timeout_s,
            "guardrails": [_guardrail_json(g) for g in step.guardrails],
        }
    }


def _guardrail_json(guardrail: Guardrail) -> dict[str, Any]:
    metric = guardrail.metric
    ref: dict[str, Any] = {"kind": metric.kind.value, "name": metric.name}
    if metric.query is not None:
        ref["query"] = metric.query
    if metric.function is not None:
        ref["function"] = metric.function
    if metric.pushed:
        ref["pushed"] = True
    return {
        "name": guardrail.name,
        "metric": ref,
        "max": guardrail.max,
        "min": guardrail.min,
        "relative_to_stable": guardrail.relative_to_stable,
    }


def _step(path: str, data: object) -> Step:
    if not isinstance(data, Mapping) or len(data) != 1 or next(iter(data)) not in _STEP_KINDS:
        raise ValueError(f"{path}: expected one of {', '.join(_STEP_KINDS)}, got {data!r}")
    kind, body = next(iter(data.items()))
    with _within(path):
        if kind == "set_weight":
            try:
                return SetWeight(_number("set_weight", body))
            except ValueError as exc:  # the step's own field is `percent`; the document's is not
                raise ValueError(str(exc).replace("percent:", "set_weight:", 1)) from None
        _known(kind, body, _PAUSE_KEYS if kind == "pause" else _ANALYSIS_KEYS)
        if kind == "pause":
            with _within("pause"):
                duration = _optional("duration_s", body.get("duration_s"))
                return Pause(duration, body.get("until_approved") is True)
        with _within("analysis"):
            return _analysis(body)


def _analysis(body: Mapping[str, Any]) -> Analysis:
    guardrails = body.get("guardrails")
    if not isinstance(guardrails, list):
        raise ValueError(f"guardrails: expected a list, got {type(guardrails).__name__}")
    parsed = []
    for i, guardrail in enumerate(guardrails):
        with _within(f"guardrails[{i}]"):
            parsed.append(_guardrail(guardrail))
    inconclusive = body.get("inconclusive", Inconclusive.PAUSE.value)
    if inconclusive not in {i.value for i in Inconclusive}:
        raise ValueError(f"inconclusive: expected pause or fail, got {inconclusive!r}")
    return Analysis(
        interval_s=_number("interval_s", body.get("interval_s")),
        count=_count("count", body.get("count")),
        guardrails=tuple(parsed),
        failure_limit=_count("failure_limit", body.get("failure_limit", DEFAULT_FAILURE_LIMIT)),
        consecutive_error_limit=_count(
            "consecutive_error_limit",
            body.get("consecutive_error_limit", DEFAULT_CONSECUTIVE_ERROR_LIMIT),
        ),
        inconclusive=Inconclusive(inconclusive),
        metric_timeout_s=_number(
            "metric_timeout_s", body.get("metric_timeout_s", DEFAULT_METRIC_TIMEOUT_S)
        ),
    )


def _guardrail(data: object) -> Guardrail:
    _known("", data, _GUARDRAIL_KEYS)
    assert isinstance(data, Mapping)  # _known checked
    metric = data.get("metric")
    _known("metric", metric, _METRIC_KEYS)
    assert isinstance(metric, Mapping)
    with _within("metric"):
        ref = MetricRef(
            metric.get("kind"),  # type: ignore[arg-type]  # MetricRef checks it, naming `kind`
            _text("name", metric.get("name", "")),
            metric.get("query"),
            metric.get("function"),
            metric.get("pushed") is True,
        )
    return Guardrail(
        _text("name", data.get("name", "")),
        ref,
        _optional("max", data.get("max")),
        _optional("min", data.get("min")),
        data.get("relative_to_stable") is True,
    )


@contextmanager
def _within(path: str) -> Iterator[None]:
    """Prefix a ValueError raised inside (`field: reason`) with the path it is under."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        raise ValueError(f"{path}{text}" if text.startswith(":") else f"{path}.{text}") from None


def _known(path: str, data: object, keys: frozenset[str]) -> None:
    """Refuse a non-object or unknown keys; `path` "" means the object the caller is within."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected an object, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)}")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _optional(name: str, value: object) -> float | None:
    return None if value is None else _number(name, value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value
