"""``probcon-ref``: the command-line entry point.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Only the module of the command being run is imported, so a command
whose optional dependencies are missing never gets in the way of another one.
The help text is the first paragraph of each module's docstring, with its reStructuredText
markup turned into plain text (:func:`plain_text`).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import re
import sys

from .. import __version__

DESCRIPTION = ("probcon-ref: the reference implementation of the probabilistic contrastive loss "
               "(PCL) and of NT-Xent, with their analytic gradients.")

COMMANDS = {
    "check": ("probcon_ref.tools.check", "run loss and gradient on every backend present and compare with NumPy float64"),
    "validate": ("probcon_ref.testing", "validate another implementation against the reference"),
    "vectors": ("probcon_ref.testing.vectors", "write the portable golden vectors"),
    "bench": ("probcon_ref.tools.bench", "benchmark the loss, the gradient and the special functions"),
    "experiment": ("probcon_ref.experiment", "train on real images and measure the confidence"),
}

_ROLE = re.compile(r":[\w:.+-]+:`(?:[^`<]*<)?~?([^`>]+?)>?`")
_LITERAL = re.compile(r"``(.+?)``")


def plain_text(rst: str) -> str:
    """Docstring text without its reStructuredText markup.

    >>> plain_text("``probcon-ref vectors``: see :func:`~probcon_ref.testing.vectors.load` and :mod:`probcon_ref.testing.oracle`.")
    'probcon-ref vectors: see load and probcon_ref.testing.oracle.'
    """

    def role(m: re.Match) -> str:
        target = m.group(1)
        return target.rsplit(".", 1)[-1] if m.group(0).split("`", 1)[1].startswith("~") else target

    return _LITERAL.sub(r"\1", _ROLE.sub(role, rst))


def _first_paragraph(module: str) -> str | None:
    """The first paragraph of a module's docstring, read from its source (nothing is imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    with open(spec.origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    if not doc:
        return None
    return plain_text(" ".join(doc.split("\n\n", 1)[0].split()))


def _chosen_command(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), if any."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the options of the command named in ``argv`` are added (all when ``None``)."""
    chosen = None if argv is None else _chosen_command(argv)
    parser = argparse.ArgumentParser(
        prog="probcon-ref", description=DESCRIPTION,
        epilog="Run 'probcon-ref COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=_first_paragraph(module) or help_text)
        p.set_defaults(_module=module)
        if argv is None or name == chosen:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
