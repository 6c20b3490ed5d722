"""When no known mistake fits: the evidence, measured, and no advice that cannot help.

The finding says which quantities fail and by how much, whether the loss error is a
constant offset or a constant ratio across the runs (or neither), and how the errors move
when one quantity of the batch changes and the others stay: the callable is run again in
float64 on small batches that differ only in kappa's scale (PCL), in the temperature
(NT-Xent), in d or in N (each with extra candidates drawn as the battery's, where they are
passed). A trend is named only where the printed numbers show it.
"""

from __future__ import annotations

import math

import numpy as np

from ..cases import EXTRA_PER_ANCHOR, Case, extra_candidates, pair
from ..runner import run_case
from .finding import Finding

__all__ = ["evidence_finding", "trend"]

_BASE = {"n": 8, "d": 16, "kappa": 5.0, "tau": 0.2}


def _probe_case(name: str, n: int, d: int, kappa: float, tau, conv) -> Case:
    """A small batch, drawn the same way whatever the varied quantity (seeded by its shape),
    with extra candidates as the battery's where ``conv`` passes them."""
    rng = np.random.default_rng([7, n, d])
    z1, z2 = pair(rng, n, d)
    inputs = {"z1": z1, "z2": z2}
    if conv.loss == "pcl":
        pattern = 10.0 ** np.random.default_rng([8, n]).uniform(-0.3, 0.3, (2, n))
        inputs["kappa1"], inputs["kappa2"] = kappa * pattern[0], kappa * pattern[1]
    if conv.extra_candidates:
        inputs.update(extra_candidates(inputs, np.random.default_rng([9, n, d])))
    temperature = None if conv.loss == "pcl" else (conv.temperature or tau)
    return Case(f"probe {name}", name, frozenset(), inputs, temperature)


def _sweeps(conv) -> list[tuple[str, list]]:
    """(the varied quantity, [(its value in words, case)]) for each sweep."""
    b = _BASE
    out = []
    if conv.loss == "pcl":
        out.append(("kappa", [(f"kappa x{s:g}", _probe_case(f"kappa x{s:g}", b["n"], b["d"], b["kappa"] * s,
                                                             None, conv)) for s in (1, 10, 100)]))
    elif conv.temperature is None:
        out.append(("1/tau", [(f"tau = {t:g}", _probe_case(f"tau = {t:g}", b["n"], b["d"], 0, t, conv))
                              for t in (1.0, 0.2, 0.04)]))
    out.append(("d", [(f"d = {d}", _probe_case(f"d = {d}", b["n"], d, b["kappa"], b["tau"], conv))
                      for d in (4, 16, 64)]))
    out.append(("N", [(f"N = {n}", _probe_case(f"N = {n}", n, b["d"], b["kappa"], b["tau"], conv))
                      for n in (2, 8, 32)]))
    return out


def trend(values: list) -> str:
    """What errors, in the order of a growing quantity and as printed (two digits), do: "grow"
    or "shrink" (monotonically, by 4 times or more), "rise" or "fall" (monotonically, less),
    "stay about the same" (within 1.5 times) or "vary without a trend" (NaN: "are not finite")."""
    if any(not math.isfinite(v) for v in values):
        return "are not finite"
    shown = [float(f"{v:.1e}") for v in values]  # the numbers as printed
    lo, hi = min(shown), max(shown)
    if hi == 0 or (lo > 0 and hi / lo <= 1.5):
        return "stay about the same"
    steps = list(zip(shown, shown[1:]))
    if all(b >= a for a, b in steps):
        return "grow" if lo == 0 or hi / lo >= 4 else "rise"
    if all(b <= a for a, b in steps):
        return "shrink" if lo == 0 or hi / lo >= 4 else "fall"
    return "vary without a trend"


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.1e}"


def _probe_lines(fn, fw, conv) -> list[str]:
    """One sentence per sweep: the loss and worst gradient errors at each value, and the trend."""
    lines = []
    for quantity, probes in _sweeps(conv):
        results = [(words, run_case(fn, fw, conv, case, "float64")) for words, case in probes]
        if any(r.status == "error" for _, r in results):
            raised = next(r for _, r in results if r.status == "error")
            lines.append(f"varying {quantity}, the call raised ({raised.message})")
            continue
        if all(r.status == "pass" for _, r in results):
            lines.append(f"at {', '.join(w for w, _ in results)} every run passes")
            continue
        loss = [r.errors.get("loss", math.nan) for _, r in results]
        parts = [f"at {', '.join(w for w, _ in results)} the loss errors are {', '.join(_fmt(v) for v in loss)} "
                 f"(they {trend(loss)} as {quantity} grows)"]
        if all(len(r.errors) > 1 for _, r in results):
            grad = [max(v for k, v in r.errors.items() if k != "loss") for _, r in results]
            parts.append(f"the worst gradient errors {', '.join(_fmt(v) for v in grad)} (they {trend(grad)})")
        lines.append("; ".join(parts))
    return lines


