"""Markdown generated at build time for the ``{generated}`` directive.

Each generator returns MyST Markdown. Numbers come from :mod:`docs_data` (computed from the
code), tables of declarations from the repository's files; nothing is typed in.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra brings tomli, the same parser
    import tomli as tomllib

import numpy as np

import docs_data

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "probcon_ref"
BACKENDS_TOML = PACKAGE / "tools" / "backends.toml"
EQ_ROLE = re.compile(r":eq:`([^`<>]+)`")

#: The API page's groups of modules documented when they import, each module with one line
#: saying what it is: the public API a user calls, then the maintainers' tools. A public
#: module of the package that is in no group, in no section written on the page itself
#: (``REFERENCE_MODULES``) and not skipped is appended to the last group.
API_GROUPS = {
    "torch": {
        "probcon_ref.torch": "The PyTorch integration: custom operators, modules and the memory bank.",
        "probcon_ref.torch.distributed": "The exact loss over the processes of a `torch.distributed` group.",
    },
    "jax": {
        "probcon_ref.jax": "The JAX integration: custom-VJP losses and the special functions under `jax.jit`.",
    },
    "testing": {
        "probcon_ref.testing": "Validating another implementation against the reference.",
        "probcon_ref.testing.vectors": "Portable golden vectors.",
        "probcon_ref.testing.oracle": "The 50-digit evaluation the golden vectors come from.",
        "probcon_ref.testing.diagnose": "The mistakes `validate` recognises.",
    },
    "tools": {
        "probcon_ref.tools.check": "The `probcon-ref check` command.",
        "probcon_ref.tools.bench": "The `probcon-ref bench` command.",
        "probcon_ref.tools.bench_device": "The benchmark's GPU section.",
        "probcon_ref.tools.bench_jax": "The benchmark's JAX section.",
        "probcon_ref.tools.bench_training": "The benchmark's training section (PyTorch steps and the memory bank).",
        "probcon_ref.tools.baselines": "What the benchmark compares with.",
        "probcon_ref.experiment": "The `probcon-ref experiment` command.",
    },
}

#: Modules the API page documents in full, internals included: the reference itself, whose
#: functions the derivation pages show beside their equations.
REFERENCE_MODULES = ("probcon_ref", "probcon_ref.loss", "probcon_ref.gradient", "probcon_ref.special",
                     "probcon_ref.tables", "probcon_ref.cupy")

#: Modules never given an API section (entry points and plumbing).
SKIPPED_MODULES = {"probcon_ref.tools", "probcon_ref.tools.cli", "probcon_ref.__main__"}



def _fmt(x: float) -> str:
    """A float in short scientific notation, for tables."""
    if x == 0:
        return "0"
    if not np.isfinite(x):
        return str(x)
    return f"{x:.1e}"


def _tex_number(x: float) -> str:
    """``x`` to 4 significant digits in TeX: ``4.217 \\times 10^{5}`` rather than ``4.217e+05``."""
    text = f"{x:.4g}"
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa} \\times 10^{{{int(exponent)}}}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    def row(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [row(header), "|" + "---|" * len(header)] + [row(r) for r in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Special functions
# ---------------------------------------------------------------------------------------


def scipy_ratio_note() -> str:
    theirs = docs_data.scipy_ratio_error()
    s = docs_data.special_accuracy()
    ours = float(np.max(s.errors[("ratio", "float64")]))
    return (f"On the same grid as the accuracy study below, the ratio "
            f"`ive(nu + 1, x) / ive(nu, x)` has a worst relative error of {_fmt(theirs)} "
            f"where it is finite; {{func}}`~probcon_ref.special.bessel_ratio` has "
            f"{_fmt(ours)}.\n")


# ---------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------


def gradient_check_table() -> str:
    z1, z2, k1, k2 = docs_data.example_batch()
    res = docs_data.gradient_check()
    n, d = z1.shape
    head = (f"Batch of $N = {n}$ pairs in $d = {d}$, concentrations from "
            f"{min(k1.min(), k2.min()):.2g} to {max(k1.max(), k2.max()):.3g}, mean reduction, "
            "float64; central differences with step $10^{-6}\\max(1, |v|)$.\n\n")
    rows = [[f"`{k}`", _fmt(v)] for k, v in res.items()]
    return head + _table(["block", "max-norm difference / max-norm of the block"], rows)


def ntxent_limit_summary() -> str:
    r = docs_data.ntxent_limit()
    return (f"For a batch of $N = {r['n']}$ pairs in $d = {r['d']}$ with $\\tau = {r['temperature']:g}$: "
            f"setting every $\\kappa_b = 1/\\tau$ gives a PCL whose relative difference from "
            f"NT-Xent is {_fmt(r['exact_rel_diff'])}; with one common $\\kappa$ between "
            f"{r['kappas'][0]:g} and {r['kappas'][-1]:g} against NT-Xent at $\\tau = 1/\\kappa$, "
            f"the largest relative difference is {_fmt(float(np.max(r['common_rel_diff'])))}.\n")


# ---------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    text = str(value)
    return f"`{text}`" if text else ""


def _declarations() -> dict | None:
    """The package's backend declaration as written: the defaults and each backend's overrides apart."""
    if not BACKENDS_TOML.is_file():
        return None
    with BACKENDS_TOML.open("rb") as f:
        return tomllib.load(f)


def backends_table() -> str:
    data = _declarations()
    if data is None or not data.get("backends"):
        return ("No backends are declared yet: the repository has no "
                "`probcon_ref/tools/backends.toml`, or it declares none.\n")
    rows = []
    known = {"module", "namespace", "install", "dtypes", "half_dtypes", "devices", "tolerances"}
    extra_keys: list[str] = []
    for spec in data["backends"].values():
        extra_keys += [k for k in spec if k not in known and k not in extra_keys]
    for backend, spec in data["backends"].items():
        devices = spec.get("devices") or {"": {}}
        for device, dev in devices.items():
            install = dev.get("install", spec.get("install", ""))
            overrides = spec.get("tolerances", {})
            rows.append([
                f"`{backend}`", f"`{device}`" if device else "", _cell(dev.get("name", "")),
                _cell(spec.get("dtypes", [])), _cell(spec.get("half_dtypes", [])),
                "yes" if dev.get("gpu") else "no", _cell(install),
                _cell(overrides) if overrides else "defaults",
            ] + [_cell(spec.get(k, "")) for k in extra_keys])
    header = ["backend", "device", "name", "computed in", "half precisions (in float32)",
              "needs a GPU", "install", "tolerances"] + extra_keys
    return _table(header, rows)


def tolerances_table() -> str:
    """Each dtype's default consistency bounds: the contract's (probcon_ref.tools.declarations.spec_defaults)
    overlaid by what backends.toml declares."""
    from probcon_ref.tools.declarations import spec_defaults

    data = _declarations()
    declared = (data or {}).get("tolerances")
    if not declared:
        return "No tolerances are declared yet.\n"
    tol = {dtype: {**spec_defaults(dtype), **row} for dtype, row in declared.items()}
    keys: list[str] = []
    for t in tol.values():
        keys += [k for k in t if k not in keys]
    rows = [[f"`{dtype}`"] + [_fmt(float(t[k])) if k in t else "" for k in keys]
            for dtype, t in tol.items()]
    return _table(["dtype"] + [f"`{k}`" for k in keys], rows)


# ---------------------------------------------------------------------------------------
# The contract's tolerances and the regimes, as probcon_ref.testing holds them
# ---------------------------------------------------------------------------------------


#: The labels of the contract page's sections (docs/contract.md), by section number.
CONTRACT_SECTIONS = {1: "contract-notation", 2: "contract-derivation", 3: "contract-loss",
                     4: "contract-gradient", 5: "contract-special", 6: "contract-accuracy",
                     7: "contract-inputs"}


def contract_link(section: int) -> str:
    """A MyST link to section ``section`` of the contract page."""
    return f"{{ref}}`{section} <{CONTRACT_SECTIONS[section]}>`"


def spec_tolerances_table() -> str:
    """The contract's accuracy bounds (its sections 5 and 6), the rows of ``probcon_ref.testing.tolerances``, and how
    ``validate`` widens them where the logits are large."""
    from probcon_ref.testing.tolerances import ROUNDING, SPEC_BOUNDS, SUBNORMALS

    rows = [[f"`{b.quantity}`", b.measure, _fmt(b.float64), _fmt(b.float32), contract_link(b.section)]
            for b in SPEC_BOUNDS]
    note = ("\nfloat64: against a 50-digit evaluation. float32: the loss and the gradient blocks against "
            "the float64 result on the same inputs, the special functions against 50 digits at the "
            "float32 argument. `validate` raises the loss and gradient bounds to "
            f"${ROUNDING}\\,\\varepsilon S$ where the logits' size $S$ makes that larger, and holds a "
            f"per-anchor loss to an absolute floor of {SUBNORMALS} smallest subnormals of the output "
            "dtype per candidate.\n")
    return _table(["quantity", "error", "float64", "float32", "contract section"], rows) + note


def regimes_table() -> str:
    """The regimes of ``probcon_ref.testing.regimes``, and the cases of ``validate``'s battery
    and of the golden set that exercise each."""
    from probcon_ref.testing import battery, regimes, vectors

    def names(cases):
        return ", ".join(f"`{c}`" for c in cases) or "none"

    def in_battery(loss, key):
        """The battery's cases of regime ``key``, or, for a regime only extra candidates give, all."""
        plain = [c.name for c in battery(loss) if key in c.tags]
        if plain or not all(key in c.tags for c in battery(loss, extra_candidates=True)):
            return names(plain)
        return "every case, with `--extra-candidates`"

    rows = []
    for r in regimes.REGIMES:
        rows.append([f"`{r.key}`", r.description, contract_link(r.section),
                     ", ".join({"pcl": "PCL", "ntxent": "NT-Xent"}[x] for x in r.losses) if r.required else "",
                     in_battery("pcl", r.key), in_battery("ntxent", r.key),
                     names(c.name for c in vectors.CASES if r.key in c.regimes)])
    return _table(["regime", "what holds there", "contract section", "required for", "validate, PCL",
                   "validate, NT-Xent", "golden vectors"], rows)


