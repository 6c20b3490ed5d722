"""Citations of the contract point at something a reader can open.

The contract is a page of the documentation (``docs/contract.md``), one label per section.
Code, pages and messages cite it by that page and its sections; a bare "SPEC", the name of
a file that neither the package nor the site ships, is never written. Parsed from the
sources: nothing is built.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BARE = re.compile(r"\bSPEC\b(?!_)")  # SPEC_BOUNDS and the like are identifiers, not citations
LABEL_USE = re.compile(r"<(contract-[a-z-]+)>")
LABEL_DEF = re.compile(r"^\((contract-[a-z-]+)\)=$", re.M)


def _sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "_ext").glob("*.py"))]
    for suffix in ("py", "md", "toml", "txt", "cu"):
        files += sorted((ROOT / "probcon_ref").rglob(f"*.{suffix}"))
    return [f for f in files if "_build" not in f.parts]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_spec(path):
    text = path.read_text(encoding="utf-8")
    lines = [i for i, line in enumerate(text.splitlines(), 1) if BARE.search(line)]
    assert not lines, f"{path.relative_to(ROOT)} cites 'SPEC' on lines {lines}: cite the contract page instead"


def test_every_contract_link_has_its_section():
    defined = set(LABEL_DEF.findall((ROOT / "docs" / "contract.md").read_text(encoding="utf-8")))
    assert len(defined) == 7, defined
    used = {}
    for path in _sources():
        for label in LABEL_USE.findall(path.read_text(encoding="utf-8")):
            used.setdefault(label, path.relative_to(ROOT))
    unknown = {label: str(where) for label, where in used.items() if label not in defined}
    assert not unknown, f"links to sections the contract page does not have: {unknown}"


def test_the_rule_can_fail(tmp_path):
    assert BARE.search("as SPEC section 6 says") and BARE.search("SPEC's bounds")
    assert not BARE.search("SPEC_BOUNDS") and not BARE.search("SPECIAL") and not BARE.search("spec_defaults")
