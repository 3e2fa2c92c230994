"""`Assembly` lifecycle and the shared front and core policy chains."""

from __future__ import annotations

import logging

import pytest

from seawall.assemble import Assembly
from seawall.assemble.options import SharedParts
from seawall.assemble.parts import core_policies, front_policies
from seawall.backends import MockBackend, ModelRepository, ServedModel
from seawall.clock import FakeClock
from seawall.config import parse_config
from seawall.config.policies import PolicySettings
from seawall.context import CallContext
from seawall.types import LlmRequest, LlmResponse


class FakeLlm:
    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.loaded = self.closed = False

    async def load(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} misconfigured")
        self.loaded = True

    def ready(self) -> bool:
        return self.loaded

    async def call(self, request: LlmRequest, ctx: CallContext) -> LlmResponse:
        return LlmResponse(model=request.model, body={})

    async def close(self) -> None:
        self.closed = True


async def test_start_loads_models_and_llm_backends_and_survives_a_bad_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = ModelRepository()
    backend = MockBackend("m")
    repository.add(ServedModel("m", "1", backend, backend.infer))
    good, bad = FakeLlm("good"), FakeLlm("bad", fail=True)
    closed: list[str] = []

    async def close_redis() -> None:
        closed.append("redis")

    assembly = Assembly(repository, llm_backends=[bad, good], closers=[close_redis])
    with caplog.at_level(logging.ERROR, logger="seawall.assemble"):
        await assembly.start()
    assert backend.ready()
    assert (good.loaded, bad.loaded) == (True, False)
    assert "LLM deployment failed to load" in caplog.text
    await assembly.aclose()
    assert (good.closed, bad.closed) == (True, True)
    assert closed == ["redis"]


def test_core_policies_follow_the_documented_order_and_register_breakers() -> None:
    settings = PolicySettings.model_validate(
        {
            "timeout": {"timeout_ms": 100},
            "retry": {},
            "hedge": {"delay_ms": 5},
            "circuit_breaker": {},
            "bulkhead": {},
        }
    )
    assembly = Assembly(ModelRepository())
    core = core_policies("x", settings, assembly, "m:1", FakeClock(), lambda e: None)
    assert [p.name for p in core] == ["bulkhead", "circuit_breaker", "retry", "hedge", "timeout"]
    assert set(assembly.breakers) == set(assembly.bulkheads) == {"m:1"}


def test_without_policies_only_the_deadline_remains() -> None:
    core = core_policies(
        "x", PolicySettings(), Assembly(ModelRepository()), "m:1", FakeClock(), print
    )
    assert [p.name for p in core] == ["timeout"]


def test_front_policies_are_auth_ratelimit_admission() -> None:
    config = parse_config(
        """
auth: {keys: [{name: app, key: "app-secret-0123456789"}]}
admission: {}
ratelimit: {per_key: {rate_per_s: 1, burst: 1}}
""",
        environ={},
    )
    shared = SharedParts.from_config(config, FakeClock(), print)
    front = front_policies("m:1", PolicySettings(), config, shared, FakeClock(), print)
    assert [p.name for p in front] == ["auth", "ratelimit", "admission"]
    assert front[2] is shared.admission