# ---------------------------------------------------------------------------------------
# API of optional modules, command-line help
# ---------------------------------------------------------------------------------------


def _public_modules() -> list[str]:
    import probcon_ref

    found = [f"probcon_ref.{m.name}" for m in pkgutil.iter_modules(probcon_ref.__path__)
             if not m.name.startswith("_")]
    return sorted(found)


def _grouped() -> set[str]:
    return {m for group in API_GROUPS.values() for m in group}


def api_group_modules(group: str) -> list[str]:
    """The modules of ``group`` that import here, in order (the last group takes the strays)."""
    present = [m for m in API_GROUPS[group] if importlib.util.find_spec(m) is not None]
    if group == list(API_GROUPS)[-1]:
        known = _grouped() | set(REFERENCE_MODULES) | SKIPPED_MODULES
        present += [m for m in _public_modules() if m not in known]
    return present


def _api_modules() -> list[str]:
    return [m for group in API_GROUPS for m in api_group_modules(group)]


def api_group(group: str) -> str:
    """The API of the modules of ``group``: each one's public members, as ``__all__`` names them."""
    modules = api_group_modules(group)
    if not modules:
        return f"Not installed where this site was built: {', '.join(f'`{m}`' for m in API_GROUPS[group])}.\n"
    out = []
    for m in modules:
        out.append(f"### `{m}`\n")
        if m in API_GROUPS[group]:
            out.append(API_GROUPS[group][m] + "\n")
        out.append(f"```{{eval-rst}}\n.. automodule:: {m}\n   :members:\n```\n")
    return "\n".join(out)


