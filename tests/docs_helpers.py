"""Helpers of tests/test_docs.py: equation labels, a local HTTP server, headless Chromium.

Also runnable by hand, to look at a built site:

    python3 tests/docs_helpers.py docs/_build/html OUTDIR

writes one full-page screenshot per page into OUTDIR and prints what the browser saw.
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
  // Display equations wider than their box (cut off, or scrolled) at this window size.
  const overflowing = Array.from(document.querySelectorAll('div.math'))
      .filter(el => el.scrollWidth > el.clientWidth + 2)
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
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
