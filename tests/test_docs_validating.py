"""The validating page, the bibliography and the changelog, read from their sources.

Nothing here builds the site: each test reads the Markdown pages, the package and the tests
as text, so that a page that lost a section, a link to a page that no longer exists or a DLMF
equation cited without a bibliography entry fails at once.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
VALIDATING = DOCS / "validating.md"
REFERENCES = DOCS / "references.md"
CHANGELOG = DOCS / "changelog.md"

#: ``DLMF 10.29.2``, ``DLMF §10.41``, ``(DLMF 10.29.1, 10.29.2)``, ``DLMF 10.41.3 and 10.41.9``,
#: ``DLMF eq. 10.33.1``.
_ONE = r"(?:§\s*)?\d+\.\d+(?:\.\d+)?"
DLMF_CITATION = re.compile(
    rf"DLMF[\s(,]*(?:(?:eqs?\.|equations?)\s*)?({_ONE}(?:\s*(?:,|and|–|-)\s*{_ONE})*)")
NUMBER = re.compile(r"\d+\.\d+(?:\.\d+)?")
#: A row of the references page's DLMF table: ``| [10.29.2](https://dlmf.nist.gov/...) | ...``.
DLMF_ROW = re.compile(r"^\|\s*\[(\d+\.\d+\.\d+)\]\(https://dlmf\.nist\.gov/(\d+\.\d+)\.E(\d+)\)", re.M)
LABEL = re.compile(r"^\((ref-[^)\s]+)\)=\s*$", re.M)


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def cited_dlmf(text: str) -> set[str]:
    """Every DLMF equation or section number that ``text`` cites after the word DLMF."""
    return {n for m in DLMF_CITATION.finditer(text) for n in NUMBER.findall(m.group(1))}


def citing_sources() -> list[Path]:
    """The package, the pages (but the references page), the docs' code and the tests."""
    found = [p for p in (ROOT / "probcon_ref").rglob("*") if p.suffix in {".py", ".cu", ".md", ".txt"}]
    found += [p for p in DOCS.rglob("*") if p.suffix in {".md", ".py"}
              and "_build" not in p.parts and p != REFERENCES]
    found += [p for p in (ROOT / "tests").rglob("*.py") if p.resolve() != Path(__file__).resolve()]
    return sorted(found)


# ---------------------------------------------------------------------------------------
# One validating page
# ---------------------------------------------------------------------------------------


def test_validation_page_is_merged_into_validating():
    assert not (DOCS / "validation.md").exists(), "docs/validation.md is merged into validating.md"
    assert VALIDATING.is_file()


LINK_TO_VALIDATION = re.compile(
    r"\{doc\}`(?:[^`<]*<)?/?validation>?`"    # {doc}`validation`, {doc}`text <validation>`
    r"|\]\((?:\./)?validation(?:\.md|\.html)?(?:#[^)]*)?\)")  # [text](validation.md#...)


def test_no_page_links_to_the_removed_page():
    offenders = [f"{p.name}:{n}" for p in pages()
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if LINK_TO_VALIDATION.search(line)]
    assert not offenders, f"links to the removed page validation: {offenders}"


def test_no_toctree_lists_the_removed_page():
    toctree = re.compile(r"^```\{toctree\}\n(.*?)^```", re.M | re.S)
    offenders = [p.name for p in pages()
                 for block in toctree.findall(p.read_text(encoding="utf-8"))
                 if "validation" in {line.strip() for line in block.splitlines()}]
    assert not offenders, f"toctrees that still list the removed page validation: {offenders}"


def test_link_patterns_catch_every_form():
    for text in ("{doc}`validation`", "see {doc}`the tools <validation>`", "[here](validation.md)",
                 "[here](validation.md#by-hand)", "{doc}`/validation`"):
        assert LINK_TO_VALIDATION.search(text), text
    for text in ("{doc}`validating`", "[here](validating.md)", "validation of inputs"):
        assert not LINK_TO_VALIDATION.search(text), text


def test_validating_page_keeps_every_part_in_order():
    text = VALIDATING.read_text(encoding="utf-8")
    headings = ["## What to compare, and how tightly", "## By hand", "## `probcon-ref validate`",
                "### The calling convention", "### The battery", "### How the results are compared",
                "### Diagnoses", "## Independent implementations of NT-Xent", "## Golden vectors"]
    at = [text.find(h) for h in headings]
    assert -1 not in at, [h for h, i in zip(headings, at) if i < 0]
    assert at == sorted(at), "the sections of validating.md are out of order"
    for block in ("regimes_table", "spec_tolerances_table", "cli_help validate", "cli_help vectors",
                  "compare_example_output"):
        assert text.count(f"```{{generated}} {block}\n") == 1, block
    assert "```{literalinclude} examples/compare.py" in text
    assert (DOCS / "examples" / "compare.py").is_file()


