"""The measure of the contract, section :ref:`6 <contract-accuracy>`: the reference's results for a run, and the errors against them.

For each run (a case in a dtype) the reference is evaluated in NumPy float64 on the inputs
the callable received, after their rounding to its dtype, its extra candidates among them
where it has any: they are candidates of the logits' size and of the terms' scales too. The loss error is relative, per
anchor where the callable returns per-anchor losses, with an absolute floor of
:data:`~probcon_ref.testing.tolerances.SUBNORMALS` smallest subnormals per candidate (smallest
normals for a framework that flushes subnormals to zero,
:data:`~probcon_ref.testing.tolerances.FLUSH_TO_ZERO`); a
gradient block's error is ``max_a |got_a - ref_a| / s_a``, ``s_a`` the larger of the block's
max-norm and the terms' scale of row ``a``. The tolerances are those of the contract, section :ref:`6 <contract-accuracy>`, raised to
``ROUNDING * eps * S`` where the logits' size ``S`` makes that larger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import ntxent_loss, ntxent_loss_and_grad, pcl_loss, pcl_loss_and_grad
from . import host
from .cases import Case
from .convention import Convention, grad_keys
from .tolerances import FLUSH_TO_ZERO, ROUNDING, SUBNORMALS, TOLERANCES

__all__ = ["Reference", "reference", "cached_reference", "loss_error", "loss_rounding", "row_errors",
           "block_error"]


@dataclass
class Reference:
    """The reference's results for one run, and what the candidate's are measured against."""

    dtype: str
    losses: np.ndarray  # (2N,) per anchor
    loss: Any  # reduced: float, or (2N,) for "none"
    grads: dict
    weights: np.ndarray
    logit_size: np.ndarray  # per anchor: max_b |log C_d(kappa_b)| + kappa_b (or 1/tau), plus log(2N + M)
    loss_tol: np.ndarray  # per anchor: max(TOLERANCES, ROUNDING eps S_a), relative
    loss_floor: float  # absolute floor of a per-anchor loss
    grad_tol: float
    grad_scale: dict  # per row (z) or entry (kappa): max(block max-norm, terms' scale, floor / tol)
    positive_scale: dict  # per row or entry: the positive's terms with weights of size w_a
    facts: dict
    positive_logit: np.ndarray | None = None  # per anchor: F_{a,p(a)}

    @property
    def raised(self) -> bool:
        """Whether the logits' rounding raised a tolerance above that of the contract, section :ref:`6 <contract-accuracy>`."""
        tol_loss, tol_grad = TOLERANCES[self.dtype]
        return bool(np.max(self.loss_tol) > tol_loss or self.grad_tol > tol_grad)


def _extra(x: dict, loss: str) -> dict:
    """The extra candidates of inputs ``x`` as the reference's keyword arguments (none: empty)."""
    if host.extra_count(x) == 0:
        return {}
    return {"extra_z": x["extra_z"], **({"extra_kappa": x["extra_kappa"]} if loss == "pcl" else {})}


def _values(x: dict, case: Case, conv: Convention, weights):
    """The reference's per-anchor losses and gradient blocks (of the weighted sum), and the
    factor ``k_b`` that multiplies ``W_ab`` in ``G_ab`` (kappa_b, or 1/tau) of every candidate,
    the extra ones included."""
    extra = _extra(x, conv.loss)
    if conv.loss == "pcl":
        args = (x["z1"], x["z2"], x["kappa1"], x["kappa2"])
        losses = np.asarray(pcl_loss(*args, reduction="none", **extra))
        _, g = pcl_loss_and_grad(*args, weights=weights, **extra)
        grads = {"z1": np.asarray(g.z1), "z2": np.asarray(g.z2),
                 "kappa1": np.asarray(g.kappa1), "kappa2": np.asarray(g.kappa2)}
        if conv.kappa == "log":  # d/d log k = k d/dk
            grads["kappa1"] = grads["kappa1"] * x["kappa1"]
            grads["kappa2"] = grads["kappa2"] * x["kappa2"]
        return losses, grads, host.candidate_kappas(x)
    tau = case.temperature
    losses = np.asarray(ntxent_loss(x["z1"], x["z2"], temperature=tau, reduction="none", **extra))
    _, g = ntxent_loss_and_grad(x["z1"], x["z2"], temperature=tau, weights=weights, **extra)
    factors = np.full(2 * case.n + host.extra_count(x), 1.0 / tau)
    return losses, {"z1": np.asarray(g.z1), "z2": np.asarray(g.z2)}, factors