def cli_help(command: str = "") -> str:
    import os

    from probcon_ref.tools import cli

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"  # argparse wraps to the terminal; make the page reproducible
    try:
        parser = cli.build_parser()
        return _help_text(parser, command)
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _help_text(parser, command: str) -> str:
    if not command:
        return "```text\n" + parser.format_help() + "```\n"
    sub = next(a for a in parser._actions if a.dest == "command")
    if command not in sub.choices:
        return (f"`probcon-ref {command}` is not part of this version of the package; its "
                "reference will appear here when it is.\n")
    return "```text\n" + sub.choices[command].format_help() + "```\n"


# ---------------------------------------------------------------------------------------
# Which code cites which equation
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Citation:
    """A function, class or method whose docstring cites equation ``label``."""

    label: str
    module: str  # probcon_ref.loss
    qualname: str  # pcl_logits, or Class.method
    path: Path
    line: int
    entry_point: bool  # listed in its module's __all__ (or the package's)

    @property
    def target(self) -> str:
        return f"{self.module}.{self.qualname}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _dunder_all(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            try:
                return set(ast.literal_eval(node.value))
            except ValueError:
                return set()
    return set()


@lru_cache(maxsize=None)
def equation_citations() -> tuple[Citation, ...]:
    """Every ``:eq:`` citation in a docstring of the package, by source order."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        module = _module_name(path)
        public = _dunder_all(tree)

        def visit(body, prefix=""):
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qual = prefix + node.name
                    doc = ast.get_docstring(node) or ""
                    labels = dict.fromkeys(EQ_ROLE.findall(doc))
                    for label in labels:
                        out.append(Citation(label, module, qual, path, node.lineno,
                                            not prefix and node.name in public))
                    if isinstance(node, ast.ClassDef):
                        visit(node.body, qual + ".")

        visit(tree.body)
    return tuple(out)


def implementations(label: str) -> list[Citation]:
    """The code shown beside equation ``label``.

    The functions whose docstrings cite it, leaving out the public entry points (listed in a
    ``__all__``), which combine many equations, unless nothing else cites the label.
    """
    cites = [c for c in equation_citations() if c.label == label]
    inner = [c for c in cites if not c.entry_point]
    return inner or cites


def _package_name(c: Citation) -> str | None:
    """``probcon_ref.X`` when the cited object is the package's own export ``X``."""
    import probcon_ref

    top = c.qualname.split(".")[0]
    if top in getattr(probcon_ref, "__all__", ()) and c.module != "probcon_ref":
        try:
            if getattr(probcon_ref, top) is getattr(importlib.import_module(c.module), top):
                return f"probcon_ref.{c.qualname}"
        except AttributeError:
            return None
    return None


