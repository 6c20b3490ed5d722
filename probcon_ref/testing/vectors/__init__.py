"""``probcon-ref vectors``: portable golden vectors for the PCL and NT-Xent.

A versioned set of small cases covering every regime of the contract, section :ref:`6 <contract-accuracy>`, each stored as
``NAME.npz`` (plain float64 arrays, readable with ``numpy.load(..., allow_pickle=False)``)
and ``NAME.json`` (the same numbers as JSON, each float64 written so that it reads back
exactly), plus ``manifest.json`` and a ``README.md`` that explains the format. The outputs
(loss, per-anchor losses, every gradient) are computed at 50 significant digits by
:mod:`probcon_ref.testing.oracle` and rounded to float64 once, so an implementation in any language
can test itself without Python. The last few cases hold extra candidates (a memory bank:
``extra_z`` and, for the PCL, ``extra_kappa``), and their manifest entries say how many (``m``).

The set ships with the package (``probcon_ref/testing/golden``): ``probcon-ref vectors DIR``
writes it out; ``--recompute`` rebuilds every case's inputs from its seed and evaluates it
again at 50 digits (needs mpmath; a few seconds), which reproduces the shipped numbers bit for
bit on any machine. :func:`load` reads a written set and checks it against its manifest.

The parts: the inputs built from integers (``inputs``), the cases and their outputs
(``cases``), the file format (``fileformat``), reading a set (``reading``) and writing one
(``writing``); the command line is here.
"""

from __future__ import annotations

from .cases import CASES, CaseSpec, case_inputs, compute
from .fileformat import (FORMAT, NTXENT_INPUTS, NTXENT_OUTPUTS, PCL_INPUTS, PCL_OUTPUTS, VERSION, GoldenCase,
                         GoldenVectorError, shipped_directory)
from .inputs import Stream
from .reading import load
from .writing import write

__all__ = ["FORMAT", "VERSION", "CASES", "GoldenCase", "GoldenVectorError", "Stream", "case_inputs", "compute",
           "load", "write", "shipped_directory"]


def add_arguments(parser) -> None:
    """The options of ``probcon-ref vectors``, added to ``parser``."""
    parser.add_argument("directory", nargs="?", help="where to write the vectors (created if missing)")
    parser.add_argument("--recompute", action="store_true",
                        help="evaluate the cases again at 50 digits (needs mpmath) instead of "
                             "writing the shipped values")
    parser.add_argument("--case", action="append", dest="cases", metavar="NAME",
                        help="write only this case (repeatable)")
    parser.add_argument("--format", choices=("both", "npz", "json"), default="both",
                        help="file formats to write (default both)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")


def run(args) -> int:
    """``probcon-ref vectors``: write (or list) the golden set; the exit status."""
    if args.list:
        for spec in CASES:
            print(f"{spec.name:<24} {spec.loss:<7} {spec.description}")
        return 0
    if not args.directory:
        print("probcon-ref vectors: a target directory is required (or --list)")
        return 2
    formats = ("npz", "json") if args.format == "both" else (args.format,)
    try:
        metas = write(args.directory, recompute=args.recompute, names=args.cases, formats=formats,
                      progress=(lambda name: print(f"  {name}", flush=True)) if args.recompute else None)
    except ValueError as exc:
        print(f"probcon-ref vectors: {exc}")
        return 2
    how = "computed at 50 digits" if args.recompute else "shipped"
    print(f"wrote {len(metas)} golden cases ({how}, format version {VERSION}) to {args.directory}")
    return 0

