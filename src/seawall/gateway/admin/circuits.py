"""Circuit breakers: read by viewers and deployers, forced open or closed by deployers.

A change of mode is audited (`circuit.mode`, the key's name as actor, `model:version` as
target) when the gateway has a database; the record is written before the change, so a change
the log cannot hold is refused (503) rather than made unrecorded. Without a database
(`database_url` unset) there is no audit log, and changes are not recorded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict

from seawall.assemble import Assembly
from seawall.assemble.control import ControlPlane
from seawall.errors import NotFoundError
from seawall.gateway.admin.access import CONTROL_STATE, check_model_scope, requires
from seawall.gateway.admin.errors import responses
from seawall.policies import ApiKey, CircuitBreakerPolicy, CircuitMode, CircuitState

__all__ = ["CircuitModeChange", "CircuitView", "circuit_routes"]

Reader = Annotated[ApiKey, Depends(requires("viewer", "deployer"))]
Deployer = Annotated[ApiKey, Depends(requires("deployer"))]


class CircuitView(BaseModel):
    """A circuit breaker now."""

    model_config = ConfigDict(extra="forbid")

    target: str
    """The model version it guards, `model:version`."""
    state: CircuitState
    """closed, open or half_open."""
    mode: CircuitMode
    """automatic, forced_open or forced_closed."""
    calls: int
    """Calls in the window."""
    failure_rate: float
    """Failure share of those calls."""
    slow_call_rate: float
    """Slow-call share of those calls."""
    consecutive_failures: int
    """Failures in a row."""
    retry_after_s: float | None
    """Time left open, when open automatically."""


class CircuitModeChange(BaseModel):
    """How a breaker should behave from now on."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["automatic", "forced_open", "forced_closed"]
    """`forced_open` refuses every call, `forced_closed` lets every call through, `automatic`
    resets the breaker and lets it decide again."""


def circuit_routes(app: FastAPI, assembly: Assembly) -> None:
    """`/admin/circuits...` over `assembly`'s breakers."""

    @app.get(
        "/admin/circuits",
        tags=["circuits"],
        response_model=list[CircuitView],
        responses=responses(),
    )
    async def list_circuits(key: Reader) -> list[CircuitView]:
        """Every circuit breaker the key may see (its model scope), and its state."""
        breakers = sorted(assembly.breakers.items())
        return [_view(t, b) for t, b in breakers if key.may_call(t)]

    @app.get(
        "/admin/circuits/{model}/{version}",
        tags=["circuits"],
        response_model=CircuitView,
        responses=responses(404, 422),
    )
    async def get_circuit(model: str, version: str, key: Reader) -> CircuitView:
        """One circuit breaker."""
        check_model_scope(key, model, version)
        target = f"{model}:{version}"
        return _view(target, _breaker(assembly, target, key))

    @app.put(
        "/admin/circuits/{model}/{version}",
        tags=["circuits"],
        response_model=CircuitView,
        responses=responses(404, 422, 503),
    )
    async def set_circuit(
        model: str, version: str, change: CircuitModeChange, key: Deployer, request: Request
    ) -> CircuitView:
        """Force a breaker open or closed, or give it back to automatic control (audited)."""
        check_model_scope(key, model, version)
        target = f"{model}:{version}"
        breaker = _breaker(assembly, target, key)
        control: ControlPlane | None = getattr(request.app.state, CONTROL_STATE)
        if control is not None:
            audit = await control.audit()
            await audit.append(key.name, "circuit.mode", target, {"mode": change.mode})
        if change.mode == "forced_open":
            breaker.force_open()
        elif change.mode == "forced_closed":
            breaker.force_closed()
        else:
            breaker.reset()
        return _view(target, breaker)


def _breaker(assembly: Assembly, target: str, key: ApiKey) -> CircuitBreakerPolicy[Any, Any]:
    breaker = assembly.breakers.get(target)
    if breaker is None:
        # Only the breakers the key may see: a scope also hides the names of other models.
        known = ", ".join(t for t in sorted(assembly.breakers) if key.may_call(t)) or "none"
        raise NotFoundError(f"no circuit breaker for {target!r} (breakers: {known})")
    return breaker


def _view(target: str, breaker: CircuitBreakerPolicy[Any, Any]) -> CircuitView:
    s = breaker.snapshot()
    return CircuitView(
        target=target,
        state=s.state,
        mode=s.mode,
        calls=s.calls,
        failure_rate=s.failure_rate,
        slow_call_rate=s.slow_call_rate,
        consecutive_failures=s.consecutive_failures,
        retry_after_s=s.retry_after_s,
    )
