"""Sphinx extension of the probcon_ref documentation.

* Serves MathJax from the built site (no CDN): the MathJax 3 distribution bundled by the
  PyPI package ``sphinx-mathjax-offline`` is copied into ``_static/mathjax``.
* ``generated`` directive: Markdown computed at build time (tables of measured numbers, the
  backends' support table, the API sections of optional modules, command-line help),
  parsed in place. The generators live in :mod:`docs_content`.
* ``optional-include`` directive: includes a Markdown fragment when the file exists and
  shows the directive's content (a placeholder) when it does not.
* ``implementations`` directive: the source of the functions that compute an equation, each
  in a folding ``<details>`` box named by its function (the first open, repeats folded).
* Link check: after the build, every internal ``href`` and ``src`` of the built HTML is
  resolved (page and fragment); each broken one is a warning, so ``-W`` fails the build.
* Search snippets from disk: the plain text of every page is written to ``searchtext.js``,
  and the search page reads its result snippets from it when the pages themselves cannot be
  fetched (a site opened as ``file://``).
* viewcode's "[docs]" back-links: each module's links point to the anchors of that module's
  own entries, also when an object re-exported by the package was documented first.
* Citations: every function of the mathematics cites the equation it computes or says why
  it has none (``docs_content.uncited``); each one that does neither is a warning.
* Figures of the plot directive: a label above ``.. plot::`` names its figure (for
  ``{numref}``), and the figures are numbered 1, 2, 3 ... (the directive's copies for other
  output formats take no number).
"""

from __future__ import annotations

import html
import html.parser
import importlib
import importlib.util
import json
import posixpath
import shlex
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.transforms import SphinxTransform
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


class details(nodes.General, nodes.Element):
    """A folding box: HTML ``<details>``, open when ``node["open"]``."""


class summary(nodes.Part, nodes.TextElement):
    """The always visible line of a :class:`details` box: HTML ``<summary>``."""


def _visit_details_html(self, node: details) -> None:
    attributes = {"open": "open"} if node.get("open") else {}
    self.body.append(self.starttag(node, "details", **attributes))


def _depart_details_html(self, node: details) -> None:
    self.body.append("</details>\n")


def _visit_summary_html(self, node: summary) -> None:
    self.body.append(self.starttag(node, "summary", suffix=""))


def _depart_summary_html(self, node: summary) -> None:
    self.body.append("</summary>\n")


def _pass(self, node: nodes.Node) -> None:
    """Other formats: the box's content, unfolded."""


class ImplementationsDirective(SphinxDirective):
    """``{implementations} LABEL``: the source of every function whose docstring cites LABEL.

    Found by parsing the package (see ``docs_content.implementations``); a label that no code
    cites is reported, so an equation never claims an implementation that is gone.

    Each listing is a ``<details>`` box whose summary names the function (linked to its API
    entry) and its length. The first listing is open, the others folded, so the equation and
    the list of what computes it fit on one screen. A function already listed beside an
    earlier equation of the same page is folded, and its summary says beside which one.
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
        parsed = nodes.container()
        self.state.nested_parse(StringList(text.splitlines(), source=f"<implementations {label}>"),
                                self.content_offset, parsed)
        cites = docs_content.implementations(label)
        wrappers = [n for n in parsed.children if isinstance(n, nodes.container)
                    and n.get("literal_block")]
        if len(wrappers) != len(cites) or len(parsed.children) != len(cites):
            raise self.error(f"implementations {label}: expected {len(cites)} captioned "
                             f"listings, got {[n.tagname for n in parsed.children]}")
        # Per page: the functions listed so far, and the equation they were listed beside.
        listed = self.env.temp_data.setdefault("probcon_listed", {})
        boxes: list[nodes.Node] = []
        for cite, wrapper in zip(cites, wrappers):
            caption = next(n for n in wrapper.children if isinstance(n, nodes.caption))
            block = next(n for n in wrapper.children if isinstance(n, nodes.literal_block))
            key = f"{cite.module}:{cite.qualname}"
            first = listed.setdefault(key, label)
            lines = len(block.astext().splitlines())
            head = summary("", classes=["implementation-summary"])
            head += [child.deepcopy() for child in caption.children]
            head += nodes.Text(" ")
            head += nodes.inline("", f"{lines} lines", classes=["implementation-lines"])
            if first != label:
                head += nodes.Text(" ")
                head += self._inline(f"— listed above, beside {{eq}}`{first}`",
                                     classes=["implementation-repeat"])
            box = details("", classes=["implementation"] + (["repeat"] if first != label else []))
            box += head
            box += block
            boxes.append(box)
        for box in boxes:
            if "repeat" not in box["classes"]:
                box["open"] = True
                break
        container = nodes.container(classes=["implementations"])
        container += boxes
        return [container]

    def _inline(self, markdown: str, classes: list[str]) -> nodes.inline:
        """One line of MyST Markdown, parsed, as an inline node (its paragraph unwrapped)."""
        holder = nodes.container()
        self.state.nested_parse(StringList([markdown], source="<implementations>"),
                                self.content_offset, holder)
        out = nodes.inline("", "", classes=classes)
        for paragraph in holder.findall(nodes.paragraph):
            out += paragraph.children
            break
        return out


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


# ---------------------------------------------------------------------------------------
# Figures of the plot directive: labels and numbers
# ---------------------------------------------------------------------------------------


def _tags(env):
    """The builder's tags (what ``only`` directives test)."""
    tags = getattr(env, "_tags", None)  # Sphinx >= 8.1
    return tags if tags is not None else env.app.tags


