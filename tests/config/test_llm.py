"""LLM settings: model groups, deployments, failover and fallbacks, with errors at their paths."""

from __future__ import annotations

import pytest

from seawall.config import parse_config
from seawall.errors import ConfigError

GROUP = """
llm:
  models:
    - name: chat-default
      deployments:
        - {name: primary, base_url: "http://127.0.0.1:9001/v1", model: gpt-4o-mini}
        - {name: secondary, provider: anthropic, base_url: "https://api.anthropic.com",
           model: claude-3-5-haiku, api_key: "sk-ant-0123456789", tier: 1, weight: 2}
      fallbacks: [%s]
    - name: chat-small
      deployments:
        - {name: only, base_url: "http://127.0.0.1:9002", model: small}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    return info.value.problems


def test_a_group_with_defaults() -> None:
    config = parse_config(GROUP % "chat-small", environ={})
    assert config.llm is not None
    group = config.llm.models[0]
    primary, secondary = group.deployments
    assert (primary.provider, primary.tier, primary.weight) == ("openai", 0, 1.0)
    assert (secondary.provider, secondary.tier, secondary.weight) == ("anthropic", 1, 2.0)
    assert primary.timeouts.first_token_ms == 30_000.0
    assert group.failover.allowed_fails == 1
    assert group.failover.cooldown_s == 30.0
    assert group.fallbacks == ["chat-small"]


def test_the_api_key_never_shows_in_repr() -> None:
    config = parse_config(GROUP % "", environ={})
    assert config.llm is not None
    assert "sk-ant-0123456789" not in repr(config.llm.models[0].deployments[1])


def test_an_unknown_fallback_group_is_refused() -> None:
    (problem,) = problems(GROUP % "chat-huge")
    assert problem == "llm: model 'chat-default': fallback to unknown model group(s) chat-huge"


def test_a_group_falling_back_to_itself_is_refused() -> None:
    (problem,) = problems(GROUP % "chat-default")
    assert problem == "llm.models[0]: model 'chat-default' falls back to itself"


def test_deployment_names_are_unique_within_a_group() -> None:
    text = """
llm:
  models:
    - name: m
      deployments:
        - {name: a, base_url: "http://x", model: m}
        - {name: a, base_url: "http://y", model: m}
"""
    (problem,) = problems(text)
    assert problem == "llm.models[0]: deployment names must be unique: a"


def test_group_names_are_unique() -> None:
    text = """
llm:
  models:
    - {name: m, deployments: [{name: a, base_url: "http://x", model: m}]}
    - {name: m, deployments: [{name: a, base_url: "http://y", model: m}]}
"""
    (problem,) = problems(text)
    assert problem == "llm: model group names must be unique: m"


@pytest.mark.parametrize(
    ("deployment", "where"),
    [
        ('{name: a, base_url: "ftp://x", model: m}', "llm.models[0].deployments[0].base_url"),
        ('{name: a, base_url: "http://x", model: ""}', "llm.models[0].deployments[0].model"),
        (
            '{name: a, base_url: "http://x", model: m, tier: -1}',
            "llm.models[0].deployments[0].tier",
        ),
        (
            '{name: a, base_url: "http://x", model: m, weight: 0}',
            "llm.models[0].deployments[0].weight",
        ),
        (
            '{name: a, base_url: "http://x", model: m, provider: azure}',
            "llm.models[0].deployments[0].provider",
        ),
        (
            '{name: a, base_url: "http://x", model: m, colour: red}',
            "llm.models[0].deployments[0].colour",
        ),
    ],
)
def test_bad_deployment_fields_name_their_path(deployment: str, where: str) -> None:
    text = f"llm:\n  models:\n    - {{name: m, deployments: [{deployment}]}}\n"
    found = problems(text)
    assert any(p.startswith(f"{where}: ") for p in found), found


def test_group_level_policies_do_not_belong_on_a_deployment() -> None:
    text = """
llm:
  models:
    - name: m
      deployments:
        - name: a
          base_url: "http://x"
          model: m
          policies: {ratelimit: {rate_per_s: 1, burst: 1}}
