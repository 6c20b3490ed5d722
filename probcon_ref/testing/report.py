"""What ``validate`` returns: :class:`Report`, as text for people and as JSON for machines."""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass

import numpy as np

from .. import __version__
from .convention import Convention, grad_keys
from .tolerances import FLUSH_TO_ZERO, ROUNDING, TOLERANCES

#: A float32 failure within this many units of roundoff of the logits' size is at the level
#: of the rounding no float32 implementation avoids (twice the raised tolerance).
ROUNDING_LEVEL = 2 * ROUNDING

__all__ = ["Report"]

_RESULT_WORDS = {"pass": "pass", "fail": "FAIL", "error": "ERROR", "skip": "skip"}


def _group_runs(runs, limit: int = 12) -> str:
    """``[("a", "float64"), ("a", "float32"), ("b", "float32")]`` -> ``"a (float64, float32), b (float32)"``."""
    by_case: dict = {}
    for case, dt in runs:
        by_case.setdefault(case, []).append(dt)
    parts = [f"{c} ({', '.join(sorted(d, reverse=True))})" for c, d in by_case.items()]
    if len(parts) > limit:
        parts = parts[:limit] + [f"and {len(parts) - limit} more case{'s' if len(parts) - limit > 1 else ''}"]
    return ", ".join(parts)


def _labels(conv: Convention) -> dict:
    """Column titles of the gradient blocks."""
    labels = {"z1": "grad z1", "z2": "grad z2", "kappa1": "grad k1", "kappa2": "grad k2"}
    if conv.kappa == "log":
        labels.update({"kappa1": "grad lk1", "kappa2": "grad lk2"})
    return labels


def _row(r, grad_names: tuple, with_m: bool) -> str:
    """One line of the table: a run's errors, its result, and the tolerance if raised (with
    ``with_m``, a column of the extra candidates' count M after d)."""
    cells = []
    for k in ("loss",) + grad_names:
        v = r.errors.get(k)
        cells.append("-" if v is None else ("nan" if math.isnan(v) else f"{v:.1e}"))
    extra = f"  {r.message}" if r.message else ""
    if r.tolerances and r._ref is not None and r._ref.raised:
        tol = [f"loss {r.tolerances['loss']:.1e}"] + (
            [f"gradients {r._ref.grad_tol:.1e}"] if len(r.tolerances) > 1 else [])
        extra += f"  (tol {', '.join(tol)})"
    return (f"{r.case:<24}{r.n:>5}{r.d:>6}" + (f"{r.m:>6}" if with_m else "") + f"  {r.dtype:<8}{cells[0]:>9}"
            + "".join(f"{c:>10}" for c in cells[1:]) + f"  {_RESULT_WORDS[r.status]}{extra}")


def _what_fails(results, grad_names: tuple) -> str:
    """Which quantities fail in how many runs: the loss first, then each gradient block."""
    tried = [r for r in results if r.status != "skip"]
    bad = [r for r in tried if r.status in ("fail", "error")]
    if not bad:
        return ""
    raised = sum(r.status == "error" for r in bad)
    count = {k: sum(k in r.wrong or k in r.nonfinite for r in bad) for k in ("loss",) + grad_names}
    blocks = [k for k in grad_names if count[k]]
    other = [f"{raised} run{'s' if raised != 1 else ''} raise{'s' if raised == 1 else ''}"] if raised else []
    for key, words in (("shape", "the output's shape"), ("dtype", "the output's dtype")):
        n = sum(key in r.wrong for r in bad)
        if n:
            other.append(f"{words} is wrong in {n}")
    n = len(tried)
    if not count["loss"] and not raised:
        head = ("the loss agrees in every run; only the gradient" + ("s" if len(blocks) != 1 else "")
                + " of " + ", ".join(blocks) + " fail" + ("" if len(blocks) != 1 else "s")
                + f" (in {len({r.run for r in bad if set(r.wrong) & set(blocks)})} of {n} runs)") if blocks else ""
    else:
        head = f"the loss in {count['loss']} of {n} runs" + "".join(f"; grad {k} in {count[k]}" for k in blocks)
    return "; ".join(p for p in [head] + other if p)


