"""tests/ mirrors src/seawall/ file for file, so every module has a home for its tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "seawall"


def test_every_module_has_a_test_module() -> None:
    missing = []
    for module in sorted(PACKAGE.rglob("*.py")):
        if module.name == "__init__.py":
            continue
        relative = module.relative_to(PACKAGE)
        expected = ROOT / "tests" / relative.parent / f"test_{relative.name}"
        if not expected.is_file():
            missing.append(str(expected.relative_to(ROOT)))
    assert not missing, f"modules without tests: {missing}"


def test_every_package_directory_is_mirrored() -> None:
    packages = {p.parent.relative_to(PACKAGE) for p in PACKAGE.rglob("__init__.py")}
    assert {p for p in packages if not (ROOT / "tests" / p).is_dir()} == set()
