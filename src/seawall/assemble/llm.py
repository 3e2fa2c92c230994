"""LLM model groups from configuration: deployments, their pipelines, failover and fallbacks.

Each group's pipeline is
`auth → rate limit → cache → token limit → budget → admission → model group` (each as
configured), and the model group tries its deployments, each behind its own
`bulkhead → circuit breaker → retry → timeout`:

    chat-default: auth → ratelimit → admission → ModelGroup
                    ├─ primary (tier 0):   circuit_breaker → timeout → openai:https://...
                    └─ secondary (tier 1): circuit_breaker → timeout → openai:https://...

The cache comes after auth and the rate limit (a hit is still a call the key must be allowed
and counted for) and before token limits, budget and admission: a hit spends no tokens and no
money and takes no slot, so it is neither charged nor queued.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from seawall.assemble import options as build
from seawall.assemble.cache import llm_cache
from seawall.assemble.parts import Assembly, core_policies, front_policies
from seawall.backends.http import HttpOptions, HttpUpstream
from seawall.backends.llm import LlmBackend
from seawall.backends.openai import AnthropicBackend, OpenAiBackend
from seawall.clock import Clock
from seawall.config import SeawallConfig
from seawall.config.llm import DeploymentSettings, LlmModelSettings
from seawall.pipeline import EventSink, Handler, Pipeline
from seawall.policies.budget import BudgetOptions, BudgetPeriod, BudgetPolicy, Price
from seawall.policies.failover import Deployment, FailoverOptions, ModelGroup
from seawall.policies.ratelimit import RateLimitOptions
from seawall.policies.spend import LedgeredSpendStore, RedisSpendStore, SpendStore
from seawall.policies.tokens import TokenLimitPolicy, per_minute
from seawall.types import LlmRequest, LlmResponse

if TYPE_CHECKING:
    from seawall.store import Database, SpendBuffer, SpendLedger

__all__ = ["assemble_llm", "build_llm_backend", "open_database"]

LlmHandler = Handler[LlmRequest, LlmResponse]


def assemble_llm(
    config: SeawallConfig, assembly: Assembly, *, clock: Clock, on_event: EventSink
) -> None:
    """Add every configured model group to `assembly.llm` (and its deployments' backends)."""
    if config.llm is None:
        return
    assert assembly.shared is not None, "assemble the models first: they build the shared parts"
    spend = _spend_store(config, assembly, clock, on_event)
    groups: dict[str, ModelGroup[LlmRequest, LlmResponse]] = {}
    for i, settings in enumerate(config.llm.models):
        groups[settings.name] = _group(i, settings, assembly, clock, on_event)
    for i, settings in enumerate(config.llm.models):
        group = groups[settings.name]
        # Fallbacks call the other groups' deployments, never their fallbacks: no loops.
        group.fallbacks = tuple((n, groups[n].without_fallbacks) for n in settings.fallbacks)
        where = f"llm.models[{i}].policies.cache"
        extra = [
            *llm_cache(where, settings, config, assembly, clock, on_event),
            *_usage_policies(config, settings, assembly, spend, clock, on_event),
        ]
        front = front_policies(
            settings.name,
            settings.policies,
            config,
            assembly.shared,
            clock,
            on_event,
            before_admission=extra,
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


def _usage_policies(
    config: SeawallConfig,
    settings: LlmModelSettings,
    assembly: Assembly,
    spend: SpendStore | None,
    clock: Clock,
    on_event: EventSink,
) -> list[Any]:
    """Token limits, then the budget, of one group."""
    assert config.llm is not None
    assert assembly.shared is not None
    kw: dict[str, Any] = {"clock": clock, "on_event": on_event, "target": settings.name}
    policies: list[Any] = []
    if (tpm := settings.tokens_per_minute) is not None:
        options = RateLimitOptions(
            key_limit=None if tpm.per_key is None else per_minute(tpm.per_key),
            model_limit=None if tpm.per_model is None else per_minute(tpm.per_model),
            key_limits={k: per_minute(v) for k, v in tpm.keys.items()} or None,
            on_storage_error=config.ratelimit.on_storage_error,  # type: ignore[arg-type]
        )
        policies.append(TokenLimitPolicy(options, storage=assembly.shared.storage, **kw))
    if spend is not None and (budgets := config.llm.budgets) is not None:
        prices = {
            f"{group.name}/{d.name}": Price(d.price.input_per_mtok, d.price.output_per_mtok)
            for group in config.llm.models
            for d in group.deployments
        }
        options_b = BudgetOptions(
            keys=budgets.keys,
            default_usd=budgets.default_usd,
            period=BudgetPeriod(budgets.period),
            prices=prices,
        )
        budget = BudgetPolicy(options_b, spend, **kw)
        # At shutdown the records of finished streams go in before the spend buffer flushes.
        assembly.closers.insert(0, budget.drain)
        policies.append(budget)
    return policies


def open_database(config: SeawallConfig) -> Database:
    """The config's `database_url` (an SQLite path relative to the config file's directory),
    else `SEAWALL_DATABASE_URL`, else `./seawall.db`."""
    from seawall.store import Database  # deferred: SQLAlchemy only where a database is used

    if config.database_url:
        return Database(config.database_url, cwd=config.base_dir)
    return Database.from_env()


def _spend_store(
    config: SeawallConfig, assembly: Assembly, clock: Clock, on_event: EventSink
) -> SpendStore | None:
    """Where budgets add up: Redis when limits are shared, else this process; always the DB."""
    assert config.llm is not None
    if config.llm.budgets is None:
        return None
    from seawall.store import SpendBuffer, SpendLedger

    database = open_database(config)
    ledger = SpendLedger(database, clock=clock)
    buffer = SpendBuffer(ledger, clock=clock, on_event=on_event)

    async def start() -> None:
        await asyncio.to_thread(database.upgrade)  # migrations: idempotent, safe in parallel
        await buffer.start()

    assembly.starters.append(start)
    assembly.closers.extend([buffer.aclose, database.aclose])  # flush, then close
    view = _LedgerView(ledger, buffer)
    if config.ratelimit.storage != "redis":
        return LedgeredSpendStore(view)
    client = aioredis.Redis.from_url(
        config.ratelimit.redis_url,
        socket_timeout=config.ratelimit.redis_timeout_ms / 1000.0,
        socket_connect_timeout=config.ratelimit.redis_timeout_ms / 1000.0,
    )
    redis_store = RedisSpendStore(client, view, clock=clock, on_event=on_event)
    assembly.closers.append(redis_store.aclose)
    return redis_store


class _LedgerView:
    """The database's spend as budgets see it: what it holds plus what waits to be written."""

    def __init__(self, ledger: SpendLedger, buffer: SpendBuffer) -> None:
        self._ledger = ledger
        self._buffer = buffer

    async def total_usd(self, principal: str, period: str) -> float:
        written = await self._ledger.total_usd(principal, period)
        return written + self._buffer.pending_usd(principal, period)

    def record(
        self,
        principal: str,
        period: str,
        model: str,
        usd: float,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        self._buffer.add(principal, period, model, usd, prompt_tokens, completion_tokens)


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
