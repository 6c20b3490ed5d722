"""The pieces of the contract, sections :ref:`1 <contract-notation>`, :ref:`2 <contract-derivation>`, :ref:`3 <contract-loss>`, :ref:`4 <contract-gradient>` that the measure and the diagnosis read, in NumPy float64.

Computed on the host from a case's inputs (a dict with ``z1``, ``z2`` and, for the PCL,
``kappa1``, ``kappa2``), with the special functions of :mod:`probcon_ref.special` (no SciPy):
directions and cosines, the logits' size, the reduction weights, the residuals ``W`` and
``G`` of the contract, section :ref:`4 <contract-gradient>`, and the facts about a case that the regime diagnoses read.
"""

from __future__ import annotations

import numpy as np

from ..special import bessel_ratio, log_iv, log_vmf_normalizer

__all__ = ["stack", "kappas", "log_c", "logit_scale", "positive_logits", "reduction_weights", "residuals",
           "case_facts"]


def stack(x: dict):
    """``z`` (2N, d), ``mu``, raw norms and cosines of a case's inputs."""
    z = np.concatenate([x["z1"], x["z2"]], axis=0)
    scale = np.max(np.abs(z), axis=1, keepdims=True)
    y = z / scale
    norm = scale * np.sqrt(np.sum(y * y, axis=1, keepdims=True))
    mu = y / np.sqrt(np.sum(y * y, axis=1, keepdims=True))
    return z, mu, norm[:, 0], mu @ mu.T


def kappas(x: dict):
    """The 2N concentrations, view 1 first."""
    return np.concatenate([x["kappa1"], x["kappa2"]])


def log_c(d: int, k) -> np.ndarray:
    """``log C_d(k)`` (the contract, section :ref:`1 <contract-notation>`) in float64."""
    return np.asarray(log_vmf_normalizer(d, np.asarray(k, dtype=np.float64)))


def logit_scale(x: dict, loss: str, d: int, temperature) -> np.ndarray:
    """Per-anchor magnitude of the logits' ingredients, ``max_{b != a} |log C_d(k_b)| + k_b``.

    A float implementation that forms the logits and then their log-sum-exp makes an
    absolute error of a few units of roundoff times this number in ``loss_a``.
    """
    n2 = 2 * x["z1"].shape[0]
    if loss == "ntxent":
        return np.full(n2, 1.0 / temperature)
    k = kappas(x)
    s = np.abs(log_c(d, k)) + k
    full = np.broadcast_to(s, (n2, n2)).copy()
    np.fill_diagonal(full, -np.inf)
    return np.max(full, axis=1) if n2 > 1 else s


def positive_logits(x: dict, loss: str, d: int, temperature) -> np.ndarray:
    """``F_{a,p(a)}`` of each anchor: the number the textbook ``-F_ap + logsumexp_b F_ab``
    subtracts, whose rounding is the smallest non-zero loss that form can return."""
    n = x["z1"].shape[0]
    _, mu, _, _ = stack(x)
    pos = (np.arange(2 * n) + n) % (2 * n)
    c = np.sum(mu * mu[pos], axis=1)
    if loss == "ntxent":
        return c / temperature
    k = kappas(x)[pos]
    return log_c(d, k) + k * c


def reduction_weights(reduction: str, n: int) -> np.ndarray:
    """The weight ``w_a`` of each of the 2N anchors under ``reduction`` (the contract, section :ref:`4 <contract-gradient>`)."""
    n2 = 2 * n
    if reduction == "mean":
        return np.full(n2, 1.0 / n2)
    if reduction == "pair-mean":
        return np.full(n2, 1.0 / n)
    return np.ones(n2)  # "sum"; "none" keeps the vector but its gradient is that of the sum


def residuals(x: dict, loss: str, d: int, temperature, weights):
    """``W``, ``G``, ``mu``, raw norms, cosines and ``A_d`` by the formulas of the contract, section :ref:`4 <contract-gradient>`.

    ``W`` as the contract, section :ref:`4 <contract-gradient>` asks: ``w_a P_ab`` for the negatives and, for the positive,
    ``-w_a sum_{b not in {a, p(a)}} P_ab``, never ``w_a (P_ap - 1)``; so ``|W|`` has the size
    of the loss's own terms even when the positive is matched to within rounding of 1.
    """
    n = x["z1"].shape[0]
    n2 = 2 * n
    _, mu, norm, cos = stack(x)
    idx = np.arange(n2)
    pos = (idx + n) % n2
    if loss == "pcl":
        k = kappas(x)
        f = log_c(d, k)[None, :] + k[None, :] * cos
        scale = k
        length = np.asarray(bessel_ratio(d / 2 - 1, k))
    else:
        f = cos / temperature
        scale = np.full(n2, 1.0 / temperature)
        length = None
    gaps = f - f[idx, pos][:, None]
    gaps[idx, idx] = -np.inf
    gaps[idx, pos] = -np.inf
    m = np.max(gaps, axis=1, keepdims=True)
    m = np.maximum(np.where(np.isfinite(m), m, 0.0), 0.0)
    e = np.exp(gaps - m)
    s = np.sum(e, axis=1, keepdims=True)
    z = np.exp(-m) + s
    w = weights[:, None] * (e / z)
    w[idx, pos] = -weights * (s / z)[:, 0]
    g = w * scale[None, :]
    return w, g, mu, norm, cos, length


def _logit_range(x: dict, loss: str, d: int, temperature, cos) -> dict:
    """Where ``exp`` of the logits, unshifted, leaves the floats: the largest logit of a candidate
    (``max_logit``) and of an anchor with itself (``max_self_logit``, ``F_aa``, which an
    implementation that masks after ``exp`` also exponentiates), and the smallest over the
    anchors of their largest candidate's logit (``min_top_logit``)."""
    if loss == "pcl":
        k = kappas(x)
        f = log_c(d, k)[None, :] + k[None, :] * cos
    else:
        f = cos / temperature
    self_logits = np.diagonal(f).copy()
    off = f.copy()
    np.fill_diagonal(off, -np.inf)
    return {"max_logit": float(np.max(off)), "max_self_logit": float(np.max(self_logits)),
            "min_top_logit": float(np.min(np.max(off, axis=1)))}


def case_facts(x: dict, loss: str, d: int, temperature, tags: frozenset, ref_losses) -> dict:
    """Numbers the regime diagnoses read, computed once per case: N, d, the tags, the raw
    norms' range, the smallest loss, the logits' range and, for the PCL, the range of kappa
    and where ``log ive`` is smallest and ``log I_nu`` largest."""
    n = x["z1"].shape[0]
    _, _, norm, cos = stack(x)
    facts = {"n": n, "d": d, "tags": tags, "min_norm": float(np.min(norm)), "max_norm": float(np.max(norm)),
             "min_loss": float(np.min(ref_losses)) if n > 1 else 0.0}
    facts.update(_logit_range(x, loss, d, temperature, cos))
    if loss == "pcl":
        k = kappas(x)
        nu = d / 2 - 1
        positive = k[k > 0]
        facts["kappa_zero"] = bool(np.any(k == 0))
        facts["min_kappa"] = float(np.min(positive)) if positive.size else None
        facts["max_kappa"] = float(np.max(k))
        if positive.size:
            liv = np.asarray(log_iv(nu, positive))
            log_ive = liv - positive
            i = int(np.argmin(log_ive))
            facts["min_log_ive"] = (float(log_ive[i]), float(positive[i]))
            j = int(np.argmax(liv))
            facts["max_log_iv"] = (float(liv[j]), float(positive[j]))
    return facts
