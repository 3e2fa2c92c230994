"""Every example config in examples/ validates and serves, and every rollout plan there
(`*-plan.yaml`) parses and fits its gateway's config, so the docs cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seawall.assemble import assemble
from seawall.cli.demo import DEMO_CONFIG
from seawall.config import load_config, parse_config
from seawall.config.release import parse_plan
from seawall.gateway import Gateway

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PLANS = sorted(EXAMPLES.glob("*-plan.yaml"))
CONFIGS = sorted(set(EXAMPLES.glob("*.yaml")) - set(PLANS))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
async def test_example_starts_with_every_model_ready(
    path: Path, demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'seawall.db'}"
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    environ = {
        "SEAWALL_DATABASE_URL": database_url,
        "SEAWALL_DEMO_DIR": str(demo_dir),
        "SEAWALL_EXAMPLE_KEY": "example-key-0123456789",
        "PRIMARY_BASE_URL": "http://127.0.0.1:9/v1",
        "SECONDARY_BASE_URL": "http://127.0.0.1:10/v1",
    }
    config = load_config(path, environ=environ)
    gateway = Gateway(assemble(config), config.server)
    await gateway.startup()
    try:
        states = {(m.name, m.state.value, m.reason) for m in gateway.repository}
        assert all(state == "READY" for _, state, _ in states), states
        assert gateway.readiness() == (True, "")
    finally:
        await gateway.shutdown()


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_example_plan_parses_and_fits_its_gateway(path: Path) -> None:
    plan = parse_plan(yaml.safe_load(path.read_text(encoding="utf-8")), source=path.name)
    gateway = EXAMPLES / path.name.replace("-plan.yaml", ".yaml")
    config = load_config(gateway, environ={"SEAWALL_EXAMPLE_KEY": "example-key-0123456789"})
    versions = {m.version for m in config.models if m.name == plan.model}
    assert {plan.stable_version, plan.canary_version} <= versions
    traffic = config.traffic[plan.model]
    assert (traffic.stable, traffic.canary, traffic.canary_weight) == (
        plan.stable_version,
        plan.canary_version,
        0.0,
    )


def test_the_canary_example_goes_10_50_100_judging_errors_and_relative_latency() -> None:
    from seawall.release.plan import Analysis, SetWeight

    plan = parse_plan(yaml.safe_load((EXAMPLES / "canary-plan.yaml").read_text(encoding="utf-8")))
    weights = [s.percent for s in plan.steps if isinstance(s, SetWeight)]
    assert weights == [10.0, 50.0, 100.0]
    analyses = [s for s in plan.steps if isinstance(s, Analysis)]
    assert len(analyses) == 2
    for analysis in analyses:
        kinds = {(g.metric.kind.value, g.relative_to_stable) for g in analysis.guardrails}
        assert kinds == {("error_rate", False), ("latency_p95_s", True)}


def test_no_example_holds_a_literal_key() -> None:
    for path in EXAMPLES.glob("*.yaml"):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        keys = (document.get("auth") or {}).get("keys", [])
        assert all(k.get("key", "${").startswith("${") for k in keys), path.name


def test_demo_example_matches_what_seawall_demo_writes() -> None:
    example = load_config(EXAMPLES / "demo.yaml", environ={})
    written = parse_config(DEMO_CONFIG.format(prefix="", search_path="."), environ={})

    def shape(config: object) -> list[tuple[str, str, str]]:
        return [(m.name, m.version, m.backend.kind) for m in config.models]  # type: ignore[attr-defined]

    assert shape(example) == shape(written)
    assert example.server == written.server
