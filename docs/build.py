"""Build the documentation site, and optionally open or serve it.

    python3 docs/build.py            # build into docs/_build/html
    python3 docs/build.py --open     # build, then open it in the default browser
    python3 docs/build.py --serve    # build, then serve it on http://127.0.0.1:8000

The build is the one CI runs: warnings are errors (-W), every cross-reference must resolve
(-n, nitpicky), from a fresh environment (-E), with no network access needed. Once the pages
are written, every internal link of the built HTML (page and anchor) is checked by the
site's extension (docs/_ext/probcon_docs.py): a broken one is a warning, so the build fails.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import subprocess
import sys
import webbrowser
from pathlib import Path

DOCS = Path(__file__).resolve().parent
BUILD = DOCS / "_build"


def sphinx_command(outdir: Path, doctreedir: Path, builder: str = "html") -> list[str]:
    """The sphinx-build command line: warnings as errors, nitpicky, fresh environment."""
    return [sys.executable, "-m", "sphinx", "-b", builder, "-W", "--keep-going", "-n", "-E",
            "-q", "-d", str(doctreedir), str(DOCS), str(outdir)]


def build(outdir: Path = BUILD / "html", doctreedir: Path = BUILD / "doctrees") -> int:
    return subprocess.call(sphinx_command(outdir, doctreedir))


def serve(root: Path, port: int) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"Serving {root} on http://127.0.0.1:{port}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", action="store_true", help="open the built site in a browser")
    parser.add_argument("--serve", action="store_true", help="serve the built site on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--out", type=Path, default=BUILD / "html", help="output folder")
    args = parser.parse_args(argv)
    status = build(args.out, args.out.parent / "doctrees")
    if status:
        return status
    index = args.out / "index.html"
    print(f"Built {index}")
    if args.open:
        webbrowser.open(index.resolve().as_uri())
    if args.serve:
        serve(args.out, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