class PlotFigureTargets(SphinxTransform):
    """A label before ``.. plot::`` names the plot's figure, so ``{numref}`` can cite it.

    matplotlib's plot directive writes its figure twice, in ``.. only:: html`` and in
    ``.. only:: not html``; a label above the directive lands on the first ``only`` node,
    whose ids are lost when the node is resolved, so the label cites nothing. Here the
    label moves onto the figure inside the ``only`` node that this builder keeps, and the
    figures of the ``only`` nodes it drops lose their implicit ids, so they take no figure
    number (otherwise the numbers of the shown figures skip).
    """

    default_priority = 300  # after PropagateTargets (260); the labels are read afterwards

    def apply(self, **kwargs) -> None:
        tags = _tags(self.env)
        for only in list(self.document.findall(addnodes.only)):
            figures = [f for f in only.findall(nodes.figure)]
            if not figures:
                continue
            try:
                shown = tags.eval_condition(only["expr"])
            except Exception:  # noqa: BLE001 - an expression Sphinx itself will report
                continue
            if not shown:
                for figure in figures:
                    if not figure["names"]:
                        for i in figure["ids"]:
                            self.document.ids.pop(i, None)
                        figure["ids"] = []
                continue
            if only["ids"]:
                figure = figures[0]
                for i in only["ids"]:
                    self.document.ids[i] = figure
                figure["ids"] = only["ids"] + figure["ids"]
                figure["names"] = only["names"] + figure["names"]
                only["ids"], only["names"] = [], []


# ---------------------------------------------------------------------------------------
# viewcode's "[docs]" back-links
# ---------------------------------------------------------------------------------------


def _defining_module(module: str, fullname: str) -> str | None:
    """The module that defines ``module.fullname`` (``__module__``), as viewcode finds it."""
    try:
        obj = importlib.import_module(module)
        for part in fullname.split("."):
            obj = getattr(obj, part)
    except Exception:  # noqa: BLE001 - as viewcode: an object it cannot import has no source link
        return None
    return getattr(obj, "__module__", None)


def _viewcode_backlinks(app: Sphinx, doctree: nodes.document) -> None:
    """Make viewcode's "[docs]" links of every module point at anchors that exist.

    sphinx.ext.viewcode keeps one anchor prefix per module, taken from the first entry that
    it meets for the module: when an object re-exported by the package
    (``probcon_ref.PCLGrads``, defined in ``probcon_ref.loss``) is documented before the
    module itself, every back-link of the module's source page points at
    ``api.html#probcon_ref.<name>``, while the module's entries are anchored at
    ``probcon_ref.loss.<name>``. Runs after viewcode's own handler: the prefix becomes the
    module's name, and an entry documented under another module's name gets the anchor
    ``<defining module>.<name>`` as well, so that its back-link resolves too.
    """
    modules = getattr(app.env, "_viewcode_modules", None)
    if not modules:
        return
    for modname, entry in list(modules.items()):
        if entry and entry[3] != modname:
            modules[modname] = (*entry[:3], modname)
    ids = {i for node in doctree.findall(nodes.Element) for i in node.get("ids", ())}
    for signature in doctree.findall(addnodes.desc_signature):
        module, fullname = signature.get("module"), signature.get("fullname")
        if not module or not fullname:
            continue
        defining = _defining_module(module, fullname)
        alias = f"{defining}.{fullname}"
        if defining and defining != module and alias not in ids:
            signature["ids"].append(alias)
            ids.add(alias)