def _what_fails(runs: list) -> str:
    """Which quantities fail in ``runs``, in how many runs, and by how much."""
    raised = [r for r in runs if r.status == "error"]
    parts = []
    keys = ["loss", "z1", "z2", "kappa1", "kappa2"]
    for k in keys:
        bad = [r for r in runs if k in r.wrong or k in r.nonfinite]
        if not bad:
            continue
        finite = [r.errors[k] for r in bad if k in r.errors and math.isfinite(r.errors[k])]
        size = f", errors {min(finite):.1e} to {max(finite):.1e}" if finite else ""
        nonfinite = sum(k in r.nonfinite for r in bad)
        parts.append(f"{'the loss' if k == 'loss' else 'grad ' + k} in {len(bad)} of these runs"
                     + (f" ({nonfinite} non-finite{size})" if nonfinite else f" ({size[2:]})" if size else ""))
    if raised:
        parts.append(f"{len(raised)} raise ({raised[0].message})")
    return "; ".join(parts)


def _loss_form(runs: list) -> str:
    """Whether the float64 loss errors are a constant offset, a constant ratio, or neither."""
    pairs = [(float(np.sum(np.asarray(r._got_loss))), float(np.sum(np.asarray(r._ref.loss)))) for r in runs
             if r.dtype == "float64" and "loss" in r.wrong and not r.nonfinite]
    pairs = [(g, w) for g, w in pairs if w != 0]
    if len(pairs) < 2:
        return ""
    offsets = [g - w for g, w in pairs]
    ratios = [g / w for g, w in pairs]
    mid_o, mid_r = float(np.median(offsets)), float(np.median(ratios))
    if mid_o != 0 and max(abs(o - mid_o) for o in offsets) <= 1e-6 * abs(mid_o):
        return f"The float64 loss errors are one constant offset, {mid_o:+.6g}, in all {len(pairs)} runs."
    if mid_r != 1 and max(abs(q - mid_r) for q in ratios) <= 1e-6 * abs(mid_r):
        return f"The float64 losses are the reference's times one constant, {mid_r:.6g}, in all {len(pairs)} runs."
    return (f"The float64 loss error is neither a constant offset (got - ref from {min(offsets):+.3g} to "
            f"{max(offsets):+.3g}) nor a constant ratio (got / ref from {min(ratios):.6g} to {max(ratios):.6g}) "
            f"across {len(pairs)} runs.")


def evidence_finding(fn, fw, conv, runs: list, spread: bool) -> Finding:
    """The finding for failing ``runs`` that no signature explains (``spread``: nor a regime)."""
    loss_ok = not any("loss" in r.wrong or "loss" in r.nonfinite or r.status == "error" for r in runs)
    if loss_ok:
        blocks = sorted({k for r in runs for k in r.wrong + r.nonfinite if k not in ("loss", "dtype")})
        summary = (f"The loss agrees, but the gradients of {', '.join(blocks)} fail in {len(runs)} runs, and no "
                   "known mistake fits them")
    else:
        summary = f"No known mistake fits {len(runs)} failing run{'s' if len(runs) != 1 else ''}"
    if spread:
        summary += ", and they are not the runs of one, two or three regimes"
    detail = [f"What fails: {_what_fails(runs)}."]
    form = _loss_form(runs)
    if form:
        detail.append(form)
    probes = _probe_lines(fn, fw, conv)
    if probes and all(line.endswith("every run passes") for line in probes):
        detail.append("Run again in float64 on small batches that differ in one quantity only, it passes in "
                      "every one: the failures are confined to the runs above.")
    elif probes:
        bank = (f" (each with {2 * EXTRA_PER_ANCHOR}N extra candidates, drawn as the battery's: M grows with N)"
                if conv.extra_candidates else "")
        detail.append(f"Run again in float64 on small batches that differ in one quantity only{bank}: "
                      + "; ".join(probes) + ".")
    detail.append("The contract's sections 3 and 4 define the loss and the gradient these are compared with.")
    return Finding("unexplained", summary, " ".join(detail), sorted(r.run for r in runs))
