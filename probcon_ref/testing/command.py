"""The command line of ``probcon-ref validate``: the target, the options, the exit status.

``probcon_ref.testing`` exposes :func:`add_arguments` and :func:`run`, which the
``probcon-ref`` entry point calls; the exit status is 0 when every run passes, 1 when one
fails, 2 when the target cannot be loaded or an option is invalid.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Callable

from .cases import EXTRA_PER_ANCHOR
from .convention import DTYPES, FRAMEWORKS, GRADIENTS, KAPPA_MODES, LOSSES, REDUCTIONS
from .validation import validate

__all__ = ["load_callable", "add_arguments", "run"]


def _import_file(module_part: str):
    """The module of a ``.py`` file, imported as ``python path/to/file.py`` would run it: its
    folder first on ``sys.path`` (so that it imports its sibling modules), under a name made
    from its path."""
    path = Path(module_part)
    if not path.is_file():
        where = path.resolve()
        raise ValueError(f"target module file {module_part!r} does not exist (looked for {where})")
    folder = str(path.resolve().parent)
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)
    mod_name = "_probcon_validate_" + "".join(ch if ch.isalnum() else "_" for ch in str(path.resolve()))
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[mod_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise ImportError(f"importing {path} (with {folder} first on sys.path) raised "
                          f"{type(exc).__name__}: {exc}") from exc
    return module


def _import_module(module_part: str):
    """A dotted module, importable from the current directory (put on ``sys.path``) or the
    environment."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_part)
    except ImportError as exc:
        raise ImportError(f"importing module {module_part!r} from the current directory ({cwd}) or the "
                          f"environment raised {type(exc).__name__}: {exc}") from exc


def load_callable(spec: str) -> Callable:
    """``MODULE:CALLABLE`` (dotted module importable from the current directory, or a path to
    a ``.py`` file, whose folder is put first on ``sys.path`` as Python does for a script) to
    the object it names; ``CALLABLE`` may be dotted (``obj.method``)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"target must look like MODULE:CALLABLE (or path/to/file.py:CALLABLE), got {spec!r}")
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr:
        raise ValueError(f"target must look like MODULE:CALLABLE, got {spec!r}")
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        module = _import_file(module_part)
    else:
        module = _import_module(module_part)
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise ValueError(f"{module_part} has no attribute {attr!r}; its public callables: "
                             f"{', '.join(public) or 'none'}") from None
    if not callable(obj):
        raise TypeError(f"{spec} is a {type(obj).__name__}, not a callable")
    return obj


def add_arguments(parser) -> None:
    """The options of ``probcon-ref validate``, added to ``parser``."""
    parser.add_argument("target", help="MODULE:CALLABLE, or path/to/file.py:CALLABLE, the loss function to validate")
    parser.add_argument("--loss", choices=LOSSES, default="pcl",
                        help="pcl: fn(z1, z2, kappa1, kappa2); ntxent: fn(z1, z2, temperature) (default pcl)")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="numpy",
                        help="array type passed to the function (default numpy)")
    parser.add_argument("--device", default=None, help="PyTorch device (default cpu)")
    parser.add_argument("--reduction", choices=REDUCTIONS, default="mean",
                        help="mean or sum over the 2N anchors, none (per-anchor, view 1 first), "
                             "or pair-mean (sum / N) (default mean)")
    parser.add_argument("--kappa", choices=KAPPA_MODES, default="kappa",
                        help="PCL: the function takes kappa, or log-kappa (default kappa)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="NT-Xent: the fixed temperature of fn(z1, z2); omitted: fn(z1, z2, temperature)")
    parser.add_argument("--gradients", choices=GRADIENTS, default="auto",
                        help="returned by the function, autograd (PyTorch's, or jax.grad for --framework jax), "
                             "or none (default auto)")
    parser.add_argument("--dtype", action="append", choices=DTYPES, dest="dtypes",
                        help="float64 and/or float32 (repeatable; default both)")
    parser.add_argument("--case", action="append", dest="cases", metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the battery (default 0)")
    parser.add_argument("--extra-candidates", action="store_true",
                        help=f"also pass each case's extra candidates (a bank of {2 * EXTRA_PER_ANCHOR}N) after the "
                             "batch's arguments: fn(z1, z2, kappa1, kappa2, extra_z, extra_kappa), or extra_z "
                             "for ntxent")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    """``probcon-ref validate``: load the target, validate it, print the report; the exit status."""
    try:
        fn = load_callable(args.target)
    except Exception as exc:
        print(f"probcon-ref validate: cannot load {args.target}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        report = validate(fn, loss=args.loss, framework=args.framework, device=args.device,
                          reduction=args.reduction, kappa=args.kappa, temperature=args.temperature,
                          gradients=args.gradients, dtypes=tuple(args.dtypes or DTYPES),
                          cases=args.cases, seed=args.seed, target=args.target,
                          extra_candidates=args.extra_candidates)
    except (ValueError, TypeError, ImportError) as exc:
        print(f"probcon-ref validate: {exc}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.passed else 1