def _float32_note(results) -> list[str]:
    """Which float32 runs have their tolerance raised for the logits' rounding, and which of
    the failing float32 runs are within the level of that rounding."""
    runs = [r for r in results if r.dtype == "float32" and r._ref is not None and r.status != "skip"]
    if not runs:
        return []
    eps = float(np.finfo(np.float32).eps)
    raised = [r for r in runs if r._ref.raised]
    note = (f"float32: a float32 computation rounds each cosine by about eps32, and kappa (or 1/tau) multiplies "
            f"that: the logits move by up to about eps32 x S (S their size, max_b |log C_d(kappa_b)| + kappa_b or "
            f"1/tau), which no float32 implementation avoids. In {len(raised)} of the {len(runs)} float32 runs that "
            f"exceeds the contract's float32 bounds, and the tolerance is raised to {ROUNDING} eps32 S there "
            "(marked 'tol').")
    failing = [r for r in runs if r.status == "fail" and not r.nonfinite and set(r.wrong) - {"dtype"}]
    if failing:
        level = [r for r in failing if _in_rounding_units(r, eps) <= ROUNDING_LEVEL]
        note += (f" Of the {len(failing)} failing float32 runs with finite results, {len(level)} "
                 f"{'is' if len(level) == 1 else 'are'} within {ROUNDING_LEVEL} eps32 S, the level of that "
                 "rounding" + (f" ({_group_runs([r.run for r in level])})" if level else "")
                 + f", and {len(failing) - len(level)} beyond it, which is more than rounding.")
    return [note]


def _in_rounding_units(r, eps: float) -> float:
    """A run's worst failing error in units of ``eps`` times its logits' largest size."""
    size = float(np.max(r._ref.logit_size))
    worst = max((r.errors[k] for k in r.wrong if k in r.errors), default=0.0)
    return worst / (eps * size)


def _finding_lines(findings) -> list[str]:
    """The diagnoses, wrapped to 100 columns."""
    lines = ["", "Diagnosis:"]
    for f in findings:
        lines += textwrap.wrap(f"* {f.summary}", 100, subsequent_indent="  ")
        lines += textwrap.wrap(f.detail, 100, initial_indent="  ", subsequent_indent="  ")
        if f.runs:
            lines += textwrap.wrap(f"{len(f.runs)} run{'s' if len(f.runs) != 1 else ''}: "
                                   + _group_runs(f.runs), 100, initial_indent="  ",
                                   subsequent_indent="    ")
    return lines


