"""House rules a reviewer would otherwise check by hand: no private imports from
upstream packages, and modules small enough to read in one sitting. (Import layers and
cycles are import-linter's job: `lint-imports`, run by scripts/test.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sift_graph"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 300
LONGER_ON_PURPOSE: dict[str, str] = {
    "context.py": "the one definition of every setting, a field each with its help, scope and checks: "
    "split, a setting would be defined in two places",
}
"""Module (relative to sift_graph/) -> why it is over MAX_LINES."""


def private_imports(tree: ast.AST) -> list[str]:
    """Imports of `_private` modules or names from packages other than ours."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in modules:
            if module.split(".")[0] in ("sift_graph", "__future__"):
                continue
            if any(part.startswith("_") for part in module.split(".")) or (name or "").startswith("_"):
                found.append(f"{module}{'' if name is None else ':' + name} (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_imports_from_upstream(path):
    assert private_imports(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_private_import_check_can_fail():
    tree = ast.parse("from langgraph._internal._constants import X\nfrom openai_base import _handle\nimport os._x")
    assert len(private_imports(tree)) == 3


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_readable(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    name = str(path.relative_to(PACKAGE))
    assert lines <= MAX_LINES or name in LONGER_ON_PURPOSE, f"{name}: {lines} lines; split it or say why"
