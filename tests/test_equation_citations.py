"""Every function of the mathematics cites the equation it computes, or says why it has none.

The documentation claims that every equation the code implements stands beside its source;
that holds only if each implementing function cites its equation (``:eq:`label```), since the
pages find the code by those citations. The rule (``docs_content.uncited``: every function
and class of the math modules, and every public name of the public modules, cites an
equation or says ``no equation:`` or ``no equation of its own:`` followed by why) is the one
the docs build warns about, so ``-W`` fails the build too. Parsed from the source: nothing
is imported or built.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
docs_content = pytest.importorskip("docs_content")


@pytest.mark.parametrize("module", docs_content.MATH_MODULES)
def test_every_math_function_cites_its_equation(module):
    missing = docs_content.uncited(docs_content.PACKAGE / module, public_only=False)
    assert not missing, (f"{module}: these cite no equation and do not say 'no equation: why': "
                         f"{', '.join(missing)}")


@pytest.mark.parametrize("module", docs_content.PUBLIC_MODULES)
def test_every_public_function_cites_its_equation(module):
    missing = docs_content.uncited(docs_content.PACKAGE / module, public_only=True)
    assert not missing, (f"{module}: these public names cite no equation and do not say "
                         f"'no equation: why': {', '.join(missing)}")


def test_the_rule_can_fail(tmp_path):
    source = tmp_path / "m.py"
    source.write_text('__all__ = ["f", "g", "h"]\n'
                      'def f():\n    """The logits :eq:`eq-pcl-logits`."""\n'
                      'def g():\n    """A helper (no equation: plumbing)."""\n'
                      'def h():\n    """Something unexplained."""\n'
                      'def _private():\n    """Also unexplained."""\n', encoding="utf-8")
    assert docs_content.uncited(source, public_only=True) == ["h"]
    assert docs_content.uncited(source, public_only=False) == ["h", "_private"]
    assert docs_content.uncited_definitions() == []
