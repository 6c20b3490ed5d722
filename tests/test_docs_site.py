"""The built site's links, its previous/next links and the search page's text of the pages.

* The link check of ``docs/_ext/probcon_docs.py`` (run by every build, a broken link is a
  warning, so ``-W`` fails the build): it reports planted broken links, and nothing else,
  in a handmade site (fast, builds nothing); a tiny Sphinx project with a broken link fails
  to build with ``-W``; the real site has no broken link, viewcode's "[docs]" back-links
  included.
* A label above a ``.. plot::`` names its figure, and figures are numbered without gaps.
* Previous/next links follow the table of contents on every page of it.
* ``searchtext.js``: the text of every page, as Sphinx's search page reads it from a page.

The browser's side of the search (snippets under ``file://``) is in tests/test_docs.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docs_helpers as h  # noqa: E402

sys.path.insert(0, str(h.DOCS / "_ext"))
probcon_docs = pytest.importorskip("probcon_docs", reason="sphinx is not installed (pip install -e '.[docs]')")


# ---------------------------------------------------------------------------------------
# The link check, on a handmade site: fast
# ---------------------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


GOOD_AND_BAD = {
    "index.html": """<html><head><link rel="stylesheet" href="_static/site.css"></head><body>
<div id="top">
<a href="page.html">page</a>
<a href="page.html#section-one">an id</a>
<a href="page.html#old-name">an a name</a>
<a href="#top">this page</a>
<a href="#">nothing</a>
<a href="sub/">a folder's index</a>
<a href="page.html#caf%C3%A9">an encoded fragment</a>
<a href="https://example.org/x.html#nowhere">external</a>
<a href="mailto:someone@example.org">mail</a>
<img src="_images/fig.png">
<a href="missing.html">BAD1</a>
<a href="page.html#no-such-id">BAD2</a>
<a href="#not-here">BAD3</a>
<img src="_images/missing.png">
</div></body></html>""",
    "page.html": """<html><body><section id="section-one"><a name="old-name"></a>
<p id="café">x</p><a href="index.html#top">back</a>
<a href="../outside.html">BAD5</a></section></body></html>""",
    "sub/index.html": """<html><body><a href="../page.html#section-one">up</a>