def is_documented(c: Citation) -> bool:
    """Whether the API page has an entry for the cited object (so a link to it resolves)."""
    if _package_name(c):
        return True
    if c.module in REFERENCE_MODULES:
        return True
    if c.module in _api_modules():
        try:
            obj = _resolve(c)
        except AttributeError:
            return False
        top = c.qualname.split(".")[0]
        public = getattr(importlib.import_module(c.module), "__all__", None)
        return (top in public) if public is not None else not top.startswith("_") and (
            getattr(obj, "__doc__", None) is not None)
    return False


def _link(c: Citation) -> str:
    if not is_documented(c):
        return f"`{c.target}`"
    return f"{{py:obj}}`{_package_name(c) or c.target}`"


# ---------------------------------------------------------------------------------------
# Every function of the mathematics cites its equation, or says why it has none
# ---------------------------------------------------------------------------------------

#: The citation rule: every function and class of these modules (the mathematics), private
#: ones too, cites the equation it computes (``:eq:`label```) or says ``no equation:`` (or
#: ``no equation of its own:``) and why; so do the public names (``__all__``) of
#: ``PUBLIC_MODULES``. The pages find the code beside each equation by these citations.
MATH_MODULES = ("loss.py", "gradient.py", "special.py")

PUBLIC_MODULES = ("__init__.py", "tables.py", "torch/__init__.py", "torch/distributed.py", "jax/__init__.py",
                  "jax/_special.py", "cupy/__init__.py")

NO_EQUATION = re.compile(r"\bno equation( of its own)?: \S", re.I)


def _citation_definitions(tree: ast.Module, *, methods: bool):
    """Top-level functions and classes, and (with ``methods``) the methods of those classes."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name, node
            if methods and isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                        yield f"{node.name}.{item.name}", item


def uncited(path: Path, *, public_only: bool) -> list[str]:
    """The definitions of ``path`` whose docstring neither cites an equation nor says why not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exported = _dunder_all(tree)
    missing = []
    for name, node in _citation_definitions(tree, methods=not public_only):
        if public_only and name not in exported:
            continue
        doc = ast.get_docstring(node) or ""
        if not (EQ_ROLE.search(doc) or NO_EQUATION.search(doc)):
            missing.append(name)
    return missing


