"""The package's shape: no import cycle, the reference imports none of its users, sizes a reader can hold.

The import graph is built from the source with ``ast`` (every ``import`` and ``from ...
import`` at any depth, lazy imports inside functions included), so it holds for code
paths no test happens to run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "probcon_ref"

#: The reference: what a student reads to study the mathematics.
REFERENCE = ("probcon_ref.loss", "probcon_ref.gradient", "probcon_ref.special", "probcon_ref.tables",
             "probcon_ref._inputs", "probcon_ref._rules", "probcon_ref._arrays")

#: Its users, which the reference must never import.
USERS = ("probcon_ref.tools", "probcon_ref.testing", "probcon_ref.experiment", "probcon_ref.cupy",
         "probcon_ref.torch", "probcon_ref.jax", "torch", "cupy", "jax", "scipy")

#: Sizes (STYLE.md: a module does one job and rarely passes ~400-500 lines; a function fits on a screen).
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports; ``from pkg import x`` counts as ``pkg.x`` when that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            submodules = {f"{target}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):  # some names are attributes of target itself
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    out = {}
    for name, path in mods.items():
        deps = set()
        for target in imports_of(name, path, known):
            # an import of a submodule also imports its package's __init__, but only a module
            # that is itself in the package is an edge
            if target in known and target != name:
                deps.add(target)
        out[name] = deps
    return out


def find_cycle(edges: dict[str, set[str]]):
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", REFERENCE)
def test_the_reference_imports_none_of_its_users(name):
    mods = modules()
    found = imports_of(name, mods[name], set(mods))
    bad = sorted(t for t in found if any(t == u or t.startswith(u + ".") for u in USERS))
    assert not bad, f"{name} imports {bad}"


def test_the_import_scan_sees_lazy_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from . import cupy as fused\n    import torch\n")
    assert {"probcon_ref.cupy", "torch"} <= imports_of("probcon_ref.m", path, {"probcon_ref.cupy"})


def test_ls_shows_where_the_math_is():
    top = sorted(p.name for p in PACKAGE.iterdir() if not p.name.startswith("__pycache__"))
    assert {"loss.py", "gradient.py", "special.py", "tables.py"} <= set(top)
    packages = {p for p in top if (PACKAGE / p).is_dir()}
    assert packages == {"cupy", "experiment", "jax", "testing", "tools", "torch"}, packages


def test_functions_fit_on_a_screen():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, long
