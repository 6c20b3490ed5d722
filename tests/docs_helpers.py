"""Helpers of tests/test_docs.py: equation labels, a local HTTP server, headless Chromium.

Also runnable by hand, to look at a built site:

    python3 tests/docs_helpers.py docs/_build/html OUTDIR

writes one full-page screenshot per page into OUTDIR (1400 px wide, and 400 px wide as
PAGE-400.png) and prints what the browser saw, and the layout at 1280 px and 400 px.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "probcon_ref"
CHROMIUM = Path(os.environ.get("PROBCON_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("PROBCON_CHROMEDRIVER", "/usr/bin/chromedriver"))

EQ_ROLE = re.compile(r":eq:`([^`<>]+)`")
# Labelled display math in MyST: "$$ ... $$ (label)", "```{math}" + ":label: x", and RST.
MYST_DOLLAR_LABEL = re.compile(r"^\s*\$\$\s*\(([^)\s]+)\)\s*$", re.M)
LABEL_OPTION = re.compile(r"^\s*:label:\s*(\S+)\s*$", re.M)


def cited_labels() -> dict[str, list[str]]:
    """label -> ["path:line", ...] for every :eq: role in the package's sources."""
    out: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for label in EQ_ROLE.findall(line):
                out.setdefault(label, []).append(f"{path.relative_to(ROOT)}:{lineno}")
    return out


def doc_sources() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*") if p.suffix in {".md", ".rst"}
                  and "_build" not in p.relative_to(DOCS).parts)


#: Folders and files of docs/ that are fragments or tools, never pages of their own.
_NOT_PAGES = {"_build", "_ext", "_static", "_templates", "benchmarks", "experiment", "examples",
              "figures"}
