"""A constant offset: a loss error that does not change when the embeddings do.

The callable is run again, in float64, on the failing cases with their directions redrawn
(N, d and kappa kept; the extra candidates' directions too); an error unchanged by that
involves only kappa, d or N, and is named when it is one of the offsets that known mistakes
make (a log-mean-exp, a normaliser or its constant on one side of the softmax only).
"""

from __future__ import annotations

import math

import numpy as np

from ..cases import Case, pair
from ..host import extra_count, kappas, log_c
from ..measure import reference
from ..runner import call, rounded_inputs
from .finding import Finding

__all__ = ["OFFSETS", "offset_finding"]


def _context(r, case: Case, conv) -> dict:
    """What the offsets are made of, for run ``r``: the anchors' count, the candidates' count
    of each anchor (the extra candidates included), d/2 and the positives' normalisers."""
    ctx = {"n2": 2 * case.n, "count": 2 * case.n - 1 + extra_count(r._inputs), "half_d": case.d / 2}
    if conv.loss == "pcl":
        ctx["logc_pos"] = np.roll(log_c(case.d, kappas(r._inputs)), case.n)  # log C_d of each positive
    else:
        ctx["logc_pos"] = np.zeros(2 * case.n)
    return ctx


#: (key, per-anchor offset from the context, the offset in words, the mistake that makes it)
OFFSETS = (
    ("log-mean-exp", lambda ctx: -np.full(ctx["n2"], math.log(ctx["count"])),
     "lower by the log of the candidates' count, log(2N - 1 + M) (M extra candidates, if any)",
     "a log-mean-exp over the 2N - 1 + M candidates is taken instead of a log-sum-exp (the shift of the "
     "InfoNCE bound)."),
    ("normaliser-missing-on-positive", lambda ctx: ctx["logc_pos"],
     "of +log C_d(kappa) of each anchor's positive",
     "the positive's logit lacks its normaliser log C_d(kappa_p) while the denominator's logits have it."),
    ("normaliser-only-on-positive", lambda ctx: -ctx["logc_pos"],
     "of -log C_d(kappa) of each anchor's positive",
     "the positive's logit has its normaliser log C_d(kappa_p) but the denominator's logits lack it."),
    ("normaliser-constant-in-positive-only", lambda ctx: np.full(ctx["n2"], ctx["half_d"] * math.log(2 * math.pi)),
     "of +(d/2) log(2 pi)",
     "the normaliser's constant -(d/2) log(2 pi) is in the positive's logit but not in the denominator's; "
     "it cancels only when every logit has it."),
    ("normaliser-constant-in-denominator-only",
     lambda ctx: -np.full(ctx["n2"], ctx["half_d"] * math.log(2 * math.pi)),
     "of -(d/2) log(2 pi)",
     "the normaliser's constant -(d/2) log(2 pi) is in the denominator's logits but not in the positive's; "
     "it cancels only when every logit has it."),
)


def _offset_of(r, entry, case: Case, conv):
    """The loss offset that ``entry`` of :data:`OFFSETS` predicts for run ``r``."""
    per_anchor = entry[1](_context(r, case, conv))
    return per_anchor if conv.reduction == "none" else float(np.sum(r._ref.weights * per_anchor))


def _unchanged_when_redrawn(fn, fw, conv, r, case: Case):
    """The loss error of run ``r`` if the callable makes the same error with the directions
    redrawn (N, d and kappa kept; the extra candidates' directions too, their norms and
    concentrations kept), else None."""
    rng = np.random.default_rng(12345)
    z1, z2 = pair(rng, case.n, case.d)
    moved = {**case.inputs, "z1": z1, "z2": z2}
    if case.m:
        g = rng.standard_normal((case.m, case.d))
        norms = np.linalg.norm(case.inputs["extra_z"], axis=1, keepdims=True)
        moved["extra_z"] = g / np.linalg.norm(g, axis=1, keepdims=True) * norms
    moved = Case(case.name, case.description, case.tags, moved, case.temperature)
    args, x = rounded_inputs(moved, conv, "float64")
    ref2 = reference(x, moved, conv, "float64")
    try:
        with np.errstate(all="ignore"):
            loss2, _, _, _ = call(fn, fw, conv, moved, args, "float64")
    except Exception:
        return None
    loss2 = loss2 if conv.reduction == "none" else float(loss2.reshape(()))
    delta1 = np.asarray(r._got_loss, dtype=np.float64) - np.asarray(r._ref.loss)
    delta2 = np.asarray(loss2, dtype=np.float64) - np.asarray(ref2.loss)
    size = float(np.max(np.abs(delta1)))
    # the same offset after the redraw, to 1e-8 of the loss and to 1e-3 of the offset itself:
    # two errors at the rounding level of the logits agree to 1e-8 without being one offset
    if not np.all(np.isfinite(delta2)) or np.max(np.abs(delta1 - delta2)) > min(1e-8 * max(1.0, size),
                                                                               1e-3 * size):
        return None
    return delta1


def _named(entry, wrong: list, cases: dict, conv) -> set:
    """The runs whose loss error is the offset ``entry`` predicts."""
    hit = set()
    for r in wrong:
        delta = np.asarray(r._got_loss, dtype=np.float64) - np.asarray(r._ref.loss)
        want = np.asarray(_offset_of(r, entry, cases[r.case], conv))
        tol = 1e-8 if r.dtype == "float64" else 1e-4
        if np.max(np.abs(want - delta)) <= tol * max(1.0, float(np.max(np.abs(delta)))):
            hit.add(r.run)
    return hit


def offset_finding(fn, fw, conv, results: list, cases: dict, explained: set):
    """Is the loss error a constant offset, unchanged when the embeddings change? Which one?

    Returns (finding or None, the runs it explains).
    """
    wrong = [r for r in results if "loss" in r.wrong and r.run not in explained]
    probes = [r for r in wrong if r.dtype == "float64" and r.n > 1][:2]
    if not probes:
        return None, set()
    deltas = []
    for r in probes:
        delta = _unchanged_when_redrawn(fn, fw, conv, r, cases[r.case])
        if delta is None:
            return None, set()
        deltas.append(delta)
    for entry in OFFSETS:
        key, _, what, why = entry
        hit = _named(entry, wrong, cases, conv)
        if {p.run for p in probes} <= hit:
            return Finding(
                f"constant-offset:{key}", f"Constant offset {what} in the loss",
                "The error does not depend on the embeddings (it is unchanged when the directions are "
                f"redrawn with N, d and kappa fixed), and it equals the offset made when {why}", sorted(hit)), hit
    value = float(np.mean(deltas[0]))
    return Finding(
        "constant-offset", f"Constant offset of {value:+.6g} in the loss (a missing or mis-scaled normaliser?)",
        "The error does not depend on the embeddings: it is unchanged when the directions are redrawn with "
        "N, d and kappa fixed. A term of the loss that involves only kappa, d or N is wrong: typically a "
        "normaliser, or part of it, applied to some logits and not to others, or scaled differently in the "
        "positive's logit and in the denominator.", sorted(p.run for p in probes)), {p.run for p in probes}
