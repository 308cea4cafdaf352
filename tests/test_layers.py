"""The package layers stay as ARCHITECTURE.md draws them: a lower package never imports a
higher one, so the use cases in ``casework`` (and the faces above it) can change freely."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mash_hub"

# Higher layers, each allowed to import everything below it.
FACES = ("web", "cli")
USE_CASES = ("casework",)
LOWER = (
    "persons",
    "matching",
    "referrals",
    "feeds",
    "quality",
    "audit",
    "authz",
    "crypto",
    "db",
    "users",
    "synth",
    "observability",
    "backup",
)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in (PACKAGE / package).rglob("*.py")
        for module in _imports(path)
        if module.split(".")[:2] in ([["mash_hub", name] for name in forbidden])
    )


@pytest.mark.parametrize("package", LOWER)
def test_lower_packages_import_neither_use_cases_nor_faces(package: str) -> None:
    assert _violations(package, USE_CASES + FACES) == []


def test_use_cases_import_no_face() -> None:
    assert _violations("casework", FACES) == []


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(FACES + USE_CASES + LOWER)
