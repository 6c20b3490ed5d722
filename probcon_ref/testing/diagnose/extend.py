"""The runs a variant found elsewhere explains although their loss passes.

A wrong logit that is right where every kappa is equal (a normaliser cancels there), or that
differs from the reference by less than the tolerance (tiny kappa, float32), leaves runs
whose loss passes and whose gradients fail. They belong to the variant when

* the loss, though within tolerance of the reference, is at least :data:`CLOSER` times closer
  to the variant's (and the two differ by more than that); or
* the loss is the reference's, the z gradients pass, and the kappa gradient is the
  variant's, by central differences of the variant's loss in float64; or
* the variant's normaliser is infinite at kappa = 0 (a power of kappa that differs from the
  Bessel order) and the run, which has a kappa = 0, returned NaN or infinity.
"""

from __future__ import annotations

import numpy as np

from ..host import kappas, reduction_weights
from ..measure import block_error, loss_error
from .fitted import losses_at_scale
from .logits import NORMALISER_SHIFTS, variant_losses
from .variants import alternative_weights

__all__ = ["CLOSER", "extend_variants"]

#: How much closer to the variant than to the reference a passing loss must be.
CLOSER = 10.0
#: The finite differences' match: the kappa gradient within this of the block's scale ...
_FD_MATCH = 1e-6
#: ... where it is at least this far from the reference's.
_FD_APART = 1e-4
#: Finite differences for at most this many concentrations (4 evaluations of the loss each).
_FD_MAX_KAPPAS = 64


def _losses_at(key: tuple, x: dict, case, conv):
    """(per-anchor losses, reduction weights) of the finding's ``key`` on inputs ``x``:
    ``("variant", variant, reduction)`` or ``("fitted", variant, s)``; None where undefined."""
    kind, vkey, extra = key
    if kind == "fitted":
        losses = losses_at_scale(vkey, extra, x, case.d, temperature=case.temperature)
        return None if losses is None else (losses, reduction_weights(conv.reduction, case.n))
    losses = variant_losses(vkey, x, conv.loss, case.d, case.temperature, conv.kappa)
    w = alternative_weights(conv.reduction, case.n).get(extra)
    return None if losses is None or w is None else (losses, w)


def _closer(r, key: tuple, case, conv) -> bool:
    """Is the run's passing loss much closer to the finding's variant than to the reference?"""
    found = _losses_at(key, r._inputs, case, conv)
    if found is None or r._got_loss is None:
        return False
    losses, w = found
    to_variant, _ = loss_error(r._got_loss, r._ref, conv.reduction, losses, w)
    to_reference = r.errors["loss"]
    return to_reference > 0 and to_reference > CLOSER * to_variant


def _weighted(key: tuple, x: dict, k, case, conv):
    """The variant's loss, reduced with its weights, at concentrations ``k`` (2N,)."""
    n = case.n
    found = _losses_at(key, {**x, "kappa1": k[:n], "kappa2": k[n:]}, case, conv)
    return None if found is None else float(np.sum(found[1] * found[0]))


def _fd_kappa(key: tuple, r, case, conv):
    """The variant's kappa gradient (2N,) by central differences (forward at kappa = 0)."""
    k = kappas(r._inputs)
    out = np.empty_like(k)
    for j in range(k.size):
        h = 1e-6 * max(k[j], 1e-3)
        up, down = k.copy(), k.copy()
        up[j] += h
        span = 2 * h
        if k[j] > h:
            down[j] -= h
        else:
            span = h  # forward difference at kappa = 0
        hi = _weighted(key, r._inputs, up, case, conv)
        lo = _weighted(key, r._inputs, down, case, conv)
        if hi is None or lo is None:
            return None
        out[j] = (hi - lo) / span
    return out * k if conv.kappa == "log" else out


def _kappa_gradient_is_variants(r, key: tuple, case, conv) -> bool:
    """Loss and z gradients right, kappa gradient wrong: is it the variant's?"""
    if conv.loss != "pcl" or key[2] != "declared" and key[0] == "variant":
        return False
    if r._got_grads is None or "kappa1" not in r._got_grads:
        return False
    if set(r.wrong) - {"kappa1", "kappa2"} or 2 * case.n > _FD_MAX_KAPPAS:
        return False
    g = _fd_kappa(key, r, case, conv)
    if g is None:
        return False
    n = case.n
    for part, rows in (("kappa1", slice(0, n)), ("kappa2", slice(n, 2 * n))):
        if block_error(r._got_grads[part], g[rows], r._ref.grad_scale[part]) > max(_FD_MATCH, r._ref.grad_tol):
            return False
    return max(r.errors["kappa1"], r.errors["kappa2"]) > _FD_APART


def _undefined_at_zero(r, key: tuple) -> bool:
    """A non-finite run with kappa = 0, under a normaliser that is infinite there."""
    shifts = NORMALISER_SHIFTS.get(key[1]) if key[0] == "variant" else None
    return (shifts is not None and shifts[0] != shifts[1] and bool(r.nonfinite)
            and r._ref is not None and bool(r._ref.facts.get("kappa_zero")))


def _why(r, key: tuple, case, conv) -> str | None:
    """Why variant ``key`` explains run ``r`` (a key of :data:`_NOTES`), or None."""
    if _undefined_at_zero(r, key):
        return "zero"
    if r.nonfinite or "loss" in r.wrong:
        return None
    if _closer(r, key, case, conv):
        return "closer"
    if _kappa_gradient_is_variants(r, key, case, conv):
        return "kappa"
    return None


_NOTES = {
    "closer": "the loss is within tolerance of the reference but at least {closer:g} times closer to the "
              "variant's, and the gradients fail",
    "kappa": "the loss and the z gradients agree with the reference (the variant changes nothing there) and "
             "the kappa gradient is the variant's, by central differences of the variant's loss",
    "zero": "a kappa is 0, where this normaliser is infinite (the power of kappa differs from the Bessel "
            "order, so log 0 does not cancel), and the results are NaN or infinite",
}


def _group(runs: list) -> str:
    """``a (float64), b (float32)``."""
    return ", ".join(f"{c} ({dt})" for c, dt in sorted(runs))


def extend_variants(results: list, conv, cases: dict, findings: list, explained: set) -> set:
    """Add to each variant finding the failing runs it explains although their loss passes
    (or is non-finite where the variant is); returns the runs added."""
    variants = [f for f in findings if f.key]
    notes: dict = {}
    for r in results:
        if r.status != "fail" or r.run in explained or "shape" in r.wrong:
            continue
        for f in variants:
            why = _why(r, f.key, cases[r.case], conv)
            if why is not None:
                notes.setdefault((f.signature, why), []).append(r.run)
                f.runs = sorted(set(f.runs) | {r.run})
                break
    for f in variants:
        for why, text in _NOTES.items():
            runs = notes.get((f.signature, why))
            if runs:
                f.detail += f" In {_group(runs)}, {text.format(closer=CLOSER)}."
    return {run for runs in notes.values() for run in runs}
