"""Sphinx configuration of the probcon_ref documentation.

Build (warnings are errors, nitpicky, offline): ``python docs/build.py`` — see that file.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import probcon_ref  # noqa: E402  (the installed package: pip install -e ".[docs]")

project = "probcon_ref"
author = "the probcon_ref authors"
copyright = "the probcon_ref authors"
version = release = probcon_ref.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
    "probcon_docs",
    "probcon_api",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
# Fragments written by other tools are included by pages, never built on their own.
exclude_patterns = ["_build", "benchmarks/**", "experiment/**", "README.md"]
templates_path = ["_templates"]

# --- MyST: math with $...$ / $$...$$ (label), amsmath environments, ::: fences ------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# --- Math: numbered equations, MathJax served by the site itself (probcon_docs) -----------
math_number_all = False
math_eqref_format = "({number})"
math_numfig = True
numfig = True
mathjax_path = "mathjax/tex-chtml.js"
# Sphinx numbers the labelled equations itself; MathJax only typesets.
mathjax3_config = {"tex": {"tags": "none"}}

# --- API reference ------------------------------------------------------------------------
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options: dict[str, object] = {}
autosummary_generate = False  # numpydoc loads autosummary; this site has no stub pages
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
add_module_names = True

# --- Cross-references: nitpicky, offline (no intersphinx) --------------------------------
nitpicky = True
# Names from the standard library and the array libraries: an offline build has no
# inventory to link them to (no intersphinx). Everything of probcon_ref must resolve.
_EXTERNAL = r"(array|array-like|optional|callable|Module|Tensor|Fraction|Path|NamedTuple|Any|(np|numpy|torch|cupy|scipy|mpmath|array_api_compat|array_api_strict|typing|collections|dataclasses|fractions|pathlib)\..*)"
nitpick_ignore_regex = [
    (r"py:(class|obj|data|func|meth|exc)", _EXTERNAL),
    (r"py:mod", r"(?!probcon_ref\b).*"),
    # Private modules are not part of the API reference unless the API page documents them.
    (r"py:mod", r"probcon_ref\._\w+"),
    # Objects of private modules (probcon_ref._inputs.Batch, probcon_ref.torch._autograd...),
    # cited by docstrings for the reader of the source: shown as names, not links.
    (r"py:(class|func|obj|data|meth)", r"probcon_ref(\.[a-z]\w*)*\._\w+\..+"),
]

# --- Figures computed at build time --------------------------------------------------------
plot_basedir = str(HERE)
plot_formats = [("png", 110)]
plot_html_show_formats = False
plot_html_show_source_link = True
plot_include_source = False
plot_pre_code = "import numpy as np\nimport matplotlib.pyplot as plt\n"
plot_rcparams = {
    "figure.figsize": (7.0, 3.6),
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.bbox": "tight",
}

# --- HTML ------------------------------------------------------------------------------------
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["probcon.css"]
html_js_files = [("probcon.js", {"defer": "defer"})]
html_favicon = "_static/favicon.svg"
html_title = "probcon_ref"
html_theme_options = {
    # alabaster stacks the sidebar above the page at this width and below (its one media
    # query); the page itself is as wide as the window, up to the max-width of probcon.css.
    "page_width": "1000px",
    "sidebar_width": "220px",
    "description": "Probabilistic contrastive loss: the derivation beside the code",
    # The sidebar comes first in the page: beside the text on wide screens (where it stays in
    # view while the page scrolls), above it on narrow ones.
    "fixed_sidebar": True,
    # Previous / next links above and below every page.
    "show_relbars": True,
}
html_sidebars = {"**": ["about.html", "probcon-navigation.html", "searchbox.html"]}
html_copy_source = False
html_show_sourcelink = False