@dataclass
class Report:
    """The outcome of :func:`validate`: per-run results, diagnoses and the verdict."""

    target: str
    convention: Convention
    results: list
    findings: list
    dtypes: tuple

    @property
    def passed(self) -> bool:
        """Whether every run that was tried passed (and one was)."""
        tried = [r for r in self.results if r.status != "skip"]
        return bool(tried) and all(r.status == "pass" for r in tried)

    @property
    def signatures(self) -> list[str]:
        """The signatures of the findings, in the report's order."""
        return [f.signature for f in self.findings]

    def runs(self, status: str | None = None) -> set:
        """The runs ``(case, dtype)``, all or those of one ``status``."""
        return {r.run for r in self.results if status is None or r.status == status}

    def worst(self) -> dict:
        """Worst error of each quantity, by dtype, over the runs that produced finite numbers."""
        out: dict = {}
        for r in self.results:
            for k, v in r.errors.items():
                if math.isfinite(v):
                    cur = out.setdefault(r.dtype, {}).get(k)
                    if cur is None or v > cur:
                        out[r.dtype][k] = v
        return out

    def counts(self) -> dict:
        """How many runs passed, failed, raised and were skipped."""
        return {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "error", "skip")}

    def to_dict(self) -> dict:
        """The whole report as JSON values."""
        conv = self.convention
        return {
            "target": self.target,
            "reference": f"probcon_ref {__version__}",
            "convention": {"loss": conv.loss, "framework": conv.framework, "device": conv.device,
                           "reduction": conv.reduction, "kappa": conv.kappa,
                           "temperature": conv.temperature, "gradients": conv.gradients,
                           "extra_candidates": conv.extra_candidates},
            "tolerances": {dt: {"loss": TOLERANCES[dt][0], "gradient": TOLERANCES[dt][1]} for dt in self.dtypes},
            "rounding": ROUNDING,
            "runs": [r.to_dict() for r in self.results],
            "worst": self.worst(),
            "what_fails": _what_fails(self.results, grad_keys(conv)),
            "diagnoses": [f.to_dict() for f in self.findings],
            "counts": self.counts(),
            "passed": self.passed,
        }

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=1)

    def _head(self) -> list[str]:
        """The lines above the table: target, convention, reference, measure and tolerances."""
        return [f"probcon-ref validate: {self.target}",
                f"convention: {self.convention.describe()}",
                f"reference: probcon_ref {__version__}, NumPy float64, on the same (rounded) inputs"
                + (", with the same extra candidates (M of them, column M; no gradient is taken with respect to them)"
                   if self.convention.extra_candidates else ""),
                "error: loss relative (per anchor for reduction none); gradient block "
                "max_a |got_a - ref_a| / max(block max-norm, terms' scale of row a) (the contract page, section 6)",
                "tolerances: " + "; ".join(f"{dt} loss {TOLERANCES[dt][0]:.0e}, gradients {TOLERANCES[dt][1]:.0e}"
                                          for dt in self.dtypes)
                + f", raised to {ROUNDING} eps x the logits' size where that is larger (marked 'tol')",
                *(["floor: in smallest normal numbers, not subnormals: this framework flushes "
                   "subnormal results to zero"] if self.convention.framework in FLUSH_TO_ZERO else []),
                ""]

    def _summary(self, labels: dict) -> list[str]:
        """How gradients were obtained and the worst errors of each dtype."""
        how = sorted({r.gradients for r in self.results if r.status in ("pass", "fail")})
        if how == ["none"] or not how:
            lines = ["gradients: not checked (none returned, and none taken by autograd)"]
        else:
            lines = ["gradients: " + ", ".join(h for h in how if h != "none")]
        for dt, worst in self.worst().items():
            lines.append(f"worst errors ({dt}): " + ", ".join(
                f"{('loss' if k == 'loss' else labels[k])} {v:.1e}" for k, v in worst.items()))
        for note in _float32_note(self.results):
            lines += textwrap.wrap(note, 100, subsequent_indent="  ")
        return lines

    def to_text(self) -> str:
        """The report as text: the table of runs, the worst errors, the diagnoses, the verdict."""
        grad_names = grad_keys(self.convention)
        labels = _labels(self.convention)
        extra = self.convention.extra_candidates
        head = (f"{'case':<24}{'N':>5}{'d':>6}" + (f"{'M':>6}" if extra else "") + f"  {'dtype':<8}{'loss':>9}"
                + "".join(f"{labels[k]:>10}" for k in grad_names) + "  result")
        lines = self._head() + [head, "-" * len(head)]
        lines += [_row(r, grad_names, extra) for r in self.results]
        lines += [""] + self._summary(labels)
        what = _what_fails(self.results, grad_names)
        if what:
            lines += [""] + textwrap.wrap(f"What fails: {what}.", 100, subsequent_indent="  ")
        if self.findings:
            lines += _finding_lines(self.findings)
        c = self.counts()
        tried = c["pass"] + c["fail"] + c["error"]
        skipped = f", {c['skip']} skipped" if c["skip"] else ""
        lines += ["", f"{c['pass']} of {tried} runs pass ({c['fail']} fail, {c['error']} raise{skipped}): "
                      f"{'PASS' if self.passed else 'FAIL'}"]
        return "\n".join(lines)
