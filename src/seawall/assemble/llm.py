"""LLM model groups from configuration: deployments, their pipelines, failover and fallbacks.

Each group's pipeline is `auth → rate limit → admission → model group`, and the model group
tries its deployments, each behind its own `bulkhead → circuit breaker → retry → timeout`:

    chat-default: auth → ratelimit → admission → ModelGroup
                    ├─ primary (tier 0):   circuit_breaker → timeout → openai:https://...
                    └─ secondary (tier 1): circuit_breaker → timeout → openai:https://...
"""

from __future__ import annotations

from typing import Any

from seawall.assemble import options as build
from seawall.assemble.parts import Assembly, core_policies, front_policies
from seawall.backends.http import HttpOptions, HttpUpstream
from seawall.backends.llm import LlmBackend
from seawall.backends.openai import AnthropicBackend, OpenAiBackend
from seawall.clock import Clock
from seawall.config import SeawallConfig
from seawall.config.llm import DeploymentSettings, LlmModelSettings
from seawall.pipeline import EventSink, Handler, Pipeline
from seawall.policies.failover import Deployment, FailoverOptions, ModelGroup
from seawall.types import LlmRequest, LlmResponse

__all__ = ["assemble_llm", "build_llm_backend"]

LlmHandler = Handler[LlmRequest, LlmResponse]


def assemble_llm(
    config: SeawallConfig, assembly: Assembly, *, clock: Clock, on_event: EventSink
) -> None:
    """Add every configured model group to `assembly.llm` (and its deployments' backends)."""
    if config.llm is None:
        return
    assert assembly.shared is not None, "assemble the models first: they build the shared parts"
    groups: dict[str, ModelGroup[LlmRequest, LlmResponse]] = {}
    for i, settings in enumerate(config.llm.models):
        groups[settings.name] = _group(i, settings, assembly, clock, on_event)
    for settings in config.llm.models:
        group = groups[settings.name]
        # Fallbacks call the other groups' deployments, never their fallbacks: no loops.
        group.fallbacks = tuple((n, groups[n].without_fallbacks) for n in settings.fallbacks)
        front = front_policies(
            settings.name, settings.policies, config, assembly.shared, clock, on_event
        )
        assembly.llm[settings.name] = Pipeline(front, group, name=settings.name)


def _group(
    index: int,
    settings: LlmModelSettings,
    assembly: Assembly,
    clock: Clock,
    on_event: EventSink,
) -> ModelGroup[LlmRequest, LlmResponse]:
    deployments: list[Deployment[LlmRequest, LlmResponse]] = []
    for j, spec in enumerate(settings.deployments):
        where = f"llm.models[{index}].deployments[{j}]"
        label = f"{settings.name}/{spec.name}"
        with build.at(where):
            backend = build_llm_backend(spec, label, clock)
        assembly.llm_backends.append(backend)
        core = core_policies(f"{where}.policies", spec.policies, assembly, label, clock, on_event)
        pipeline: LlmHandler = Pipeline(core, backend.call, name=label)
        deployments.append(Deployment(spec.name, pipeline, spec.tier, spec.weight))
    failover = settings.failover
    with build.at(f"llm.models[{index}].failover"):
        options = FailoverOptions(
            allowed_fails=failover.allowed_fails,
            cooldown_s=failover.cooldown_s,
            budget=None if failover.budget is None else build.retry_budget(failover.budget),
        )
        return ModelGroup(
            deployments, options, clock=clock, on_event=on_event, target=settings.name
        )


def build_llm_backend(spec: DeploymentSettings, label: str, clock: Clock) -> LlmBackend:
    """The backend of one deployment, with its own connection pool."""
    timeouts = spec.timeouts
    http = HttpOptions(
        connect_timeout_s=timeouts.connect_ms / 1000.0,
        first_byte_timeout_s=timeouts.first_token_ms / 1000.0,
        idle_read_timeout_s=timeouts.idle_ms / 1000.0,
        total_timeout_s=None if timeouts.total_ms is None else timeouts.total_ms / 1000.0,
        max_connections=spec.max_connections,
        verify_tls=spec.verify_tls,
        headers=dict(spec.headers),
    )
    upstream = HttpUpstream(spec.base_url, http, clock=clock)

    common: dict[str, Any] = {
        "api_key": spec.api_key,
        "first_token_timeout_s": timeouts.first_token_ms / 1000.0,
        "idle_timeout_s": timeouts.idle_ms / 1000.0,
        "clock": clock,
    }
    if spec.provider == "anthropic":
        return AnthropicBackend(upstream, spec.model, name=label, **common)
    return OpenAiBackend(upstream, spec.model, name=label, **common)
