"""Right only to the rounding of O(1) quantities: the two textbook forms of the contract, section :ref:`4 <contract-gradient>`.

``-F_ap + logsumexp_b F_ab`` leaves a loss error of a few units of roundoff of the logits'
size, and ``W_ap = w_a (P_ap - 1)`` a gradient error of a few units of roundoff of the
positive's terms with a weight of size ``w_a``: right to the rounding of numbers much larger
than the result, wrong relative to the result itself, which is where the loss is tiny.
"""

from __future__ import annotations

import numpy as np

from ..measure import Reference, loss_rounding, row_errors
from .finding import ROUNDING_LEVEL, SMALL, Finding, capitalised
from .gradients import GRADIENT_DIAGNOSES

__all__ = ["PRECISION_DIAGNOSES", "precision_findings"]

#: Where the error has the size of the rounding of the logits, not of the loss: the textbook form.
PRECISION_DIAGNOSES = {
    "tiny-loss": (
        "Loss right only to the rounding of its logits, not to its own size (the mark of the "
        "textbook -F_ap + logsumexp_b F_ab)",
        "In these runs the loss error is within {bound} units of roundoff of the logits' size "
        "(max_b |log C_d(kappa_b)| + kappa_b, or 1/tau, plus log(2N + M), M extra candidates if any) "
        "while the loss is at least 100 times smaller ({example}). That is what -F_ap + logsumexp_b F_ab "
        "(or F.cross_entropy, or -log of the softmax) gives: both terms have the logits' size and their difference keeps "
        "only their rounding, 0 or noise for a loss of 1e-40. The contract page, section 4: compute loss_a from "
        "the differences delta_ab = F_ab - F_ap, as "
        "m_a + log1p(sum_{b != a, p(a)} exp(delta_ab - m_a) + expm1(-m_a))."),
}


def _loss_size_ratio(ref: Reference, reduction: str) -> float:
    """The reference loss next to the logits' size (the smallest anchor's for "none")."""
    if reduction == "none":
        return float(np.min(np.abs(ref.losses) / ref.logit_size))
    return abs(float(ref.loss)) / float(np.sum(np.abs(ref.weights) * ref.logit_size))


def _quantised(got, ref: Reference, reduction: str) -> bool:
    """Is the loss what a difference of two numbers of the positive's logit's size can be?

    ``lse - F_ap`` in floating point is 0 or at least about one unit of roundoff of
    ``F_ap``; a loss far below that but not 0 (a tiny loss computed from the differences,
    of another formula) is not the textbook form's.
    """
    eps = float(np.finfo(ref.dtype).eps)
    quantum = 0.25 * eps * np.abs(ref.positive_logit)
    got = np.asarray(got, dtype=np.float64)
    if reduction == "none":
        return bool(np.all((got == 0) | (np.abs(got) >= quantum) | (np.abs(ref.losses) >= quantum)))
    return bool(got == 0 or abs(float(got)) >= float(np.min(np.abs(ref.weights) * quantum)))


def _positive_rounding(got, ref: Reference, key: str) -> bool:
    """Is a block's error that of the positive's terms computed with weights of size ``w_a``?

    Every row's error is within ``ROUNDING_LEVEL`` units of roundoff of those terms (beyond
    the tolerance), and where a row fails, its true scale is at most ``SMALL`` of them: the
    weights cancelled.
    """
    eps = float(np.finfo(ref.dtype).eps)
    rows = row_errors(got, ref.grads[key])
    scale, positive = ref.grad_scale[key], ref.positive_scale[key]
    failing = rows > ref.grad_tol * scale
    return bool(np.any(failing) and np.all(rows <= ROUNDING_LEVEL * eps * positive + ref.grad_tol * scale)
                and np.all(scale[failing] <= SMALL * positive[failing]))


def _fill(text: str, **values) -> str:
    """``text`` with each ``{name}`` replaced (the texts hold other braces: ``sum_{b != a}``)."""
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def _tiny_loss(loss_hits: dict) -> Finding:
    """The ``tiny-loss`` finding, with the run of the smallest loss as its example."""
    summary, detail = PRECISION_DIAGNOSES["tiny-loss"]
    r = min(loss_hits.values(), key=lambda r: (r.dtype != "float64", float(np.min(r._ref.losses))))
    ref = r._ref
    size = float(np.max(ref.logit_size))
    smallest = float(np.min(ref.losses))
    example = (f"{r.case} ({r.dtype}): smallest per-anchor loss {smallest:.2g}, loss error "
               f"{r.errors['loss']:.2g} relative, logits' size {size:.3g}")
    return Finding("tiny-loss", summary, _fill(detail, bound=ROUNDING_LEVEL, example=example), sorted(loss_hits))


def _positive_weight(grad_hits: dict) -> Finding:
    """The ``gradient:positive-weight`` finding, with the run of the largest error as its example."""
    summary, detail = GRADIENT_DIAGNOSES["positive-weight"]
    r = max(grad_hits.values(), key=lambda r: (r.dtype == "float64",
                                               max(v for k, v in r.errors.items() if k != "loss")))
    k, v = max(((k, v) for k, v in r.errors.items() if k != "loss"), key=lambda kv: kv[1])
    example = f"{r.case} ({r.dtype}): gradient {k} error {v:.2g} of its own size"
    return Finding("gradient:positive-weight", capitalised(summary),
                   _fill(detail, bound=ROUNDING_LEVEL, example=example), sorted(grad_hits))


def precision_findings(results: list, conv, explained: set) -> tuple[list, set]:
    """Errors of the size of the rounding of O(1) quantities, not of the results' own size.

    The loss (``tiny-loss``): within ``ROUNDING_LEVEL`` units of roundoff of the logits' size,
    the mark of ``-F_ap + logsumexp_b F_ab``. A gradient block (``gradient:positive-weight``):
    within as many units of roundoff of the positive's terms with a weight of size ``w_a``,
    the mark of ``W_ap = w_a (P_ap - 1)``. Returns the findings and the runs whose every
    failing quantity they explain.
    """
    loss_hits, grad_hits = {}, {}
    done = set()
    for r in results:
        if r.status != "fail" or r.run in explained or r.nonfinite or "shape" in r.wrong:
            continue
        ref = r._ref
        wrong = [k for k in r.wrong if k != "dtype"]
        covered = set()
        if "loss" in wrong and loss_rounding(r._got_loss, ref, conv.reduction) <= ROUNDING_LEVEL \
                and _loss_size_ratio(ref, conv.reduction) <= SMALL and _quantised(r._got_loss, ref, conv.reduction):
            covered.add("loss")
            loss_hits[r.run] = r
        blocks = [k for k in wrong if k != "loss"]
        if blocks and all(_positive_rounding(r._got_grads[k], ref, k) for k in blocks):
            covered |= set(blocks)
            grad_hits[r.run] = r
        if wrong and covered == set(wrong):
            done.add(r.run)
    findings = ([_tiny_loss(loss_hits)] if loss_hits else []) + ([_positive_weight(grad_hits)] if grad_hits else [])
    return findings, done
