"""Router: picks the version (variant) that serves each call of a model, and mirrors to a shadow.

The traffic state is a `TrafficSplit` (stable, canary, canary weight) that a rollout controller
changes while calls flow. Each call goes, in order of precedence:

1. to the version the client named in the override header (`x-seawall-variant: stable`,
   `canary`, or a served version string); any other value is refused (400) with the values
   allowed;
2. else to the canary if the call's bucket in [0, 10000) is below weight x 100. With a
   `sticky_header` the bucket is a hash of the model and the header's value (a user id), so a
   user keeps their variant and raising the weight only adds users to the canary (buckets are
   monotone); without the header the bucket is drawn from the injected `random.Random`;
3. else to stable.

The router is the terminal dispatcher of an unversioned model: it calls the chosen version's
handler (that version's own chain: bulkhead, breaker, retry... then its backend) and never
`call_next`. The request is re-addressed to the chosen version. The response says which role
served it (`x-seawall-variant: stable | canary | shadow`, or the version for any other) and
the call's outcome and latency count in that version's `VariantStats` (read by the rollout
controller through `stats(version)`). With a `ShadowMirror`, the primary's successful calls
are sampled and copied to the shadow version in the background (see `seawall.policies.shadow`).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import InvalidInputError, ModelNotReadyError
from seawall.pipeline import EventSink, Handler, discard
from seawall.policies.shadow import ShadowMirror
from seawall.policies.variants import (
    CANARY,
    DEFAULT_LATENCY_SAMPLES,
    DEFAULT_WINDOW_S,
    PREDICTIONS_PER_CALL,
    SHADOW,
    STABLE,
    SplitState,
    TrafficSplit,
    VariantStats,
)
from seawall.types import InferenceRequest, InferenceResponse

__all__ = ["RouterPolicy", "RoutingOptions", "VariantOverridden"]

#: Response header naming the role (or version) that served the call.
VARIANT_HEADER = "x-seawall-variant"
SERVED_BY_HEADER = "x-seawall-served-by"
DEFAULT_OVERRIDE_HEADER = "x-seawall-variant"
DEFAULT_STICKY_HEADER: str | None = None
#: Buckets calls are hashed into: weights resolve to 0.01 percent.
BUCKETS = 10_000

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")  # an HTTP token, lower case
_ECHO_LIMIT = 64  # characters of a refused header value repeated in the error


@dataclass(frozen=True, slots=True)
class RoutingOptions:
    """Which headers steer routing, and how long a window the per-version statistics span."""

    #: Request header whose value pins a caller to a variant (`x-user-id`); None: per call.
    sticky_header: str | None = DEFAULT_STICKY_HEADER
    #: Request header naming the variant to use (`stable`, `canary`, a version); None: off.
    override_header: str | None = DEFAULT_OVERRIDE_HEADER
    #: Seconds of history each version's `VariantStats` covers (whole seconds).
    window_s: int = DEFAULT_WINDOW_S
    #: Latencies each `VariantStats` keeps at most (the most recent) for its quantiles.
    latency_samples: int = DEFAULT_LATENCY_SAMPLES

    def __post_init__(self) -> None:
        for name in ("sticky_header", "override_header"):
            value = getattr(self, name)
            if value is None:
                continue
            lowered = value.strip().lower() if isinstance(value, str) else value
            if not isinstance(lowered, str) or not _HEADER_NAME.match(lowered):
                raise ValueError(f"{name}: {value!r} is not an HTTP header name")
            object.__setattr__(self, name, lowered)  # request headers arrive lower-cased
        if self.sticky_header is not None and self.sticky_header == self.override_header:
            raise ValueError(
                f"sticky_header: {self.sticky_header!r} is also the override header; "
                "a header cannot both pin a user and name a variant"
            )
        VariantStats(self.window_s, self.latency_samples)  # validates both, naming the field


@dataclass(frozen=True, slots=True)
class VariantOverridden:
    """A call named its variant in the override header and was sent there."""

    target: str
    version: str
    #: The header's value (`stable`, `canary` or a version).
    value: str


class RouterPolicy:
    """Sends each call to the stable or canary version per the split; see the module doc."""

    name = "router"

    def __init__(
        self,
        variants: Mapping[str, Handler[InferenceRequest, InferenceResponse]],
        split: TrafficSplit,
        options: RoutingOptions | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_event: EventSink = discard,
        target: str = "",
        shadow: ShadowMirror | None = None,
    ) -> None:
        """`variants`: each served version's handler; `target`: the model's name."""
        _check_variants(variants, split, shadow)
        self.options = options or RoutingOptions()
        self.split = split
        self.shadow = shadow
        self._variants = dict(variants)
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._on_event = on_event
        self._target = target
        self._salt = f"{target}\0".encode()
        window_s, samples = self.options.window_s, self.options.latency_samples
        self._stats = {v: VariantStats(window_s, samples) for v in self._variants}

    def stats(self, version: str) -> VariantStats:
        """The calls `version` served; KeyError if it is not one of the variants."""
        try:
            return self._stats[version]
        except KeyError:
            known = ", ".join(sorted(self._stats))
            raise KeyError(f"version {version!r} is not routed here (variants: {known})") from None

    def choose(self, ctx: CallContext) -> str:
        """The version that serves this call (override, else the split)."""
        return self._choose(ctx, self.split.snapshot())

    async def __call__(
        self,
        request: InferenceRequest,
        ctx: CallContext,
        call_next: Handler[InferenceRequest, InferenceResponse],
    ) -> InferenceResponse:
        # call_next (the unversioned model's own backend) is never called: the variants are.
        state = self.split.snapshot()  # one view for the choice and the role
        version = self._choose(ctx, state)
        handler = self._variants.get(version)
        if handler is None:  # only if the split names a version without a handler
            raise ModelNotReadyError(f"{self._target}: version {version!r} has no handler here")
        role = self._role(version, state)
        ctx.response_headers[VARIANT_HEADER] = role
        ctx.annotations["variant"] = role
        ctx.annotations["version"] = version
        routed = request if request.version == version else _addressed(request, version)
        shadow = self.shadow
        mirrored = shadow is not None and shadow.version != version
        copied = shadow.sample(routed) if shadow is not None and mirrored else None
        stats = self._stats[version]
        start = self._clock.monotonic()
        try:
            response = await handler(routed, ctx)
        except Exception as exc:
            now = self._clock.monotonic()
            stats.record(now, now - start, error=exc)
            raise
        now = self._clock.monotonic()
        stats.record(now, now - start)
        if response.outputs:  # what it predicted, for prediction shift against stable
            data = response.outputs[0].data
            stats.record_predictions(now, data.reshape(-1)[:PREDICTIONS_PER_CALL].tolist())
        # setdefault: an inner stage (the variant's own fallback) knows better who answered.
        ctx.response_headers.setdefault(SERVED_BY_HEADER, f"{request.model}:{version}")
        if shadow is not None and copied is not None:
            shadow.start(copied, response, ctx, now - start)  # returns at once; runs later
        return response

    async def close(self) -> None:
        """Cancel the shadow calls still running."""
        if self.shadow is not None:
            await self.shadow.close()

    def _choose(self, ctx: CallContext, state: SplitState) -> str:
        header = self.options.override_header
        if header is not None and (value := ctx.headers.get(header, "").strip()):
            version = self._overridden(header, value, state)
            self._on_event(VariantOverridden(self._target, version, value))
            return version
        if state.canary is None or state.canary_weight <= 0:
            return state.stable
        return state.canary if self._bucket(ctx) < state.canary_weight * 100 else state.stable

    def _bucket(self, ctx: CallContext) -> float:
        header = self.options.sticky_header
        key = ctx.headers.get(header) if header is not None else None
        if not key:
            return self._rng.random() * BUCKETS
        digest = hashlib.blake2b(self._salt + key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % BUCKETS

    def _overridden(self, header: str, value: str, state: SplitState) -> str:
        if value == STABLE:
            return state.stable
        if value == CANARY and state.canary is not None:
            return state.canary
        if value in self._variants:
            return value
        allowed = [STABLE] + ([CANARY] if state.canary is not None else [])
        shown = value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "..."
        raise InvalidInputError(
            header,
            f"must be {', '.join(allowed + sorted(self._variants))}; got {shown!r}",
        )

    def _role(self, version: str, state: SplitState) -> str:
        role = state.role_of(version)
        if role is not None:
            return role
        return SHADOW if self.shadow is not None and version == self.shadow.version else version

    def __repr__(self) -> str:
        shadow = f", shadow={self.shadow.version!r}" if self.shadow is not None else ""
        return f"RouterPolicy({self._target!r}: {self.split!r}{shadow})"


def _addressed(request: InferenceRequest, version: str) -> InferenceRequest:
    """`request` addressed to `version`, sharing its tensors (dataclasses.replace is 6x slower)."""
    return InferenceRequest(
        request.model, request.inputs, version, request.id, request.parameters, request.outputs
    )


def _check_variants(
    variants: Mapping[str, Handler[InferenceRequest, InferenceResponse]],
    split: TrafficSplit,
    shadow: ShadowMirror | None,
) -> None:
    if not variants:
        raise ValueError("variants: a router needs at least one version to send calls to")
    for version in variants:
        if not isinstance(version, str) or not version.strip():
            raise ValueError(f"variants: {version!r} is not a version name")
    state = split.snapshot()
    named = (("split.stable", state.stable), ("split.canary", state.canary))
    for field, name in named:
        if name is not None and name not in variants:
            raise ValueError(f"{field}: {name!r} has no handler in variants")
    if split.versions is not None and (missing := sorted(split.versions - set(variants))):
        raise ValueError(f"split.versions: {', '.join(missing)} have no handler in variants")
    if shadow is not None and shadow.version is not None and shadow.version == state.stable:
        raise ValueError(f"shadow.version: {shadow.version!r} is the stable version")
