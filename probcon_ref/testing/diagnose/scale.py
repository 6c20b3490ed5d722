"""A loss multiplied by a constant: the same ratio to the reference in every run.

A reduction that differs from the declared one multiplies the loss by 2, N or 2N, which the
``variants`` recognise; a factor that does not depend on N is a constant the implementation
applies (SupContrast's ``SupConLoss`` multiplies its loss by ``temperature /
base_temperature``, Khosla et al., 2020). For NT-Xent the factor may also be proportional to
the temperature of each case, or to its inverse. The factor is measured on the float64
runs and held, with each run's tolerance, to every failing run; the gradients are compared
with the reference's times the same factor.
"""

from __future__ import annotations

import math

import numpy as np

from ..measure import block_error, loss_error, loss_rounding
from .finding import MATCH, ROUNDING_LEVEL, Finding

__all__ = ["BASE_TEMPERATURES", "scale_finding"]

#: Round temperatures a factor may be a ratio of (SupCon's base_temperature is 0.07).
BASE_TEMPERATURES = (0.07, 0.05, 0.1, 0.2, 0.5, 1.0)

#: (form, how the factor depends on the case's temperature, the factor in words)
_FORMS = (("constant", lambda tau: 1.0, "{c:.6g}"),
          ("temperature", lambda tau: tau, "the temperature / {t:.6g}"),
          ("inverse-temperature", lambda tau: 1.0 / tau, "{c:.6g} / the temperature"))


def _ratio(r):
    """got / ref of a run's reduced loss (None where the reference is 0 or the loss is per anchor)."""
    ref = np.asarray(r._ref.loss, dtype=np.float64)
    got = np.asarray(r._got_loss, dtype=np.float64)
    if ref.ndim:
        keep = np.abs(ref) > 0
        if not np.any(keep):
            return None
        ratios = got[keep] / ref[keep]
        return float(np.median(ratios))
    return None if ref == 0 else float(got / ref)


def _resolved(r, reduction: str) -> bool:
    """Whether the run's reference loss is far above the rounding of its logits (a tiny loss
    and its textbook 0 have any ratio)."""
    zero = 0.0 * np.asarray(r._ref.loss)
    return loss_rounding(r._ref.loss, r._ref, reduction, zero) > ROUNDING_LEVEL


def _matches(r, factor: float, reduction: str) -> bool:
    """Is the run's loss the reference's times ``factor``, to its tolerance?"""
    want = factor * np.asarray(r._ref.losses, dtype=np.float64)
    err, tol = loss_error(r._got_loss, r._ref, reduction, want=want)
    return err <= max(MATCH[r.dtype], tol)


def _gradients_scaled(runs: list, factors: dict) -> str:
    """What the gradients of the matched runs are: the reference's times the factor, the
    reference's, or neither (checked block by block)."""
    scaled = same = other = 0
    for r in runs:
        if not r._got_grads:
            continue
        c, tol = factors[r.run], max(MATCH[r.dtype], r._ref.grad_tol)
        blocks = r._got_grads
        if all(block_error(blocks[k], c * r._ref.grads[k], abs(c) * r._ref.grad_scale[k]) <= tol for k in blocks):
            scaled += 1
        elif all(block_error(blocks[k], r._ref.grads[k], r._ref.grad_scale[k]) <= tol for k in blocks):
            same += 1
        else:
            other += 1
    if not scaled + same + other:
        return "No gradients were checked."
    if scaled and not same + other:
        return "The gradients are the reference's times the same factor: they are those of the scaled loss."
    if same and not scaled + other:
        return "The gradients are the reference's, unscaled: only the loss value is multiplied."
    return (f"Of their gradients, {scaled} runs' are the reference's times the factor, {same} the reference's "
            f"and {other} neither.")


def _best_form(candidates: list, conv, cases: dict):
    """(form, constant, matched runs, factor per run) of the form that matches most runs."""
    best = None
    for form, depends, _ in _FORMS if conv.loss == "ntxent" and conv.temperature is None else _FORMS[:1]:
        probes = [(r, _ratio(r)) for r in candidates if r.dtype == "float64" and _resolved(r, conv.reduction)]
        values = [ratio / depends(cases[r.case].temperature or 1.0) for r, ratio in probes if ratio is not None]
        if not values:
            continue
        c = float(np.median(values))
        if not math.isfinite(c) or c == 0:
            continue
        factors = {r.run: c * depends(cases[r.case].temperature or 1.0) for r in candidates}
        hit = [r for r in candidates if abs(factors[r.run] - 1) > 1e-6 and _matches(r, factors[r.run], conv.reduction)]
        if best is None or len(hit) > len(best[2]):
            best = (form, c, hit, factors)
    return best


def _factor_words(form: str, c: float, conv) -> str:
    """The factor in words, with the temperature it is a ratio of where it is one (checked)."""
    if form == "temperature":
        t0 = 1.0 / c
        near = [t for t in BASE_TEMPERATURES if abs(t - t0) <= 1e-9 * t0]
        return f"the case's temperature / {near[0] if near else t0:.6g}"
    if form == "inverse-temperature":
        return f"{c:.6g} / the case's temperature"
    words = f"{c:.6g}"
    if conv.temperature is not None:
        near = [t for t in BASE_TEMPERATURES if abs(conv.temperature / t - c) <= 1e-9 * abs(c)]
        if near:
            words += f", which is the temperature {conv.temperature:g} divided by {near[0]:g}"
    return words


def scale_finding(results: list, conv, cases: dict, explained: set):
    """Is the loss the reference's times a constant (or a power of the temperature)?

    Returns (finding or None, the runs it explains).
    """
    candidates = [r for r in results if "loss" in r.wrong and r.run not in explained and not r.nonfinite]
    if len([r for r in candidates if r.dtype == "float64" and _resolved(r, conv.reduction)]) < 2:
        return None, set()
    best = _best_form(candidates, conv, cases)
    if best is None:
        return None, set()
    form, c, hit, factors = best
    if len(hit) < 2 or len(hit) < 0.6 * len(candidates) or not any(r.dtype == "float64" for r in hit):
        return None, set()
    words = _factor_words(form, c, conv)
    detail = (f"In {len(hit)} of the {len(candidates)} runs whose loss fails, the loss is the reference's times "
              f"{words}, to each run's tolerance; no reduction gives that factor (a factor 2, N or 2N is "
              "recognised as one). The loss is multiplied by a constant: SupContrast's SupConLoss, for "
              "instance, multiplies it by temperature / base_temperature (0.07 by default). "
              + _gradients_scaled(hit, factors))
    finding = Finding("loss-scaled", f"The loss is the reference's times {words}", detail,
                      sorted(r.run for r in hit))
    return finding, {r.run for r in hit}
