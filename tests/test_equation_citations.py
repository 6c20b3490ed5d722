"""Every function of the mathematics cites the equation it computes, or says why it has none.

The documentation claims that every equation the code implements stands beside its source;
that holds only if each implementing function cites its equation (``:eq:`label```), since the
pages find the code by those citations. So every function and class of the math modules,
and every public function of the public modules, must either cite an equation or say
``no equation:`` (or ``no equation of its own:``) followed by why (plumbing, a container,
a host-side table...). Parsed from the source: nothing is imported or built.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "probcon_ref"

#: Modules that are the mathematics: every function and class in them, private ones too.
MATH_MODULES = ("loss.py", "gradient.py", "special.py")

#: Modules whose public functions and classes (``__all__``) are held to the same rule.
PUBLIC_MODULES = ("__init__.py", "tables.py", "torch/__init__.py", "torch/distributed.py", "jax/__init__.py",
                  "jax/_special.py", "cupy/__init__.py")

CITES = re.compile(r":eq:`[^`]+`")
NO_EQUATION = re.compile(r"\bno equation( of its own)?: \S", re.I)


def _definitions(tree: ast.Module, *, methods: bool):
    """Top-level functions and classes, and (with ``methods``) the methods of those classes."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name, node
            if methods and isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                        yield f"{node.name}.{item.name}", item


def _exported(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return {ast.literal_eval(e) for e in node.value.elts}
    return set()


def uncited(path: Path, *, public_only: bool) -> list[str]:
    """The definitions of ``path`` whose docstring neither cites an equation nor says why not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exported = _exported(tree)
    missing = []
    for name, node in _definitions(tree, methods=not public_only):
        if public_only and name not in exported:
            continue
        doc = ast.get_docstring(node) or ""
        if not (CITES.search(doc) or NO_EQUATION.search(doc)):
            missing.append(name)
    return missing


@pytest.mark.parametrize("module", MATH_MODULES)
def test_every_math_function_cites_its_equation(module):
    missing = uncited(PACKAGE / module, public_only=False)
    assert not missing, (f"{module}: these cite no equation and do not say 'no equation: why': "
                         f"{', '.join(missing)}")


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_function_cites_its_equation(module):
    missing = uncited(PACKAGE / module, public_only=True)
    assert not missing, (f"{module}: these public names cite no equation and do not say "
                         f"'no equation: why': {', '.join(missing)}")


def test_the_rule_can_fail(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('__all__ = ["f", "g", "h"]\n'
                      'def f():\n    """The logits :eq:`eq-pcl-logits`."""\n'
                      'def g():\n    """A helper (no equation: plumbing)."""\n'
                      'def h():\n    """Something unexplained."""\n'
                      'def _private():\n    """Also unexplained."""\n', encoding="utf-8")
    assert uncited(source, public_only=True) == ["h"]
    assert uncited(source, public_only=False) == ["h", "_private"]
