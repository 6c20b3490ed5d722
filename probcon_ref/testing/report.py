"""What ``validate`` returns: :class:`Report`, as text for people and as JSON for machines."""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass

from .. import __version__
from .convention import Convention, grad_keys
from .tolerances import ROUNDING, TOLERANCES

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


def _row(r, grad_names: tuple) -> str:
    """One line of the table: a run's errors, its result, and the tolerance if raised."""
    cells = []
    for k in ("loss",) + grad_names:
        v = r.errors.get(k)
        cells.append("-" if v is None else ("nan" if math.isnan(v) else f"{v:.1e}"))
    extra = f"  {r.message}" if r.message else ""
    if r.tolerances and r._ref is not None and r._ref.raised:
        tol = [f"loss {r.tolerances['loss']:.1e}"] + (
            [f"gradients {r._ref.grad_tol:.1e}"] if len(r.tolerances) > 1 else [])
        extra += f"  (tol {', '.join(tol)})"
    return (f"{r.case:<24}{r.n:>5}{r.d:>6}  {r.dtype:<8}{cells[0]:>9}"
            + "".join(f"{c:>10}" for c in cells[1:]) + f"  {_RESULT_WORDS[r.status]}{extra}")


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
                           "temperature": conv.temperature, "gradients": conv.gradients},
            "tolerances": {dt: {"loss": TOLERANCES[dt][0], "gradient": TOLERANCES[dt][1]} for dt in self.dtypes},
            "rounding": ROUNDING,
            "runs": [r.to_dict() for r in self.results],
            "worst": self.worst(),
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
                f"reference: probcon_ref {__version__}, NumPy float64, on the same (rounded) inputs",
                "error: loss relative (per anchor for reduction none); gradient block "
                "max_a |got_a - ref_a| / max(block max-norm, terms' scale of row a) (SPEC section 6)",
                "tolerances: " + "; ".join(f"{dt} loss {TOLERANCES[dt][0]:.0e}, gradients {TOLERANCES[dt][1]:.0e}"
                                          for dt in self.dtypes)
                + f", raised to {ROUNDING} eps x the logits' size where that is larger (marked 'tol')",
                ""]

    def _summary(self, labels: dict) -> list[str]:
        """How gradients were obtained and the worst errors of each dtype."""
        how = sorted({r.gradients for r in self.results if r.status in ("pass", "fail")})
        if how == ["none"] or not how:
            lines = ["gradients: not checked (none returned, and no PyTorch autograd graph)"]
        else:
            lines = ["gradients: " + ", ".join(h for h in how if h != "none")]
        for dt, worst in self.worst().items():
            lines.append(f"worst errors ({dt}): " + ", ".join(
                f"{('loss' if k == 'loss' else labels[k])} {v:.1e}" for k, v in worst.items()))
        return lines

    def to_text(self) -> str:
        """The report as text: the table of runs, the worst errors, the diagnoses, the verdict."""
        grad_names = grad_keys(self.convention)
        labels = _labels(self.convention)
        head = f"{'case':<24}{'N':>5}{'d':>6}  {'dtype':<8}{'loss':>9}" + "".join(
            f"{labels[k]:>10}" for k in grad_names) + "  result"
        lines = self._head() + [head, "-" * len(head)]
        lines += [_row(r, grad_names) for r in self.results]
        lines += [""] + self._summary(labels)
        if self.findings:
            lines += _finding_lines(self.findings)
        c = self.counts()
        tried = c["pass"] + c["fail"] + c["error"]
        skipped = f", {c['skip']} skipped" if c["skip"] else ""
        lines += ["", f"{c['pass']} of {tried} runs pass ({c['fail']} fail, {c['error']} raise{skipped}): "
                      f"{'PASS' if self.passed else 'FAIL'}"]
        return "\n".join(lines)
