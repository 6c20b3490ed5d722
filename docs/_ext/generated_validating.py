"""Generators of the validating page and of the changelog.

``compare_example_output`` runs ``docs/examples/compare.py`` when the site is built and shows
what it printed; ``package_version`` names the version the changelog describes, from
``probcon_ref.__version__``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPARE_EXAMPLE = ROOT / "docs" / "examples" / "compare.py"


def compare_example_output() -> str:
    """What ``docs/examples/compare.py`` prints, run now (it needs PyTorch for its candidate)."""
    if importlib.util.find_spec("torch") is None:
        return ("The example's candidate is written in PyTorch, which this build of the site did "
                "not have, so its output is not shown here.\n")
    proc = subprocess.run([sys.executable, str(COMPARE_EXAMPLE)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{COMPARE_EXAMPLE.name} failed:\n{proc.stdout}{proc.stderr}")
    return "```text\n" + proc.stdout + "```\n"


def package_version() -> str:
    """The sentence of the changelog that names the version, from ``probcon_ref.__version__``."""
    import probcon_ref

    return (f"Every change below is part of `probcon_ref` {probcon_ref.__version__} "
            "(`probcon_ref.__version__`), the version the package has carried from its first commit.\n")


GENERATORS = {
    "compare_example_output": compare_example_output,
    "package_version": package_version,
}

#: Files a generator reads: a change to them rebuilds the page.
DEPENDENCIES = {"compare_example_output": (COMPARE_EXAMPLE,)}
