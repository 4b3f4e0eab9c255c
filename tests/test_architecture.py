"""House rules a reviewer would otherwise check by hand: nothing private used from
upstream packages (imported, called, overridden or looked up by name), and modules small
enough to read in one sitting. (Import layers and cycles are import-linter's job:
`lint-imports`, run by scripts/test.)"""

from __future__ import annotations

import ast
import importlib
import inspect
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

EXTENSION_POINTS = frozenset(
    {
        # LangChain's custom chat model guide tells implementers to override these (and a
        # subclass may call its parent's): they are the documented way to write a model.
        "_generate",
        "_agenerate",
        "_stream",
        "_astream",
        "_llm_type",
        "_identifying_params",
    }
)
"""`_`-prefixed upstream names that are documented for subclasses to override and call."""

PUBLIC_DESPITE_UNDERSCORE = frozenset(
    {
        "_exit",  # os._exit: the documented way to end a process without cleanup (Python's docs)
    }
)
"""Upstream names that are documented public API whatever their spelling."""

SET_BY_PYTHON = frozenset({"_abc_impl"})  # ABCMeta gives every abstract class its own


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


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def own_private_names(trees: list[ast.AST]) -> set[str]:
    """The `_private` names our own code defines: functions, class attributes, and what
    methods assign to `self`."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {name for name in names if is_private(name)}


def private_attribute_uses(tree: ast.AST, own: set[str]) -> list[str]:
    """Upstream `_private` attributes our code reaches: `super()._x`, `obj._x`, `self._x`
    where `_x` is not ours (so inherited), and `_x` looked up by name (a string)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            name = node.attr
            holder = ast.unparse(node.value)
            if name in EXTENSION_POINTS or name in PUBLIC_DESPITE_UNDERSCORE:
                continue
            if holder in ("self", "cls") and name in own:
                continue
            found.append(f"{holder}.{name} (line {node.lineno})")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value
            if name.isidentifier() and is_private(name) and name not in own and name not in EXTENSION_POINTS:
                found.append(f"{name!r} looked up by name (line {node.lineno})")
    return found


def upstream_privates_overridden(module_name: str) -> list[str]:
    """`_private` names that a class of ours defines over an upstream base class's own."""
    module = importlib.import_module(module_name)
    found = []
    for cls in vars(module).values():
        if not inspect.isclass(cls) or cls.__module__ != module_name:
            continue
        upstream = [base for base in cls.__mro__[1:] if base.__module__.split(".")[0] != "sift_graph"]
        for name in [*vars(cls), *getattr(cls, "__private_attributes__", {})]:  # pydantic keeps PrivateAttrs apart
            if is_private(name) and name not in EXTENSION_POINTS | SET_BY_PYTHON:
                owner = next((base for base in upstream if name in defined_by(base)), None)
                if owner is not None:
                    found.append(f"{cls.__name__}.{name} overrides {owner.__qualname__}.{name}")
    return found


def defined_by(cls: type) -> set[str]:
    return {*vars(cls), *getattr(cls, "__private_attributes__", {})}


TREES = {path: ast.parse(path.read_text(encoding="utf-8")) for path in MODULES}
OWN_PRIVATE_NAMES = own_private_names(list(TREES.values()))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_upstream_attributes_used(path):
    assert private_attribute_uses(TREES[path], OWN_PRIVATE_NAMES) == []


IMPORTABLE = [path for path in MODULES if path.name != "__main__.py"]  # a __main__ runs its program when imported


@pytest.mark.parametrize("path", IMPORTABLE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_upstream_methods_overridden(path):
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    assert upstream_privates_overridden(module) == []


def test_the_private_attribute_checks_can_fail():
    tree = ast.parse(
        "class M(ChatOpenAI):\n"
        "    def _generate(self, m):\n"
        "        payload = super()._get_request_payload(m)\n"  # an upstream private method
        "        self._use_responses_api(payload)\n"  # inherited, not ours
        "        self._ours()\n"
        "        getattr(base, '_handle_openai_bad_request')\n"  # looked up by name
        "        return super()._generate(m)\n"  # an extension point: allowed
        "    def _ours(self):\n"
        "        return openai_base._helper, os._exit\n"  # another object's private; a public one
    )
    own = own_private_names([tree])
    found = private_attribute_uses(tree, own)
    assert [entry.split(" ")[0] for entry in found] == [
        "super()._get_request_payload",
        "self._use_responses_api",
        "'_handle_openai_bad_request'",
        "openai_base._helper",
    ], found


def test_the_override_check_can_fail(tmp_path, monkeypatch):
    (tmp_path / "probe_override.py").write_text(
        "from langchain_openai import ChatOpenAI\n\n"
        "class Probe(ChatOpenAI):\n"
        "    def _get_request_payload(self, *args, **kwargs):\n"
        "        return {}\n\n"
        "    def _generate(self, *args, **kwargs):\n"
        "        raise NotImplementedError\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert upstream_privates_overridden("probe_override") == [
        "Probe._get_request_payload overrides ChatOpenAI._get_request_payload"
    ]


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