def test_validating_page_has_no_repeated_paragraph():
    text = VALIDATING.read_text(encoding="utf-8")
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    repeated = [p[:80] for p, n in Counter(p for p in paragraphs if len(p) > 80).items() if n > 1]
    assert not repeated, repeated


@pytest.mark.parametrize("page", [VALIDATING, REFERENCES, CHANGELOG], ids=lambda p: p.name)
def test_pages_cite_the_contract_by_link(page):
    """Bare "SPEC section N" becomes a link to the contract page's section."""
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"\bSPEC('s)?\s+sections?\b", text), \
        "cite the contract with {ref}`... <contract-...>`"
    labels = set(re.findall(r"<(contract-[a-z]+)>`", text))
    contract = (DOCS / "contract.md").read_text(encoding="utf-8")
    known = set(re.findall(r"^\((contract-[a-z]+)\)=", contract, re.M))
    assert labels <= known, labels - known


# ---------------------------------------------------------------------------------------
# The bibliography
# ---------------------------------------------------------------------------------------


def test_reference_labels_are_unique_and_label_an_entry():
    text = REFERENCES.read_text(encoding="utf-8")
    labels = LABEL.findall(text)
    assert len(labels) >= 10
    dupes = [k for k, n in Counter(labels).items() if n > 1]
    assert not dupes, f"labels defined twice: {dupes}"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if LABEL.match(line):
            assert lines[i + 1].startswith("**"), f"{line} is not followed by an entry"


def test_reference_labels_are_used_by_their_name():
    """Every {ref}`... <ref-...>` on any page names a label of the references page."""
    labels = set(LABEL.findall(REFERENCES.read_text(encoding="utf-8")))
    used = {m for p in pages() for m in re.findall(r"<(ref-[^>\s]+)>`", p.read_text(encoding="utf-8"))}
    assert used, "no page links to the references"
    assert used <= labels, f"links to references that do not exist: {sorted(used - labels)}"


def test_dlmf_scan_reads_every_form():
    sample = ("(DLMF 10.29.2) and DLMF §10.41, (DLMF 10.29.1, 10.25.2), DLMF 10.41.3 and 10.41.9; "
              "DLMF (10.40.1), DLMF eq. 10.33.1")
    assert cited_dlmf(sample) == {"10.29.2", "10.41", "10.29.1", "10.25.2", "10.41.3", "10.41.9", "10.40.1",
                                  "10.33.1"}


def test_every_dlmf_equation_cited_is_in_the_bibliography():
    text = REFERENCES.read_text(encoding="utf-8")
    rows = DLMF_ROW.findall(text)
    for number, section, eq in rows:  # the link goes to the equation it names
        assert number == f"{section}.{eq}", number
    listed = {number for number, _, _ in rows}
    cited: dict[str, list[str]] = {}
    for path in citing_sources():
        for number in cited_dlmf(path.read_text(encoding="utf-8", errors="replace")):
            cited.setdefault(number, []).append(str(path.relative_to(ROOT)))
    assert "10.29.2" in cited, "the scan found none of the project's DLMF citations"
    sections = {n for n in cited if n.count(".") == 1}
    missing = {n: cited[n] for n in cited if n not in listed and not (n in sections and any(
        e.startswith(n + ".") for e in listed))}
    assert not missing, f"DLMF equations cited but not in docs/references.md: {missing}"
    stale = sorted(listed - set(cited))
    assert not stale, f"DLMF equations the references list but nothing cites: {stale}"


# ---------------------------------------------------------------------------------------
# The changelog
# ---------------------------------------------------------------------------------------


def test_changelog_names_the_package_version():
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import generated_validating
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    import probcon_ref

    text = CHANGELOG.read_text(encoding="utf-8")
    assert text.count("```{generated} package_version\n") == 1
    assert f"`probcon_ref` {probcon_ref.__version__} " in generated_validating.package_version()
    assert not re.search(r"\b\d+\.\d+\.\d+\b", text), "the version comes from the package, not typed in"


def test_changelog_has_themes_and_no_commit_hashes():
    text = CHANGELOG.read_text(encoding="utf-8")
    themes = re.findall(r"^## (.+)$", text, re.M)
    for theme in ("The reference and its accuracy", "Special functions",
                  "Validation tools and golden vectors", "PyTorch, JAX and CuPy integrations",
                  "Packaging", "Documentation"):
        assert theme in themes, theme
    assert not re.search(r"\b[0-9a-f]{7,40}\b", text), "no commit hashes"
    for theme in re.split(r"^## ", text, flags=re.M)[1:]:
        assert re.search(r"^\* ", theme, re.M), f"empty section {theme.splitlines()[0]}"