def _row_scales(x: dict, case: Case, conv: Convention, weights, k, floor: float) -> tuple[dict, dict, dict]:
    """Per row of ``z`` and per entry of ``kappa``: the terms' scale of the contract, section :ref:`6 <contract-accuracy>` (from ``|W|``
    computed without cancellation), the positive's terms with weights of size ``w_a``, and
    the absolute floor of the block. ``k`` holds every candidate's factor; an extra
    candidate is a column of ``W`` (a term of its anchor's row), never a row."""
    n2 = 2 * case.n
    w, gw, _, norm, cos, length = host.residuals(x, conv.loss, case.d, case.temperature, weights)
    norm = norm[:n2]
    pos = (np.arange(n2) + case.n) % n2
    aw = np.abs(weights)
    terms = {"z": (np.sum(np.abs(gw), axis=1) + np.sum(np.abs(gw[:, :n2]), axis=0)) / norm}
    positive = {"z": (aw * k[pos] + aw[pos] * k[:n2]) / norm}
    floors = {"z": floor * (np.max(k) + k[:n2]) / norm}
    if conv.loss == "pcl":
        per_kappa = k[:n2] if conv.kappa == "log" else 1.0
        terms["kappa"] = np.sum(np.abs(w[:, :n2]) * (np.abs(cos[:, :n2]) + length[None, :]), axis=0) * per_kappa
        positive["kappa"] = aw[pos] * (1.0 + length) * per_kappa
        floors["kappa"] = floor * (1.0 + length) * per_kappa
    return terms, positive, floors


def smallest_result(dtype: str, framework: str) -> float:
    """The smallest positive value ``framework`` computes in ``dtype``: the smallest subnormal,
    or the smallest normal number where the framework flushes subnormals to zero."""
    info = np.finfo(dtype)
    return float(info.smallest_normal if framework in FLUSH_TO_ZERO else info.smallest_subnormal)


def reference(x: dict, case: Case, conv: Convention, dtype: str) -> Reference:
    """Reference loss and gradients for inputs ``x`` (float64 holding the rounded values), and
    the per-anchor tolerances, per-row scales and floors of the contract, section :ref:`6 <contract-accuracy>` for ``dtype``."""
    n, n2 = case.n, 2 * case.n
    weights = host.reduction_weights(conv.reduction, n)
    losses, grads, k = _values(x, case, conv, weights)
    loss = losses if conv.reduction == "none" else float(np.sum(weights * losses))
    eps = float(np.finfo(dtype).eps)
    tol_loss, tol_grad = TOLERANCES[dtype]
    size = host.logit_scale(x, conv.loss, case.d, case.temperature)
    loss_tol = np.maximum(tol_loss, ROUNDING * eps * size)
    grad_tol = max(tol_grad, ROUNDING * eps * float(np.max(size)))
    # absolute, per candidate (the extra ones too), per unit of the factor each block multiplies W by
    floor = SUBNORMALS * (n2 + host.extra_count(x)) * smallest_result(dtype, conv.framework)
    terms, positive, floors = _row_scales(x, case, conv, weights, k, floor)
    grad_scale, positive_scale = {}, {}
    for key in grad_keys(conv):
        part, rows = key[:-1], (slice(0, n) if key.endswith("1") else slice(n, n2))
        block_max = float(np.max(np.abs(grads[key])))
        grad_scale[key] = np.maximum(np.maximum(block_max, terms[part][rows]), floors[part][rows] / grad_tol)
        positive_scale[key] = positive[part][rows]
    facts = host.case_facts(x, conv.loss, case.d, case.temperature, case.tags, losses)
    return Reference(dtype, losses, loss, grads, weights, size + math.log(n2 + host.extra_count(x)), loss_tol, floor,
                     grad_tol, grad_scale, positive_scale, facts,
                     host.positive_logits(x, conv.loss, case.d, case.temperature))


