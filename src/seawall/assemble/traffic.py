"""Traffic routing (`traffic:`), built from config: a router per model name, over its versions.

A routed model's unversioned calls run `auth → rate limit → admission` once (the stable
version's settings), then the router, which picks a version (weighted canary, sticky key,
header override) and calls that version's own chain without its front policies (validation,
cache, fallback, bulkhead ... backend). A shadow version gets sampled copies through its inner
chain (validation inward: no auth, no rate limit, no cache), so mirrored calls never count
against a caller's quota and never fill the cache.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from seawall.assemble.parts import Assembly, front_policies
from seawall.clock import Clock
from seawall.config import SeawallConfig, TrafficSettings
from seawall.pipeline import EventSink, Handler, Pipeline
from seawall.policies.routing import RouterPolicy, RoutingOptions
from seawall.policies.shadow import OutputsMatch, ShadowMirror, ShadowOptions
from seawall.policies.variants import TrafficSplit
from seawall.types import InferenceRequest, InferenceResponse

__all__ = ["assemble_traffic"]

InferenceHandler = Handler[InferenceRequest, InferenceResponse]


def assemble_traffic(
    config: SeawallConfig,
    assembly: Assembly,
    *,
    routed: Mapping[tuple[str, str], InferenceHandler],
    inner: Mapping[tuple[str, str], InferenceHandler],
    clock: Clock,
    on_event: EventSink,
) -> None:
    """Route each `traffic:` model's unversioned calls; `routed` and `inner`: each version's
    chain without its front policies, and its inner chain (for shadow copies)."""
    if assembly.shared is None:  # pragma: no cover - assemble always builds the shared parts
        return
    for name, traffic in config.traffic.items():
        handlers = {v: routed[(name, v)] for v in assembly.repository.versions(name)}
        split = TrafficSplit(
            traffic.stable, traffic.canary, traffic.canary_weight, versions=handlers
        )
        router = RouterPolicy(
            handlers,
            split,
            RoutingOptions(
                sticky_header=traffic.sticky_header,
                override_header=traffic.override_header,
                window_s=traffic.window_s,
            ),
            clock=clock,
            rng=random.Random(),
            on_event=on_event,
            target=name,
            shadow=_shadow(name, traffic, inner, clock, on_event),
        )
        stable = next(m for m in config.models if (m.name, m.version) == (name, traffic.stable))
        policies = config.policies_for(stable)
        front = front_policies(name, policies, config, assembly.shared, clock, on_event)
        terminal = handlers[traffic.stable]  # never called: the router dispatches
        pipeline = Pipeline([*front, router], terminal, name=f"{name} (routed)")
        assembly.repository.route(name, pipeline, _stable_of(split))
        assembly.routers[name] = router
        assembly.closers.append(router.close)


def _shadow(
    name: str,
    traffic: TrafficSettings,
    inner: Mapping[tuple[str, str], InferenceHandler],
    clock: Clock,
    on_event: EventSink,
) -> ShadowMirror | None:
    shadow = traffic.shadow
    if shadow is None:
        return None
    options = ShadowOptions(
        sample_rate=shadow.sample_rate,
        max_concurrency=shadow.max_concurrency,
        timeout_s=shadow.timeout_s,
        compare=OutputsMatch(rtol=shadow.rtol, atol=shadow.atol),
    )
    return ShadowMirror(
        inner[(name, shadow.version)],
        options,
        clock=clock,
        rng=random.Random(),
        on_event=on_event,
        target=name,
        version=shadow.version,
    )


def _stable_of(split: TrafficSplit) -> Callable[[], str]:
    def stable() -> str:
        return split.stable

    return stable