"""
    (problem,) = problems(text)
    assert problem.startswith("llm.models[0].deployments[0].policies: ratelimit cannot be set")


def test_a_cache_belongs_on_the_group_not_on_a_deployment() -> None:
    text = """
llm:
  models:
    - name: m
      policies: {cache: {ttl_s: 60, llm: always}}
      deployments:
        - name: a
          base_url: "http://x"
          model: m
          policies: {cache: %s}
"""
    (problem,) = problems(text % "{ttl_s: 60}")
    assert problem.startswith("llm.models[0].deployments[0].policies: cache cannot be set")
    config = parse_config(text % "null", environ={})
    assert config.llm is not None
    cache = config.llm.models[0].policies.cache
    assert cache is not None
    assert (cache.ttl_s, cache.llm) == (60, "always")


def test_a_group_needs_a_deployment() -> None:
    found = problems("llm:\n  models:\n    - {name: m, deployments: []}\n")
    assert found[0].startswith("llm.models[0].deployments: ")


USAGE = """
llm:
  budgets: %s
  models:
    - name: m
      deployments: [{name: a, base_url: "http://x", model: m}]
      tokens_per_minute: %s
"""


def test_budgets_and_token_limits_parse() -> None:
    text = USAGE % (
        "{period: day, default_usd: 5, keys: {team-a: 100}}",
        "{per_key: 10000, per_model: 50000, keys: {team-a: 40000}}",
    )
    config = parse_config(text, environ={})
    assert config.llm is not None
    assert config.llm.budgets is not None
    assert (config.llm.budgets.period, config.llm.budgets.default_usd) == ("day", 5.0)
    assert config.llm.budgets.keys == {"team-a": 100.0}
    tpm = config.llm.models[0].tokens_per_minute
    assert tpm is not None
    assert (tpm.per_key, tpm.per_model, tpm.keys) == (10_000, 50_000, {"team-a": 40_000})


def test_a_budget_is_monthly_and_unlimited_by_default() -> None:
    config = parse_config(USAGE % ("{}", "{per_key: 1}"), environ={})
    assert config.llm is not None
    assert config.llm.budgets is not None
    assert (config.llm.budgets.period, config.llm.budgets.default_usd) == ("month", None)


@pytest.mark.parametrize(
    ("budgets", "tpm", "where"),
    [
        ("{period: week}", "{per_key: 1}", "llm.budgets.period"),
        ("{default_usd: -1}", "{per_key: 1}", "llm.budgets.default_usd"),
        ("{keys: {a: -0.5}}", "{per_key: 1}", "llm.budgets.keys.a"),
        ("{keys: {a: .nan}}", "{per_key: 1}", "llm.budgets.keys.a"),
        ("{}", "{keys: {a: 0}}", "llm.models[0].tokens_per_minute.keys.a"),
        ("{}", "{per_key: 0}", "llm.models[0].tokens_per_minute.per_key"),
        ("{}", "{}", "llm.models[0].tokens_per_minute"),
        ("{}", "{per_minute: 5}", "llm.models[0].tokens_per_minute.per_minute"),
    ],
)
def test_bad_usage_limits_name_their_path(budgets: str, tpm: str, where: str) -> None:
    found = problems(USAGE % (budgets, tpm))
    assert any(p.startswith(f"{where}: ") for p in found), found


@pytest.mark.parametrize(
    ("group", "deployment", "where"),
    [
        ("{}", "{batching: {}}", "llm.models[0].deployments[0].policies"),
        ("{batching: {max_batch_size: 8}}", "{}", "llm.models[0].policies"),
    ],
)
def test_batching_is_refused_on_llm_groups_and_deployments(
    group: str, deployment: str, where: str
) -> None:
    text = f"""
llm:
  models:
    - name: m
      policies: {group}
      deployments:
        - {{name: a, base_url: "http://x", model: m, policies: {deployment}}}
"""
    assert problems(text) == [
        f"{where}: batching applies to tensor models (`models:`), not to LLM calls"
    ]
