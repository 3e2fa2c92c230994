"""LLM model groups from config: deployments with their pipelines, failover, fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.assemble import assemble, open_database
from seawall.backends.openai import AnthropicBackend, OpenAiBackend
from seawall.clock import FakeClock
from seawall.config import parse_config
from seawall.errors import ConfigError
from seawall.policies.budget import BudgetPolicy, Price
from seawall.policies.failover import ModelGroup
from seawall.store import migrate

CONFIG = """
auth: {keys: [{name: app, key: "app-secret-0123456789"}]}
ratelimit: {per_key: {rate_per_s: 10, burst: 10}}
llm:
  models:
    - name: chat-default
      deployments:
        - name: primary
          base_url: "http://127.0.0.1:9001/v1"
          model: gpt-4o-mini
          timeouts: {first_token_ms: 5000, idle_ms: 2000, total_ms: 60000}
          policies: {circuit_breaker: {consecutive_failures: 2}}
        - {name: claude, provider: anthropic, base_url: "https://api.anthropic.com",
           model: claude-3-5-haiku, api_key: "sk-ant-0123456789", tier: 1}
      failover: {allowed_fails: 2, cooldown_s: 10, budget: null}
      fallbacks: [chat-small]
    - name: chat-small
      deployments: [{name: only, base_url: "http://127.0.0.1:9002", model: small}]
"""


def test_groups_are_pipelines_over_model_groups() -> None:
    assembly = assemble(parse_config(CONFIG, environ={}), clock=FakeClock())
    assert set(assembly.llm) == {"chat-default", "chat-small"}
    assert repr(assembly.llm["chat-default"]) == (
        "Pipeline(chat-default: auth → ratelimit → model_group)"
    )


def test_deployments_get_backends_breakers_and_failover_options() -> None:
    assembly = assemble(parse_config(CONFIG, environ={}), clock=FakeClock())
    kinds = {b.name: type(b) for b in assembly.llm_backends}
    assert kinds == {
        "chat-default/primary": OpenAiBackend,
        "chat-default/claude": AnthropicBackend,
        "chat-small/only": OpenAiBackend,
    }
    assert set(assembly.breakers) == {"chat-default/primary"}
    group = assembly.llm["chat-default"].policies  # front policies; the group is the terminal
    assert [p.name for p in group] == ["auth", "ratelimit"]
    terminal = assembly.llm["chat-default"].terminal
    assert isinstance(terminal, ModelGroup)
    assert [(d.name, d.tier) for d in terminal.deployments] == [("primary", 0), ("claude", 1)]
    assert (terminal.options.allowed_fails, terminal.options.cooldown_s) == (2, 10.0)
    assert terminal.options.budget is None
    assert [name for name, _ in terminal.fallbacks] == ["chat-small"]


def test_an_invalid_option_is_reported_at_its_deployment() -> None:
    text = CONFIG.replace("{consecutive_failures: 2}", "{minimum_calls: 500}")
    with pytest.raises(ConfigError, match=r"llm.models\[0\].deployments\[0\].policies"):
        assemble(parse_config(text, environ={}), clock=FakeClock())


def test_no_llm_section_no_groups() -> None:
    assembly = assemble(parse_config("models: []", environ={}))
    assert assembly.llm == {}
    assert assembly.llm_backends == []


USAGE = """
auth: {keys: [{name: app, key: "app-secret-0123456789"}]}
database_url: sqlite:///state/spend.db
llm:
  budgets: {default_usd: 1.0}
  models:
    - name: chat-default
      tokens_per_minute: {per_key: 1000}
      deployments:
        - {name: primary, base_url: "http://127.0.0.1:9001/v1", model: m,
           price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}
"""


def test_token_limits_and_budgets_run_before_the_group(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    config = parse_config(USAGE, environ={}, base_dir=tmp_path)
    assembly = assemble(config, clock=FakeClock())
    assert repr(assembly.llm["chat-default"]) == (
        "Pipeline(chat-default: auth → token_limit → budget → model_group)"
    )
    budget = assembly.llm["chat-default"].policies[-1]
    assert isinstance(budget, BudgetPolicy)
    assert budget.options.prices["chat-default/primary"] == Price(1.0, 2.0)


async def test_the_spend_database_is_migrated_at_start_relative_to_the_config(
    tmp_path: Path,
) -> None:
    (tmp_path / "state").mkdir()
    config = parse_config(USAGE, environ={}, base_dir=tmp_path)
    assembly = assemble(config, clock=FakeClock())
    await assembly.start()
    await assembly.aclose()
    database = open_database(config)
    try:
        assert database.revision() == migrate.head()
        assert database.url == f"sqlite:///{tmp_path / 'state' / 'spend.db'}"
    finally:
        database.close()


def test_without_budgets_no_database_is_opened(tmp_path: Path) -> None:
    text = USAGE.replace("  budgets: {default_usd: 1.0}\n", "").replace(
        "sqlite:///state/spend.db", "sqlite:///nowhere/spend.db"
    )
    assembly = assemble(parse_config(text, environ={}, base_dir=tmp_path), clock=FakeClock())
    assert assembly.starters == []
    assert repr(assembly.llm["chat-default"]).endswith("token_limit → model_group)")


def test_shutdown_waits_for_stream_spend_before_flushing(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    assembly = assemble(parse_config(USAGE, environ={}, base_dir=tmp_path), clock=FakeClock())
    budget = assembly.llm["chat-default"].policies[-1]
    assert isinstance(budget, BudgetPolicy)
    assert assembly.closers[0] == budget.drain
