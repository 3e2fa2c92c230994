"""LLM settings: model groups served on `/v1/...`, each a list of provider deployments."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from seawall.config.base import NAME_PATTERN, Settings
from seawall.config.policies import PolicySettings, RetryBudgetSettings

__all__ = [
    "BudgetSettings",
    "DeploymentSettings",
    "FailoverSettings",
    "LlmModelSettings",
    "LlmSettings",
    "LlmTimeoutSettings",
    "PriceSettings",
    "TokenLimitSettings",
]


class LlmTimeoutSettings(Settings):
    """How long a deployment may take; the request's deadline applies too."""

    connect_ms: float = Field(2000.0, gt=0)
    """TCP and TLS connection set-up."""
    first_token_ms: float = Field(30_000.0, gt=0)
    """From sending the request to the first token (streamed) or the response headers."""
    idle_ms: float = Field(30_000.0, gt=0)
    """Longest silence between two chunks of a stream (or of a response body)."""
    total_ms: float | None = Field(None, gt=0)
    """The whole call (null: only the deadline)."""


class PriceSettings(Settings):
    """What a deployment costs, in US dollars per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    """Price of a million prompt tokens."""
    output_per_mtok: float = Field(0.0, ge=0)
    """Price of a million completion tokens."""


class DeploymentSettings(Settings):
    """One provider endpoint serving the group's model."""

    name: str = Field(pattern=NAME_PATTERN)
    """Name in `x-seawall-served-by`, logs and metrics."""
    provider: Literal["openai", "anthropic"] = "openai"
    """`openai`: any OpenAI-compatible server (OpenAI, vLLM, LiteLLM...); `anthropic`: the
    Messages API, translated to and from the OpenAI shape."""
    base_url: str = Field(pattern=r"^https?://")
    """The provider's base URL, e.g. `https://api.openai.com/v1` or `http://vllm:8000`."""
    model: str = Field(min_length=1)
    """The provider's model name."""
    api_key: str | None = Field(None, repr=False)
    """Key sent to the provider (e.g. `${OPENAI_API_KEY}`); never logged."""
    tier: int = Field(0, ge=0)
    """Preference: tier 0 takes traffic first, higher tiers only when lower ones fail."""
    weight: float = Field(1.0, gt=0)
    """Share of its tier's traffic."""
    timeouts: LlmTimeoutSettings = LlmTimeoutSettings()
    """Connect, first-token, idle and total timeouts."""
    max_connections: int = Field(100, ge=1)
    """Connections open at once to this provider."""
    verify_tls: bool = True
    """Verify the provider's TLS certificate."""
    headers: dict[str, str] = {}
    """Extra headers sent with every request."""
    price: PriceSettings = PriceSettings()
    """Cost per token, for spend and budgets."""
    policies: PolicySettings = PolicySettings()
    """Policies of this deployment alone: `circuit_breaker`, `retry`, `timeout`, `bulkhead`."""

    @field_validator("policies")
    @classmethod
    def _deployment_policies(cls, policies: PolicySettings) -> PolicySettings:
        misplaced = [k for k in ("ratelimit", "fallback", "hedge", "cache") if getattr(policies, k)]
        if misplaced:
            raise ValueError(
                f"{', '.join(misplaced)} cannot be set per deployment (set it on the model group)"
            )
        return _no_batching(policies)


def _no_batching(policies: PolicySettings) -> PolicySettings:
    # Chat calls have no rows to stack: batching prompts is the provider's (vLLM's) business.
    if policies.batching is not None:
        raise ValueError("batching applies to tensor models (`models:`), not to LLM calls")
    return policies


class FailoverSettings(Settings):
    """When a deployment is left for the next one, and for how long."""

    allowed_fails: int = Field(1, ge=1)
    """Failures in a row before a deployment cools down (a 429 cools it down at once)."""
    cooldown_s: float = Field(30.0, ge=0)
    """How long a cooling deployment is skipped (at least its Retry-After)."""
    budget: RetryBudgetSettings | None = RetryBudgetSettings(ratio=1.0, min_per_s=10.0)
    """Failovers allowed as a share of calls (null: no limit)."""


class TokenLimitSettings(Settings):
    """Tokens per minute (prompt and completion) a group may use."""

    per_key: int | None = Field(None, ge=1)
    """For each API key (callers without a key share one limit)."""
    per_model: int | None = Field(None, ge=1)
    """For the whole group, all callers together."""
    keys: dict[str, Annotated[int, Field(ge=1)]] = {}
    """Limits for named keys, replacing `per_key` for them."""

    @model_validator(mode="after")
    def _some_limit(self) -> TokenLimitSettings:
        if self.per_key is None and self.per_model is None and not self.keys:
            raise ValueError("set per_key, per_model or keys")
        return self


class BudgetSettings(Settings):
    """Dollars each API key may spend on LLM calls per period (priced by `price`)."""

    period: Literal["day", "month"] = "month"
    """The budget starts again each UTC day or calendar month."""
    default_usd: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Budget of every key not in `keys` (null: unlimited; spend is still recorded)."""
    keys: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = {}
    """Budgets of named keys."""


class LlmModelSettings(Settings):
    """A model name clients call (`"model": "<name>"`), served by its deployments."""

    name: str = Field(pattern=NAME_PATTERN)
    """The name in requests and in `/v1/models`."""
    deployments: list[DeploymentSettings] = Field(min_length=1)
    """Where it runs, by tier and weight."""
    failover: FailoverSettings = FailoverSettings()
    """Failover across deployments."""
    fallbacks: list[str] = []
    """Other model groups tried, in order, when every deployment fails."""
    policies: PolicySettings = PolicySettings()
    """Policies in front of the whole group; `ratelimit` and `cache` apply here."""
    tokens_per_minute: TokenLimitSettings | None = None
    """Token limits, shared by every replica when `ratelimit.storage` is redis."""

    @field_validator("policies")
    @classmethod
    def _group_policies(cls, policies: PolicySettings) -> PolicySettings:
        return _no_batching(policies)

    @model_validator(mode="after")
    def _unique_deployments(self) -> LlmModelSettings:
        names = [d.name for d in self.deployments]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"deployment names must be unique: {', '.join(duplicated)}")
        if self.name in self.fallbacks:
            raise ValueError(f"model {self.name!r} falls back to itself")
        return self


class LlmSettings(Settings):
    """The LLM gateway: model groups on the OpenAI-compatible API."""

    models: list[LlmModelSettings] = Field(min_length=1)
    """Model groups."""
    budgets: BudgetSettings | None = None
    """Spend budgets per API key, across every group; spend is kept in the database."""

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> LlmSettings:
        names = [m.name for m in self.models]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"model group names must be unique: {', '.join(duplicated)}")
        for model in self.models:
            unknown = [f for f in model.fallbacks if f not in names]
            if unknown:
                raise ValueError(
                    f"model {model.name!r}: fallback to unknown model group(s) {', '.join(unknown)}"
                )
        return self