<a href="../index.html#sub-missing">BAD4</a></body></html>""",
    "_static/site.css": "body {}",
    "_images/fig.png": "png",
    # A third-party page under _static is not the site's own: not checked.
    "_static/vendor/readme.html": '<a href="nowhere.html">not checked</a>',
}


def test_link_check_reports_each_broken_link_and_nothing_else(tmp_path):
    report = probcon_docs.check_links(_write(tmp_path, GOOD_AND_BAD))
    assert report.pages == 3
    broken = {(page, link) for page, _, link, _ in report.broken}
    assert broken == {
        ("index.html", "missing.html"),
        ("index.html", "page.html#no-such-id"),
        ("index.html", "#not-here"),
        ("index.html", "_images/missing.png"),
        ("sub/index.html", "../index.html#sub-missing"),
        ("page.html", "../outside.html"),
    }
    assert report.external == 2
    # 10 good hrefs and 5 broken ones (the stylesheet link included), 2 srcs.
    assert (report.hrefs, report.srcs) == (15, 2)
    why = {link: reason for _, _, link, reason in report.broken}
    assert why["page.html#no-such-id"] == "no anchor #no-such-id in page.html"
    assert why["missing.html"] == "no file missing.html"
    assert why["../outside.html"] == "outside the site"


def test_link_check_reports_a_planted_link_in_the_built_site(built_site, tmp_path):
    # A copy of the real site, with one bad href planted in the derivation page.
    import shutil

    proc, html = built_site
    assert proc.returncode == 0
    copy = tmp_path / "html"
    shutil.copytree(html, copy, ignore=shutil.ignore_patterns("mathjax", "_images", "_downloads"))
    page = copy / "derivation.html"
    text = page.read_text(encoding="utf-8")
    page.write_text(text.replace('href="gradient.html"', 'href="gradient.html#no-such-equation"', 1),
                    encoding="utf-8")
    broken = probcon_docs.check_links(copy).broken
    planted = [b for b in broken if b[0] == "derivation.html"
               and b[2] == "gradient.html#no-such-equation"]
    assert len(planted) == 1, broken[:10]


def test_a_broken_link_fails_a_sphinx_build(tmp_path):
    """A tiny Sphinx project with the extension and one broken link: -W fails, and says why."""
    try:
        probcon_docs.mathjax_source()
    except Exception as exc:  # the extension needs MathJax's package to build a site at all
        pytest.skip(str(exc))
    src = _write(tmp_path / "src", {
        "conf.py": ("import sys\nsys.path.insert(0, %r)\nextensions = ['sphinx.ext.autodoc', 'probcon_docs']\n"
                    "project = 'tiny'\n" % str(h.DOCS / "_ext")),
        "index.rst": ("Tiny\n====\n\n.. _here:\n\nA :ref:`good link <here>`.\n\n"
                      ".. raw:: html\n\n   <a href=\"index.html#nowhere\">broken</a>\n"),
    })
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-E",
           "-d", str(tmp_path / "doctrees"), str(src), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert "broken link index.html#nowhere: no anchor #nowhere in index.html" in log, log
    assert log.count("broken link") == 1, log
    # Without the bad link the same project builds.
    (src / "index.rst").write_text("Tiny\n====\n\n.. _here:\n\nA :ref:`good link <here>`.\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_label_names_the_plot_figure_and_the_numbers_do_not_skip(tmp_path):
    """Two labelled plots: {numref} resolves to Fig. 1 and Fig. 2, the figures carry them."""
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install -e '.[docs]')")
    try:
        probcon_docs.mathjax_source()
    except Exception as exc:
        pytest.skip(str(exc))
    src = _write(tmp_path / "src", {
        "conf.py": ("import sys\nsys.path.insert(0, %r)\n"
                    "extensions = ['sphinx.ext.autodoc', 'matplotlib.sphinxext.plot_directive',"
                    " 'probcon_docs']\nnumfig = True\nplot_formats = [('png', 40)]\n"
                    "plot_html_show_formats = False\n" % str(h.DOCS / "_ext")),
        "fig.py": "import matplotlib.pyplot as plt\nplt.plot([0, 1])\n",
        "index.rst": ("Tiny\n====\n\nSee :numref:`fig-b` and :numref:`fig-a`.\n\n"
                      ".. _fig-a:\n\n.. plot:: fig.py\n   :caption: First.\n\n"
                      ".. _fig-b:\n\n.. plot:: fig.py\n   :caption: Second.\n"),
    })
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going",
                           "-q", "-E", "-d", str(tmp_path / "doctrees"), str(src), str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'href="#(fig-[ab])"><span class="std std-numref">Fig\. (\d+)', page)
    assert refs == [("fig-b", "2"), ("fig-a", "1")], refs
    figures = re.findall(r'<figure[^>]*id="(fig-[ab])"[^>]*>.*?<span class="caption-number">Fig\. (\d+)',
                         page, re.S)
    assert figures == [("fig-a", "1"), ("fig-b", "2")], figures


# ---------------------------------------------------------------------------------------
# The real site
# ---------------------------------------------------------------------------------------


def test_built_site_has_no_broken_link(built_site):
    proc, html = built_site
    assert "broken link" not in proc.stdout + proc.stderr
    report = probcon_docs.check_links(html)
    assert report.pages >= 20 and report.hrefs >= 1000, report
    assert not report.broken, "\n".join(f"{p}:{n}: {link} ({why})" for p, n, link, why in report.broken)


@pytest.mark.parametrize("module", ["loss", "cupy"])
def test_viewcode_backlinks_use_the_module_anchors(built_site, module):
    # viewcode's "[docs]" links of a module whose re-exported object (probcon_ref.PCLGrads,
    # probcon_ref.use_fused_kernels) is documented first used to point at
    # api.html#probcon_ref.<name>.
    proc, html = built_site
    page = html / "_modules" / "probcon_ref" / f"{module}.html"
    assert page.is_file(), f"no source page for probcon_ref.{module}"
    links = re.findall(r'href="\.\./\.\./api\.html#([^"]+)"', page.read_text(encoding="utf-8"))
    assert len(links) >= 5, links
    wrong = [a for a in links if not a.startswith(f"probcon_ref.{module}.")]
    assert not wrong, f"back-links not under probcon_ref.{module}: {wrong}"


def test_previous_and_next_links_follow_the_table_of_contents(built_site):
    proc, html = built_site
    order = h.toctree_pages()
    assert len(order) >= 8, order
    rel = re.compile(r'<a href="([^"#]+)\.html" title="(Previous|Next) document">')
    for i, page in enumerate(order):
        text = (html / f"{page}.html").read_text(encoding="utf-8")
        found = {(kind, target) for target, kind in rel.findall(text)}
        expected = set()
        if i > 0:
            expected.add(("Previous", order[i - 1]))
        if i + 1 < len(order):
            expected.add(("Next", order[i + 1]))
        assert found == expected, f"{page}: previous/next links {found}, expected {expected}"
        # Above and below the page.
        assert text.count('<nav id="rellinks">') == 2, page


# ---------------------------------------------------------------------------------------
# The pages' text for the search page
# ---------------------------------------------------------------------------------------


def test_page_text_keeps_the_text_and_the_ids_of_the_main_element():
    page = """<html><head><title>T</title><script>var x = 1;</script></head><body>
<div class="sphinxsidebar">Navigation</div>
<div class="body" role="main"><section id="intro"><h1>Intro<a class="headerlink" href="#intro">¶</a></h1>
<p>Text &amp; <em>more</em> text<br/>after.</p><style>p {}</style>
<img src="x.png" alt="picture"><script>ignored()</script>
<section id="sub"><p>Inner <code>a &lt; b</code></p></section></section></div>
<div class="footer">Footer</div></body></html>"""
    text = probcon_docs.page_text(page)
    # What the browser's textContent of the main element reads, with the elements that carry
    # an id kept (a result's anchor selects its section); the pilcrow, scripts, styles and
    # everything outside the main element gone.
    assert text == ('<div role="main"><div id="intro">Intro\nText &amp; more textafter.\n\n'
                    '<div id="sub">Inner a &lt; b</div></div></div>')


def test_search_text_has_every_page(built_site):
    proc, html = built_site
    path = html / probcon_docs.SEARCH_TEXT
    assert path.is_file(), "searchtext.js was not written"
    body = path.read_text(encoding="utf-8")
    prefix = "window.PROBCON_PAGE_TEXT = "
    data = json.loads(body[body.index(prefix) + len(prefix):].rstrip().rstrip(";"))
    assert set(h.page_names()) <= set(data), sorted(set(h.page_names()) - set(data))
    derivation = data["derivation"]
    assert derivation.startswith('<div role="main">') and 'id="equation-eq-loss"' in derivation
    assert "<pre" not in derivation and "<script" not in derivation
    search = (html / "search.html").read_text(encoding="utf-8")
    assert "_static/probcon_search.js" in search
    assert "probcon_search.js" not in (html / "index.html").read_text(encoding="utf-8")