def uncited_definitions() -> list[str]:
    """``module: name`` of every definition that breaks the citation rule (empty when it holds).

    The build warns about each (so ``-W`` fails it), and ``tests/test_equation_citations.py``
    holds the same rule.
    """
    out = []
    for modules, public_only in ((MATH_MODULES, False), (PUBLIC_MODULES, True)):
        for module in modules:
            out += [f"probcon_ref/{module}: {name}" for name in uncited(PACKAGE / module, public_only=public_only)]
    return out


#: Pages in the order of the site's table of contents (equations are numbered in this order).
PAGE_ORDER = ("derivation", "gradient", "special-functions", "properties")


def _definition_order(label: str) -> tuple[int, int]:
    """(page, position) of the equation's definition, for sorting; unknown labels last."""
    docs = ROOT / "docs"
    pages = [docs / f"{p}.md" for p in PAGE_ORDER]
    pages += sorted(p for p in docs.glob("*.md") if p not in pages)
    for i, page in enumerate(pages):
        m = re.search(r"^\$\$\s*\(" + re.escape(label) + r"\)\s*$", page.read_text(encoding="utf-8"), re.M)
        if m:
            return i, m.start()
    return len(pages), 0


def equation_index() -> str:
    """A table: each cited label, its equation, and the objects that cite it."""
    by_label: dict[str, list[Citation]] = {}
    for c in equation_citations():
        by_label.setdefault(c.label, []).append(c)
    rows = []
    for label, cites in sorted(by_label.items(), key=lambda kv: _definition_order(kv[0])):
        shown = {x.target for x in implementations(label)}
        beside = ", ".join(_link(c) for c in cites if c.target in shown)
        also = ", ".join(_link(c) for c in cites if c.target not in shown)
        rows.append([f"{{eq}}`{label}`", f"`{label}`", beside, also])
    return _table(["equation", "label", "computed by (shown beside it)", "also cited by"], rows)


def _resolve(c: Citation):
    obj = importlib.import_module(c.module)
    for part in c.qualname.split("."):
        obj = getattr(obj, part)
    return obj


def implementations_markdown(label: str) -> str:
    """literalinclude blocks of the code beside equation ``label`` (relative to docs/)."""
    blocks = []
    for c in implementations(label):
        rel = Path("..") / c.path.relative_to(ROOT)
        blocks.append(
            f"```{{literalinclude}} {rel.as_posix()}\n:language: python\n"
            f":pyobject: {c.qualname}\n:caption: {_link(c)}\n```\n")
    return "\n".join(blocks)


GENERATORS = {
    "scipy_ratio_note": scipy_ratio_note,
    "gradient_check_table": gradient_check_table,
    "ntxent_limit_summary": ntxent_limit_summary,
    "backends_table": backends_table,
    "tolerances_table": tolerances_table,
    "spec_tolerances_table": spec_tolerances_table,
    "regimes_table": regimes_table,
    "api_group": api_group,
    "cli_help": cli_help,
    "equation_index": equation_index,
}

#: Files a generator reads: a change to them rebuilds the page.
DEPENDENCIES = {"backends_table": (BACKENDS_TOML,), "tolerances_table": (BACKENDS_TOML,)}


def _page_generators() -> None:
    """Add the generators of the per-page modules ``docs/_ext/generated_*.py``.

    Each such module defines its own ``GENERATORS`` (and optionally ``DEPENDENCIES``); a
    name defined twice is an error, so two pages never silently share one generator name.
    """
    for path in sorted(Path(__file__).resolve().parent.glob("generated_*.py")):
        module = importlib.import_module(path.stem)
        clash = set(GENERATORS) & set(module.GENERATORS)
        if clash:
            raise RuntimeError(f"{path.name} redefines the generators {sorted(clash)}")
        GENERATORS.update(module.GENERATORS)
        DEPENDENCIES.update(getattr(module, "DEPENDENCIES", {}))


_page_generators()