# ---------------------------------------------------------------------------------------
# The built HTML: link check, and the pages' text for the search page
# ---------------------------------------------------------------------------------------

#: Elements and attributes whose value is a link to check.
LINK_ATTRIBUTES = {("a", "href"), ("area", "href"), ("link", "href"), ("img", "src"),
                   ("script", "src"), ("iframe", "src"), ("source", "src")}


class _PageParser(html.parser.HTMLParser):
    """The anchors (``id``, and ``name`` of ``<a>``) and the links of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: set[str] = set()
        self.links: list[tuple[str, str, int]] = []  # (attribute, value, line)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (name == "name" and tag == "a"):
                self.anchors.add(value)
            if (tag, name) in LINK_ATTRIBUTES:
                self.links.append((name, value, self.getpos()[0]))


@dataclass
class LinkReport:
    """What :func:`check_links` found in a built site."""

    pages: int = 0
    hrefs: int = 0
    srcs: int = 0
    external: int = 0
    broken: list[tuple[str, int, str, str]] = field(default_factory=list)  # page, line, link, why


def _site_pages(outdir: Path) -> list[Path]:
    """Every HTML page Sphinx wrote (the third-party assets under ``_static`` left out)."""
    return sorted(p for p in outdir.rglob("*.html")
                  if p.relative_to(outdir).parts[0] != "_static")


def check_links(outdir: Path) -> LinkReport:
    """Resolve every internal ``href`` and ``src`` of the HTML pages under ``outdir``.

    A link is internal when it has no scheme and no host. Its path must name a file of the
    site (relative to the page), and its fragment, when it has one and the target is a page,
    must be an ``id`` (or an ``<a name>``) of that page.
    """
    outdir = Path(outdir)
    parsed: dict[str, _PageParser] = {}
    for path in _site_pages(outdir):
        parser = _PageParser()
        parser.feed(path.read_text(encoding="utf-8"))
        parser.close()
        parsed[path.relative_to(outdir).as_posix()] = parser
    report = LinkReport(pages=len(parsed))
    for page, parser in parsed.items():
        for attribute, value, line in parser.links:
            split = urllib.parse.urlsplit(value.strip())
            if split.scheme or split.netloc:
                report.external += 1
                continue
            if attribute == "href":
                report.hrefs += 1
            else:
                report.srcs += 1
            path = urllib.parse.unquote(split.path)
            target = page if not path else posixpath.normpath(
                posixpath.join(posixpath.dirname(page), path))
            if target.startswith("../") or target == "..":
                report.broken.append((page, line, value, "outside the site"))
                continue
            file = outdir / target
            if file.is_dir():
                file, target = file / "index.html", posixpath.join(target, "index.html")
            if not file.is_file():
                report.broken.append((page, line, value, f"no file {target}"))
                continue
            fragment = urllib.parse.unquote(split.fragment)
            if fragment and target in parsed and fragment not in parsed[target].anchors:
                report.broken.append((page, line, value, f"no anchor #{fragment} in {target}"))
    return report


def _check_links(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    report = check_links(Path(app.outdir))
    for page, line, link, why in report.broken:
        logger.warning("broken link %s: %s", link, why, location=f"{page}:{line}",
                       type="probcon", subtype="links")
    logger.info("link check: %d pages, %d internal hrefs and %d srcs, %d broken",
                report.pages, report.hrefs, report.srcs, len(report.broken))


#: Elements whose text is no part of a page's text, as Sphinx's search page sees it.
_NO_TEXT = {"script", "style"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


class _MainText(html.parser.HTMLParser):
    """The ``role="main"`` element of a page reduced to its text and the elements with an id.

    What Sphinx's ``Search.htmlToText`` reads from a fetched page: the text of the main
    element (or of the element with the result's anchor inside it), without scripts, styles
    and the pilcrow links (``.headerlink``).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, written) of the open elements
        self.depth_main: int | None = None
        self.skip: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        a = dict(attrs)
        inside = self.depth_main is not None
        if not inside and a.get("role") == "main":
            self.depth_main = len(self.stack)
            self.out.append('<div role="main">')
            self.stack.append((tag, True))
            return
        skip = tag in _NO_TEXT or "headerlink" in (a.get("class") or "").split()
        if inside and self.skip is None and skip:
            self.skip = len(self.stack)
        written = inside and self.skip is None and bool(a.get("id"))
        if written:
            self.out.append(f'<div id="{html.escape(a["id"], quote=True)}">')
        self.stack.append((tag, written))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            open_tag, written = self.stack.pop()
            if written:
                self.out.append("</div>")
            if self.skip is not None and len(self.stack) <= self.skip:
                self.skip = None
            if self.depth_main is not None and len(self.stack) <= self.depth_main:
                self.depth_main = None
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.depth_main is not None and self.skip is None:
            self.out.append(html.escape(data, quote=False))

    def text(self) -> str:
        return "".join(self.out)


