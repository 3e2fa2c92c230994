"""Every example config in examples/ validates and serves, so the docs cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.assemble import assemble
from seawall.cli.demo import DEMO_CONFIG
from seawall.config import load_config, parse_config
from seawall.gateway import Gateway

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
async def test_example_starts_with_every_model_ready(
    path: Path, demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEAWALL_DATABASE_URL", f"sqlite:///{tmp_path / 'seawall.db'}")
    environ = {
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


def test_demo_example_matches_what_seawall_demo_writes() -> None:
    example = load_config(EXAMPLES / "demo.yaml", environ={})
    written = parse_config(DEMO_CONFIG.format(prefix="", search_path="."), environ={})

    def shape(config: object) -> list[tuple[str, str, str]]:
        return [(m.name, m.version, m.backend.kind) for m in config.models]  # type: ignore[attr-defined]

    assert shape(example) == shape(written)
    assert example.server == written.server