_CACHE: dict = {}


def cached_reference(case: Case, conv: Convention, dtype: str, x: dict) -> Reference:
    """:func:`reference`, kept for the (case, convention, dtype) it was computed for."""
    key = (case.name, case.temperature, conv.loss, conv.reduction, conv.kappa, dtype,
           conv.framework in FLUSH_TO_ZERO, hash(b"".join(case.inputs[k].tobytes() for k in sorted(case.inputs))))
    if key not in _CACHE:
        if len(_CACHE) > 512:
            _CACHE.clear()
        _CACHE[key] = reference(x, case, conv, dtype)
    return _CACHE[key]


def loss_error(got, ref: Reference, reduction: str, want=None, weights=None) -> tuple[float, float]:
    """``(error, tolerance)`` of a loss against the reference's per-anchor losses (or ``want``,
    reduced with ``weights`` instead of the declared reduction's).

    Per anchor, ``|got_a - ref_a| / max(|ref_a|, floor / tol_a)``: a relative error, which an
    absolute floor of a few subnormals keeps meaningful where the loss underflows. For
    ``"none"`` the anchor worst against its own tolerance is reported. A reduced loss is
    measured the same way, against the weighted mean of the anchors' tolerances (a bound on
    the reduced loss's error when each anchor meets its own).
    """
    want = ref.losses if want is None else np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if reduction == "none":
            err = np.abs(got - want) / np.maximum(np.abs(want), ref.loss_floor / ref.loss_tol)
            if np.any(np.isnan(err)):
                return math.nan, float(np.min(ref.loss_tol))
            i = int(np.argmax(err / ref.loss_tol))
            return float(err[i]), float(ref.loss_tol[i])
        weights = ref.weights if weights is None else weights
        aw = np.abs(weights)
        total = float(np.sum(weights * want))
        mass = float(np.sum(aw * np.abs(want)))
        # the weighted mean of the anchors' tolerances (shares first: a mass near the smallest
        # subnormal would underflow the products)
        tol = float(np.sum((aw * np.abs(want) / mass) * ref.loss_tol)) if mass > 0 else float(np.max(ref.loss_tol))
        tol = max(tol, float(np.min(ref.loss_tol)))
        floor = max(1.0, float(np.sum(aw))) * ref.loss_floor
        return float(abs(float(got) - total) / max(abs(total), floor / tol)), tol


def loss_rounding(got, ref: Reference, reduction: str, want=None) -> float:
    """The loss error in units of roundoff of the logits' size, ``|got - ref| / (eps S)``
    (against ``want``, per anchor for "none" and reduced otherwise, if given)."""
    eps = float(np.finfo(ref.dtype).eps)
    got = np.asarray(got, dtype=np.float64)
    want = ref.loss if want is None else want
    with np.errstate(invalid="ignore", over="ignore"):
        if reduction == "none":
            units = np.abs(got - want) / (eps * ref.logit_size)
            return math.nan if np.any(np.isnan(units)) else float(np.max(units))
        size = float(np.sum(np.abs(ref.weights) * ref.logit_size))
        return abs(float(got) - float(want)) / (eps * size)


def row_errors(got, want) -> np.ndarray:
    """``max |got - want|`` of each row of a block (each entry of a vector); NaN if any is."""
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - want)
    return diff.reshape(diff.shape[0], -1).max(axis=1) if diff.size else np.zeros(0)


def block_error(got, want, scale) -> float:
    """The gradient block error of the contract, section :ref:`6 <contract-accuracy>`: ``max_a |got_a - ref_a| / scale_a``, where
    ``scale_a`` is the larger of the block's max-norm and row ``a``'s terms' scale."""
    rows = row_errors(got, want)
    if rows.size == 0:
        return 0.0
    if np.any(np.isnan(rows)):
        return math.nan
    with np.errstate(over="ignore"):
        return float(np.max(rows / np.maximum(scale, np.finfo(np.float64).tiny)))
