"""``probcon-ref``: the command-line entry point.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

COMMANDS = {
    "check": ("probcon_ref.check", "run loss and gradient on every backend present and compare with NumPy float64"),
    "validate": ("probcon_ref.testing", "validate another implementation against the reference"),
    "vectors": ("probcon_ref.vectors", "write the portable golden vectors"),
    "bench": ("probcon_ref.bench", "benchmark the loss, the gradient and the special functions"),
    "experiment": ("probcon_ref.experiment", "train on real images and measure the confidence"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probcon-ref", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
