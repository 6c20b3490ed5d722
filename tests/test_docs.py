"""The documentation site: equation labels, the build, the docstring examples, the browser.

* Every ``:eq:`` label that the package's code cites is defined by the docs, and shown
  beside the code that computes it (fast: parses the sources, builds nothing).
* The site builds offline with warnings as errors, nitpicky (``docs/build.py``'s command).
* The docstring examples of every module of the package pass (``pytest --doctest-modules``).
* The built site is self-contained (MathJax served from it, no remote scripts or styles).
* Headless Chromium opens every page with mathematics: no console errors, every equation
  typeset by MathJax, no TeX left on the page; a screenshot of the derivation page is saved
  to ``docs/_build/artifacts/derivation.png`` (or ``$PROBCON_DOCS_ARTIFACTS``).
* The layout, in Chromium, of every page at 1280 px (a laptop) and 400 px (a phone): the
  sidebar beside the text at 1280 px and above it at 400 px; the page never scrolls
  sideways at 400 px; a display equation wider than the page scrolls in its own box; no
  code listing beside an equation is cut off at 1280 px; previous/next links on every page
  of the table of contents; the search page shows its snippets when the site is opened as
  a file. Screenshots of the derivation page at 400 px and 1280 px are saved beside the
  other one.

Without Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) the
browser part skips with the reason, and fails instead when ``PROBCON_REQUIRE_TOOLS`` names
``chromium``. The link check of the built site is tests/test_docs_site.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docs_helpers as h  # noqa: E402

from conftest import load_docs_build_module as _load_build_module, skip_or_fail_tool  # noqa: E402

ROOT = h.ROOT
ARTIFACTS = Path(os.environ.get("PROBCON_DOCS_ARTIFACTS", ROOT / "docs" / "_build" / "artifacts"))


def _needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"{module} is not installed (pip install -e '.[docs]')")


# ---------------------------------------------------------------------------------------
# Labels: fast, no build
# ---------------------------------------------------------------------------------------


def test_every_cited_equation_is_defined():
    cited = h.cited_labels()
    defined = h.defined_labels()
    assert cited, "no :eq: citation found in probcon_ref: the scan is broken"
    missing = {label: where for label, where in cited.items() if label not in defined}
    assert not missing, "the code cites equations the docs do not define:\n" + "\n".join(
        f"  {label}: cited at {', '.join(where)}" for label, where in sorted(missing.items()))


def test_equation_labels_are_unique():
    twice = {label: where for label, where in h.defined_labels().items() if len(where) > 1}
    assert not twice, f"labels defined more than once: {twice}"


def test_every_cited_equation_is_shown_beside_its_code():
    text = "\n".join(p.read_text(encoding="utf-8") for p in h.doc_sources())
    annotated = set(re.findall(r"```\{implementations\}\s+(\S+)", text))
    missing = sorted(set(h.cited_labels()) - annotated)
    assert not missing, ("equations cited by the code but not shown beside it "
                         f"(add an {{implementations}} directive next to each): {missing}")


def test_label_scan_finds_every_syntax(tmp_path):
    # The regular expressions of docs_helpers, on the three ways a page can label an equation.
    sample = "$$\nx\n$$ (eq-a)\n\n```{math}\n:label: eq-b\ny\n```\n\n.. math::\n   :label: eq-c\n"
    found = set(h.MYST_DOLLAR_LABEL.findall(sample)) | set(h.LABEL_OPTION.findall(sample))
    assert found == {"eq-a", "eq-b", "eq-c"}


# ---------------------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------------------


def test_site_builds_with_warnings_as_errors(built_site):
    proc, html = built_site
    log = (proc.stdout + proc.stderr)[-20000:]
    assert proc.returncode == 0, f"sphinx-build -W -n failed:\n{log}"
    assert "-W" in _load_build_module().sphinx_command(html, html) and \
        "-n" in _load_build_module().sphinx_command(html, html)
    for page in {"index", "derivation", "gradient", "special-functions", "properties", "api",
                 "backends", "benchmarks", "experiment"} | set(h.page_names()):
        assert (html / f"{page}.html").is_file(), f"{page}.html was not built"


def test_site_is_self_contained(built_site):
    proc, html = built_site
    assert proc.returncode == 0
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not in the site"
    remote = re.compile(r"<(script|link|img)\b[^>]*\b(src|href)=\"(https?:)?//", re.I)
    offenders = {}
    for page in html.rglob("*.html"):
        hits = [m.group(0) for m in remote.finditer(page.read_text(encoding="utf-8"))]
        if hits:
            offenders[page.name] = hits
    assert not offenders, f"pages load resources from the network: {offenders}"


def test_figures_are_built(built_site):
    proc, html = built_site
    assert proc.returncode == 0
    images = {p.name for p in (html / "_images").glob("*.png")}
    for name in ("special_accuracy.png", "optimal_kappa.png", "landscape.png", "ntxent_limit.png"):
        assert name in images, f"figure {name} missing from the site"


def test_every_equation_with_code_shows_its_source(built_site):
    proc, html = built_site
    assert proc.returncode == 0
    text = (html / "derivation.html").read_text(encoding="utf-8")
    blocks = text.split('<div class="annotated')[1:]
    assert len(blocks) >= 10
    for block in blocks:
        block = block.split('<div class="annotated')[0]
        # Every listing is a folding box: its summary names the function, its body the code.
        boxes = re.findall(r'<details class="implementation[^"]*"[^>]*>\s*<summary[^>]*>(.*?)'
                           r'</summary>(.*?)</details>', block, re.S)
        assert boxes, f"an equation without its listings: {block[:300]}"
        for summary, body in boxes:
            assert "probcon_ref." in summary and " lines" in summary, summary
            assert "<pre>" in body and "highlight-python" in body, body[:300]
    assert "probcon_ref.loss.unit_directions" in text


def test_validation_example_runs():
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "compare.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_shown_on_pages_runs():
    """Every ```python block marked ``% runs`` (a MyST comment line above it) runs."""
    fence = re.compile(r"^% runs\n```python\n(.*?)^```", re.M | re.S)
    blocks = [(page, code) for page in h.doc_sources()
              for code in fence.findall(page.read_text(encoding="utf-8"))]
    assert blocks, "no python example marked '% runs' found on the pages"
    for page, code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"example in {page.name} failed:\n{code}\n{proc.stderr}"


# ---------------------------------------------------------------------------------------
# Docstring examples
# ---------------------------------------------------------------------------------------


def test_docstring_examples_pass():
    """``pytest --doctest-modules probcon_ref``, with ELLIPSIS and NORMALIZE_WHITESPACE."""
    cmd = [sys.executable, "-m", "pytest", "--doctest-modules", "probcon_ref", "-q",
           "-p", "no:cacheprovider", "-o", "addopts=", "-o", "testpaths=",
           "-o", "doctest_optionflags=ELLIPSIS NORMALIZE_WHITESPACE"]
    if importlib.util.find_spec("torch") is None:  # the PyTorch modules cannot even be imported
        cmd += ["--ignore=probcon_ref/torch", "--ignore=probcon_ref/experiment/core.py"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"docstring examples failed:\n{out[-20000:]}"
    assert re.search(r"\b[1-9]\d* passed", out), f"no docstring example ran:\n{out[-3000:]}"


# ---------------------------------------------------------------------------------------
# In a real browser
# ---------------------------------------------------------------------------------------

MATH_PAGES = tuple(h.math_page_names())


def test_math_pages_are_found():
    assert {"derivation", "gradient", "special-functions", "properties", "index"} <= set(MATH_PAGES)


@contextlib.contextmanager
def _browser(built_site, tmp_path_factory, profile: str):
    """(base URL, driver): headless Chromium on the built site served locally."""
    proc, html = built_site
    if proc.returncode != 0:
        pytest.fail("the site did not build")
    reason = h.browser_available()
    if reason:
        # Chromium comes from the system (root installs it): optional, unless CI requires it
        # (PROBCON_REQUIRE_TOOLS=chromium, as .ci/run sets).
        skip_or_fail_tool("chromium", f"the browser test cannot run: {reason}")
    with h.serve(html) as base, h.chromium(tmp_path_factory.mktemp(profile), width=1400, height=1000) as driver:
        yield base, driver


@pytest.fixture(scope="session")
def browser_report(built_site, tmp_path_factory):
    reports = {}
    with _browser(built_site, tmp_path_factory, "chromium-profile") as (base, driver):
        for page in MATH_PAGES:
            driver.set_window_size(1400, 1000)
            reports[page] = h.inspect_page(driver, f"{base}/{page}.html")
            if page == "derivation":
                driver.save_screenshot(str(_artifact("derivation.png")))
                h.full_page_screenshot(driver, _artifact("derivation-full.png"))
    print(f"\nscreenshot: {_artifact('derivation.png')}")
    return reports


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


@pytest.mark.parametrize("page", MATH_PAGES)
def test_page_typesets_in_browser(browser_report, page):
    r = browser_report[page]
    assert r["status"] == "typeset", f"{page}: MathJax did not finish: {r['status']}"
    assert r["mathjax"], f"{page}: MathJax did not load"
    assert r["math_elements"] > 0, f"{page}: no mathematics found"
    assert r["untypeset"] == 0, f"{page}: {r['untypeset']} of {r['math_elements']} equations not typeset"
    assert not r["errors"], f"{page}: TeX errors: {r['errors']}"
    assert not r["raw_tex"], f"{page}: raw TeX left on the page: {r['raw_tex']}"
    assert not r["severe"], f"{page}: console errors: {r['severe']}"
    assert not r["overflowing"], f"{page}: equations wider than the page at 1400 px: {r['overflowing']}"
    broken = [src for src, ok in r["images"] if not ok]
    assert not broken, f"{page}: images that did not load: {broken}"


def test_derivation_screenshot_saved(browser_report):
    shot = _artifact("derivation.png")
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------
# The layout in a real browser: a laptop and a phone
# ---------------------------------------------------------------------------------------

LAPTOP, PHONE = 1280, 400
WIDTHS = (LAPTOP, PHONE)
# Every page of the site's top level: the pages of the sources, the index and search pages.
LAYOUT_PAGES = tuple(sorted(set(h.page_names()) | {"genindex", "search", "py-modindex"}))


@pytest.fixture(scope="session")
def layout_report(built_site, tmp_path_factory):
    """{(page, width): what the layout is}, each page measured at 1280 px and at 400 px."""
    html = built_site[1]
    reports = {}
    with _browser(built_site, tmp_path_factory, "chromium-profile-layout") as (base, driver):
        for width in WIDTHS:
            for page in LAYOUT_PAGES:
                if (html / f"{page}.html").is_file():
                    reports[page, width] = h.inspect_layout(driver, f"{base}/{page}.html", width)
        h.inspect_layout(driver, f"{base}/derivation.html", PHONE)
        h.viewport_screenshot_full(driver, _artifact("derivation-400.png"), PHONE)
        h.inspect_layout(driver, f"{base}/derivation.html", LAPTOP)
        driver.save_screenshot(str(_artifact("derivation-1280.png")))
    return reports


def _layout(layout_report, page, width):
    if (page, width) not in layout_report:
        pytest.fail(f"{page}.html was not built")
    r = layout_report[page, width]
    assert r["status"] in ("typeset", "no math"), f"{page}: MathJax did not finish: {r['status']}"
    assert r["width"] == width, f"{page}: the viewport is {r['width']} px, not {width} px"
    return r


@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_sidebar_beside_the_text_on_a_laptop(layout_report, page):
    r = _layout(layout_report, page, LAPTOP)
    assert r["sidebar"], f"{page}: no sidebar"
    assert r["sidebar"]["beside"], f"{page}: the sidebar is not beside the text at {LAPTOP} px: {r['sidebar']}"
    assert r["navigation"] and r["navigation"]["open"] and r["navigation"]["links_shown"] >= 5, \
        f"{page}: the table of contents is not shown in the sidebar: {r['navigation']}"


@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_sidebar_above_the_text_on_a_phone(layout_report, page):
    r = _layout(layout_report, page, PHONE)
    assert r["sidebar"] and r["sidebar"]["above"], \
        f"{page}: the navigation is not above the text at {PHONE} px: {r['sidebar']}"
    # Folded to one line ("Contents"), so the page starts near the top of the screen.
    assert r["navigation"] and not r["navigation"]["open"] and r["navigation"]["links_shown"] == 0, \
        f"{page}: the table of contents is unfolded at {PHONE} px: {r['navigation']}"
    top, bottom = r["sidebar"]["sidebar"][1], r["sidebar"]["sidebar"][3]
    assert bottom - top <= 320, f"{page}: the navigation block is {bottom - top} px tall at {PHONE} px"


@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_no_sideways_scrolling_on_a_phone(layout_report, page):
    r = _layout(layout_report, page, PHONE)
    assert r["scroll_width"] <= r["client_width"], (
        f"{page}: the page scrolls sideways at {PHONE} px ({r['scroll_width']} > "
        f"{r['client_width']}); past the edge: {r['past_edge']}")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_wide_equations_scroll_in_their_own_box(layout_report, page, width):
    r = _layout(layout_report, page, width)
    assert not r["equations"]["bad"], \
        f"{page} at {width} px: display equations wider than their box: {r['equations']['bad']}"


def test_some_equations_do_scroll_on_a_phone(layout_report):
    # The check above would pass vacuously if no equation were wide: at 400 px some are.
    assert sum(r["equations"]["scrolling"] for (page, width), r in layout_report.items()
               if width == PHONE) > 0


@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_listings_fit_on_a_laptop(layout_report, page):
    r = _layout(layout_report, page, LAPTOP)
    assert not r["listings_cut"], f"{page}: code listings cut off at {LAPTOP} px: {r['listings_cut']}"
    assert r["details"] == r["listings"], f"{page}: listings outside a folding box"
    if r["annotated"]:
        assert r["details_open"] >= 1, f"{page}: every listing folded"
        assert r["sticky_equations"] == r["annotated"], f"{page}: equations that do not stay in view"


def test_derivation_has_listings(layout_report):
    r = _layout(layout_report, "derivation", LAPTOP)
    assert r["annotated"] >= 10 and r["listings"] >= r["annotated"]
    assert r["details_open"] < r["details"], "no listing folded on the derivation page"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", h.toctree_pages())
def test_previous_and_next_links(layout_report, page, width):
    r = _layout(layout_report, page, width)
    order = h.toctree_pages()
    i = order.index(page)
    expected = {"Previous document": order[i - 1] if i > 0 else None,
                "Next document": order[i + 1] if i + 1 < len(order) else None}
    for title, target in expected.items():
        links = [a for a in r["rellinks"] if a["title"] == title]
        if target is None:
            assert not links, f"{page}: a {title.lower()} link on the {'first' if i == 0 else 'last'} page"
            continue
        assert links, f"{page}: no {title.lower()} link at {width} px"
        assert all(a["href"] == f"{target}.html" for a in links), f"{page}: {links}"
        assert all(a["visible"] for a in links), f"{page}: {title.lower()} link not in view: {links}"


def test_layout_screenshots_saved(layout_report):
    for name in ("derivation-400.png", "derivation-1280.png"):
        shot = _artifact(name)
        assert shot.is_file() and shot.stat().st_size > 10_000, name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def search_report(built_site, tmp_path_factory):
    """The search page's results for "kappa", opened as a file and served over HTTP."""
    html = built_site[1]
    with _browser(built_site, tmp_path_factory, "chromium-profile-search") as (base, driver):
        as_file = h.search_results(driver, (html / "search.html").resolve().as_uri() + "?q=kappa")
        served = h.search_results(driver, f"{base}/search.html?q=kappa")
    return as_file, served


def test_search_shows_snippets_from_a_file(search_report):
    as_file, _ = search_report
    assert as_file["status"] == "done", as_file
    snippets = [text for _, text in as_file["results"] if text]
    assert len(as_file["results"]) >= 3, f"search for kappa found too little: {as_file}"
    assert snippets and any("kappa" in s.lower() for s in snippets), \
        f"no snippet under file://: {as_file['results']}"
    assert not as_file["severe"], f"console errors under file://: {as_file['severe']}"


def test_search_snippets_from_a_file_match_the_served_site(search_report):
    as_file, served = search_report
    assert served["status"] == "done" and not served["severe"], served
    assert as_file["results"] == served["results"]