# Inline or display math in MyST: "$x$" (not "$ command"), "$$", or a {math} directive.
_MATH = re.compile(r"\$\$|(?<![\\$])\$[^$\s][^$\n]*\$|\{math\}")
_TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```", re.M | re.S)


def page_names() -> list[str]:
    """The pages of the site: every Markdown source of docs/ that is a page (not a fragment)."""
    return sorted(p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md")
                  if p.name != "README.md" and not set(p.relative_to(DOCS).parts) & _NOT_PAGES)


def math_page_names() -> list[str]:
    """The pages whose source has mathematics (MathJax typesets them in the browser)."""
    return [name for name in page_names()
            if _MATH.search((DOCS / f"{name}.md").read_text(encoding="utf-8"))]


def toctree_pages() -> list[str]:
    """The site's reading order: the index, then the pages of its tables of contents in
    order (what the previous/next links follow)."""
    order = ["index"]
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    for block in _TOCTREE.findall(text):
        for line in block.splitlines():
            entry = line.strip()
            if entry and not entry.startswith(":"):
                # "Title <page>" or "page"
                m = re.fullmatch(r".*<([^<>]+)>|(\S+)", entry)
                name = m.group(1) or m.group(2)
                if name not in order and (DOCS / f"{name}.md").is_file():
                    order.append(name)
    return order


def defined_labels() -> dict[str, list[str]]:
    """label -> ["path:line", ...] for every labelled equation in the docs' sources."""
    out: dict[str, list[str]] = {}
    for path in doc_sources():
        text = path.read_text(encoding="utf-8")
        for pattern in (MYST_DOLLAR_LABEL, LABEL_OPTION):
            for m in pattern.finditer(text):
                lineno = text.count("\n", 0, m.start()) + 1
                out.setdefault(m.group(1), []).append(f"{path.relative_to(ROOT)}:{lineno}")
    return out


# ---------------------------------------------------------------------------------------
# Serving the built site and looking at it in Chromium
# ---------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(root: Path):
    """Serve ``root`` on 127.0.0.1 (a free port) for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def browser_available() -> str | None:
    """None when headless Chromium can be driven here, else the reason why not."""
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.is_file():
        return f"no chromedriver at {CHROMEDRIVER} (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[docs]')"
    return None


@contextlib.contextmanager
def chromium(profile_dir: Path, width: int = 1400, height: int = 1000):
    """A headless Chromium driven by Selenium through the system's chromedriver.

    The driver path is given explicitly, so Selenium Manager never runs (it would try to
    download a driver); the browser is told not to reach any network service of its own.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-default-apps",
                "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                f"--window-size={width},{height}", f"--user-data-dir={profile_dir}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# Waits for MathJax to finish typesetting, then reports what the page shows.
_INSPECT = r"""
const done = arguments[arguments.length - 1];
const start = Date.now();
function report(status) {
  const maths = Array.from(document.querySelectorAll('.math'));
  const untypeset = maths.filter(el => !el.querySelector('mjx-container')).length;
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml')
       .forEach(el => el.remove());
  const text = clone.textContent;
  const raw = [];
  for (const pattern of ['$$', '\\begin', '\\end{', '\\frac', '\\(', '\\[', '\\mu', '\\kappa']) {
    const i = text.indexOf(pattern);
    if (i >= 0) raw.push(text.slice(Math.max(0, i - 40), i + 40));
  }
  // Display equations wider than their box (cut off, or scrolled) at this window size: the
  // equation's block or MathJax's box inside it, whichever scrolls.
  const overflowing = Array.from(document.querySelectorAll('div.math'))
      .filter(el => [el, ...el.querySelectorAll('mjx-container[display="true"]')]
                    .some(box => box.scrollWidth > box.clientWidth + 2))
      .map(el => (el.querySelector('span.eqno') || el).textContent.trim().slice(0, 20));
  done({
    status: status,
    overflowing: overflowing,
    mathjax: (window.MathJax && window.MathJax.version) || null,
    math_elements: maths.length,
    containers: document.querySelectorAll('mjx-container').length,
    untypeset: untypeset,
    errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent),
    raw_tex: raw,
    images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
    height: document.documentElement.scrollHeight,
  });
}
function wait() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise && mj.startup.document) {
    mj.startup.promise.then(() => report('typeset'), e => report('error: ' + e));
  } else if (!document.querySelector('.math')) {
    report('no math');
  } else if (Date.now() - start > 45000) {
    report('timeout');
  } else {
    setTimeout(wait, 50);
  }
}
wait();
"""


def inspect_page(driver, url: str) -> dict:
    """Load ``url``, wait for MathJax, and return what the page shows and logged."""
    driver.get(url)
    result = driver.execute_async_script(_INSPECT)
    result["console"] = [e for e in driver.get_log("browser")]
    result["severe"] = [e for e in result["console"] if e.get("level") == "SEVERE"]
    result["url"] = url
    return result


# What a page's layout is at the current viewport: sideways scrolling, display equations,
# the sidebar's place, the code listings beside the equations, the previous/next links.
_LAYOUT = r"""
const vw = document.documentElement.clientWidth;
const scrolls = el => ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
const clipped = el => {  // inside a box that clips or scrolls it (or hidden)
  for (let e = el.parentElement; e && e !== document.body; e = e.parentElement)
    if (getComputedStyle(e).overflowX !== 'visible') return true;
  return false;
};
const describe = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className.trim()
     ? '.' + el.className.trim().split(/\s+/).join('.') : '');
const label = el => {
  const math = el.closest('div.math');
  const eqno = math && math.querySelector('span.eqno');
  return (eqno ? eqno.textContent : (math || el).textContent).trim().slice(0, 30);
};
const past_edge = [];
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width > 0 && r.right > vw + 1 && !clipped(el))
    past_edge.push(describe(el) + ' right=' + Math.round(r.right));
}
const equations = {total: 0, scrolling: 0, bad: []};
for (const el of document.querySelectorAll('div.math, mjx-container[display="true"]')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0) continue;
  if (el.matches('div.math')) equations.total += 1;
  const wider = el.scrollWidth > el.clientWidth + 1;
  if (wider && scrolls(el)) equations.scrolling += 1;
  if ((r.width > vw + 1 || wider) && !scrolls(el)) equations.bad.push(label(el) + ': not a scroll container');
  else if (r.right > vw + 1 || r.left < -1) equations.bad.push(label(el) + ': past the window edge');
}
let sidebar = null;
const side = document.querySelector('div.sphinxsidebar'), body = document.querySelector('div.body');
if (side && body) {
  const s = side.getBoundingClientRect(), b = body.getBoundingClientRect();
  sidebar = {
    beside: (s.right <= b.left + 1 || s.left >= b.right - 1) && s.top < b.bottom && s.bottom > b.top,
    above: s.bottom <= b.top + 1, below: s.top >= b.bottom - 1,
    sidebar: [s.left, s.top, s.right, s.bottom].map(Math.round),
    body: [b.left, b.top, b.right, b.bottom].map(Math.round),
  };
}
const nav = document.querySelector('details.site-navigation');
const navigation = nav ? {open: nav.open,
    links_shown: Array.from(nav.querySelectorAll('a')).filter(a => a.checkVisibility()).length}
    : null;
const rellinks = Array.from(document.querySelectorAll('nav#rellinks a')).map(a => {
  const r = a.getBoundingClientRect();
  return {title: a.title, href: a.getAttribute('href'),
          visible: r.width > 0 && r.height > 0 && r.left >= -1 && r.right <= vw + 1};
});
// Listings: each one open (the folded ones too), then measured.
const folded = Array.from(document.querySelectorAll('details.implementation')).filter(d => !d.open);
folded.forEach(d => { d.open = true; });
const listings = Array.from(document.querySelectorAll('div.implementations pre'));
const cut = listings.filter(p => p.scrollWidth > p.clientWidth + 1)
    .map(p => describe(p.closest('details') || p) + ' ' + p.scrollWidth + '>' + p.clientWidth);
const sticky = Array.from(document.querySelectorAll('div.annotated > div.math'))
    .filter(el => getComputedStyle(el).position === 'sticky').length;
folded.forEach(d => { d.open = false; });
return {
  width: vw, scroll_width: document.documentElement.scrollWidth,
  client_width: document.documentElement.clientWidth,
  past_edge: past_edge.slice(0, 12), equations: equations, sidebar: sidebar, rellinks: rellinks,
  navigation: navigation,
  listings: listings.length, listings_cut: cut, annotated: document.querySelectorAll('div.annotated').length,
  sticky_equations: sticky, details: document.querySelectorAll('details.implementation').length,
  details_open: document.querySelectorAll('details.implementation[open]').length,
};
"""


def set_viewport(driver, width: int, height: int = 900) -> None:
    """Make the page's viewport exactly ``width`` x ``height`` CSS pixels (DevTools emulation;
    a window cannot be made narrower than the browser allows)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def reset_viewport(driver) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def inspect_layout(driver, url: str, width: int, height: int = 900) -> dict:
    """Load ``url`` at a ``width`` px viewport, wait for MathJax, and measure its layout."""
    set_viewport(driver, width, height)
    typeset = inspect_page(driver, url)
    result = driver.execute_script(_LAYOUT)
    result["status"] = typeset["status"]
    result["url"] = url
    return result


def viewport_screenshot_full(driver, path: Path, width: int, max_height: int = 16000) -> None:
    """A full-page screenshot at a ``width`` px viewport (the current page)."""
    height = min(max_height, int(driver.execute_script("return document.documentElement.scrollHeight")))
    set_viewport(driver, width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


# Waits for the search page's results and their snippets, then reports them.
_SEARCH = r"""
const done = arguments[arguments.length - 1];
const start = Date.now();
function report(status) {
  const items = Array.from(document.querySelectorAll('#search-results li'));
  done({
    status: status,
    results: items.map(li => {
      const a = li.querySelector('a');
      const p = li.querySelector('p.context');
      return [a ? a.getAttribute('href') : null, p ? p.textContent : null];
    }),
    message: (document.querySelector('#search-results p.search-summary') || {}).textContent || null,
  });
}
function wait() {
  const summary = document.querySelector('#search-results p.search-summary');
  const finished = summary && /finished|did not match/i.test(summary.textContent);
  const items = document.querySelectorAll('#search-results li');
  const pending = Array.from(items).filter(li => !li.querySelector('p.context') && !li.querySelector('span')).length;
  if (finished && (pending === 0 || Date.now() - start > 10000)) report('done');
  else if (Date.now() - start > 45000) report('timeout');
  else setTimeout(wait, 100);
}
wait();
"""


def search_results(driver, url: str) -> dict:
    """Open the search page at ``url`` (with ``?q=``) and return its results and snippets."""
    driver.get(url)
    result = driver.execute_async_script(_SEARCH)
    result["console"] = driver.get_log("browser")
    result["severe"] = [e for e in result["console"] if e.get("level") == "SEVERE"]
    return result


def full_page_screenshot(driver, path: Path, width: int = 1400, max_height: int = 16000) -> None:
    height = min(max_height, int(driver.execute_script("return document.documentElement.scrollHeight")))
    driver.set_window_size(width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


def main(argv: list[str]) -> int:
    import tempfile

    site, outdir = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    pages = sorted(p.relative_to(site).as_posix() for p in site.glob("*.html"))
    with tempfile.TemporaryDirectory() as profile, serve(site) as base, chromium(Path(profile)) as driver:
        for page in pages:
            driver.set_window_size(1400, 1000)
            r = inspect_page(driver, f"{base}/{page}")
            full_page_screenshot(driver, outdir / page.replace(".html", ".png"))
            r.pop("console")
            print(page, json.dumps(r))
            for width in (1280, 400):
                print(page, width, json.dumps(inspect_layout(driver, f"{base}/{page}", width)))
            viewport_screenshot_full(driver, outdir / page.replace(".html", "-400.png"), 400)
            reset_viewport(driver)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