def page_text(page_html: str) -> str:
    """The main element of a page as :class:`_MainText` reduces it (HTML, text and ids)."""
    parser = _MainText()
    parser.feed(page_html)
    parser.close()
    return parser.text()


SEARCH_TEXT = "searchtext.js"


def _write_search_text(app: Sphinx, exc: Exception | None) -> None:
    """``searchtext.js``: docname -> the page's main text, for the search page's snippets."""
    if exc is not None or app.builder.name != "html":
        return
    outdir = Path(app.outdir)
    texts = {}
    for docname in sorted(app.env.found_docs):
        path = outdir / app.builder.get_target_uri(docname)
        if path.is_file():
            texts[docname] = page_text(path.read_text(encoding="utf-8"))
    body = json.dumps(texts, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    (outdir / SEARCH_TEXT).write_text(
        "/* The text of every page, for the search page's snippets (probcon_search.js). */\n"
        f"window.PROBCON_PAGE_TEXT = {body};\n", encoding="utf-8")


#: The extension's own static files (the search page's script), copied into ``_static``.
STATIC = Path(__file__).resolve().parent / "static"


def _add_static_path(app: Sphinx) -> None:
    if app.builder.format == "html" and str(STATIC) not in app.config.html_static_path:
        app.config.html_static_path.append(str(STATIC))


def _search_page_scripts(app: Sphinx, pagename: str, templatename: str, context: dict,
                         doctree: nodes.document | None) -> None:
    if pagename == "search":
        app.add_js_file("probcon_search.js")


def _check_citations(app: Sphinx) -> None:
    """Warn (so ``-W`` fails the build) for every function of the mathematics that cites no
    equation and does not say why (the rule of ``docs_content.uncited``)."""
    import docs_content

    for where in docs_content.uncited_definitions():
        logger.warning("%s cites no equation and does not say 'no equation: why', so the pages "
                       "cannot show it beside what it computes", where, type="probcon", subtype="citations")


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-process-docstring", _module_headings_to_rubrics, priority=400)
    app.add_directive("generated", GeneratedDirective)
    app.add_directive("implementations", ImplementationsDirective)
    app.add_directive("optional-include", OptionalIncludeDirective)
    other_formats = {fmt: (_pass, _pass) for fmt in ("latex", "text", "man", "texinfo")}
    app.add_node(details, html=(_visit_details_html, _depart_details_html), **other_formats)
    app.add_node(summary, html=(_visit_summary_html, _depart_summary_html), **other_formats)
    app.add_transform(PlotFigureTargets)
    app.connect("builder-inited", _check_mathjax)
    app.connect("builder-inited", _check_citations)
    app.connect("builder-inited", _add_static_path)
    # After sphinx.ext.viewcode's own doctree-read handler (priority 500).
    app.connect("doctree-read", _viewcode_backlinks, priority=900)
    app.connect("html-page-context", _search_page_scripts)
    app.connect("build-finished", _copy_mathjax)
    # Once every page (and MathJax) is written.
    app.connect("build-finished", _write_search_text, priority=800)
    app.connect("build-finished", _check_links, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
