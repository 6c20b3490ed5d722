"""Sphinx extension of the probcon_ref documentation.

* Serves MathJax from the built site (no CDN): the MathJax 3 distribution bundled by the
  PyPI package ``sphinx-mathjax-offline`` is copied into ``_static/mathjax``.
* ``generated`` directive: Markdown computed at build time (tables of measured numbers, the
  backends' support table, the API sections of optional modules, command-line help),
  parsed in place. The generators live in :mod:`docs_content`.
* ``optional-include`` directive: includes a Markdown fragment when the file exists and
  shows the directive's content (a placeholder) when it does not.
"""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective
from sphinx.util import logging
from sphinx.util.fileutil import copy_asset

logger = logging.getLogger(__name__)

MATHJAX_PACKAGE = "sphinx-mathjax-offline"
MATHJAX_ENTRY = "tex-chtml.js"


def mathjax_source() -> Path:
    """The folder holding the MathJax 3 distribution that is copied into the site."""
    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or spec.origin is None:
        raise ExtensionError(
            f"MathJax is served from the site itself and comes from the PyPI package "
            f"{MATHJAX_PACKAGE!r}; install the docs extra: pip install -e '.[docs]'"
        )
    folder = Path(spec.origin).parent / "static" / "mathjax"
    if not (folder / MATHJAX_ENTRY).is_file():
        raise ExtensionError(f"{MATHJAX_PACKAGE} has no {MATHJAX_ENTRY} under {folder}")
    return folder


def _check_mathjax(app: Sphinx) -> None:
    if app.builder.format == "html":
        mathjax_source()  # fail early, before reading any page


def _copy_mathjax(app: Sphinx, exc: Exception | None) -> None:
    if exc is None and app.builder.format == "html":
        copy_asset(mathjax_source(), Path(app.outdir) / "_static" / "mathjax")


class GeneratedDirective(SphinxDirective):
    """``{generated} NAME [ARG ...]``: Markdown returned by ``docs_content.NAME(*ARGS)``."""

    required_arguments = 1
    optional_arguments = 8
    final_argument_whitespace = True
    has_content = False

    def run(self) -> list[nodes.Node]:
        import docs_content

        name, *args = shlex.split(" ".join(self.arguments))
        generator = docs_content.GENERATORS.get(name)
        if generator is None:
            raise self.error(f"unknown generator {name!r}; known: {sorted(docs_content.GENERATORS)}")
        for path in docs_content.DEPENDENCIES.get(name, ()):
            self.env.note_dependency(str(path))
        text = generator(*args)
        container = nodes.container(classes=["generated", f"generated-{name}"])
        self.state.nested_parse(StringList(text.splitlines(), source=f"<generated {name}>"),
                                self.content_offset, container, match_titles=True)
        return [container]


class OptionalIncludeDirective(SphinxDirective):
    """``{optional-include} PATH``: include PATH (relative to this page) if it exists.

    When it does not, the directive's content is shown instead. Relative image paths in the
    fragment are taken relative to the fragment.
    """

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        rel = self.arguments[0]
        here = Path(self.env.doc2path(self.env.docname)).parent
        path = (here / rel).resolve()
        container = nodes.container(classes=["optional-include"])
        if path.is_file():
            self.env.note_dependency(str(path))
            lines = ["```{include} " + rel, ":relative-images:", "```"]
        else:
            lines = list(self.content)
        self.state.nested_parse(StringList(lines, source=str(path)), self.content_offset, container)
        return [container]


class ImplementationsDirective(SphinxDirective):
    """``{implementations} LABEL``: the source of every function whose docstring cites LABEL.

    Found by parsing the package (see ``docs_content.implementations``); a label that no code
    cites is reported, so an equation never claims an implementation that is gone.
    """

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        import docs_content

        label = self.arguments[0]
        for path in docs_content.PACKAGE.rglob("*.py"):
            self.env.note_dependency(str(path))
        text = docs_content.implementations_markdown(label)
        if not text:
            logger.warning("no function of probcon_ref cites :eq:`%s`", label,
                           location=self.get_location(), type="probcon", subtype="implementations")
            return []
        container = nodes.container(classes=["implementations"])
        self.state.nested_parse(StringList(text.splitlines(), source=f"<implementations {label}>"),
                                self.content_offset, container)
        return container.children


def _module_headings_to_rubrics(app, what, name, obj, options, lines) -> None:
    """Numpydoc-style headings in a *module* docstring ("Examples" over dashes) become rubrics.

    Left alone they are section titles, and two modules on one page with the same heading
    collide ("Duplicate ID"); numpydoc turns such headings into rubrics for functions and
    classes only.
    """
    if what != "module":
        return
    i = 0
    while i + 1 < len(lines):
        title, rule = lines[i].strip(), lines[i + 1].strip()
        if title and len(rule) >= 3 and set(rule) == {"-"} and len(rule) == len(title):
            lines[i:i + 2] = [f".. rubric:: {title}", ""]
        i += 1


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-process-docstring", _module_headings_to_rubrics, priority=400)
    app.add_directive("generated", GeneratedDirective)
    app.add_directive("implementations", ImplementationsDirective)
    app.add_directive("optional-include", OptionalIncludeDirective)
    app.connect("builder-inited", _check_mathjax)
    app.connect("build-finished", _copy_mathjax)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
