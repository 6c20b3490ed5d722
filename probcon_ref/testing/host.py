"""The pieces of the contract, sections :ref:`1 <contract-notation>`, :ref:`2 <contract-derivation>`, :ref:`3 <contract-loss>`, :ref:`4 <contract-gradient>` that the measure and the diagnosis read, in NumPy float64.

Computed on the host from a case's inputs (a dict with ``z1``, ``z2`` and, for the PCL,
``kappa1``, ``kappa2``; and, where the case has extra candidates, ``extra_z`` and, for the
PCL, ``extra_kappa``), with the special functions of :mod:`probcon_ref.special` (no SciPy):
directions and cosines, the logits' size, the reduction weights, the residuals ``W`` and
``G`` of the contract, section :ref:`4 <contract-gradient>`, and the facts about a case that the regime diagnoses read.
The candidates are the 2N views, then the M extra ones (the contract, section
:ref:`3 <contract-loss>`): a matrix over anchors and candidates is (2N, 2N + M), and the
anchors are its first 2N columns too.
"""

from __future__ import annotations

import numpy as np

from ..special import bessel_ratio, log_iv, log_vmf_normalizer

__all__ = ["stack", "extra_count", "kappas", "candidate_kappas", "log_c", "logit_scale", "positive_logits",
           "reduction_weights", "residuals", "case_facts"]


def extra_count(x: dict) -> int:
    """M, the number of extra candidates of the inputs ``x`` (0 without them)."""
    extra = x.get("extra_z")
    return 0 if extra is None else int(extra.shape[0])


def stack(x: dict):
    """``z`` (2N + M, d), the views then the extra candidates; their ``mu`` and raw norms; and
    the cosines (2N, 2N + M) of each anchor with each candidate."""
    rows = [x["z1"], x["z2"]] + ([x["extra_z"]] if extra_count(x) else [])
    z = np.concatenate(rows, axis=0)
    scale = np.max(np.abs(z), axis=1, keepdims=True)
    y = z / scale
    norm = scale * np.sqrt(np.sum(y * y, axis=1, keepdims=True))
    mu = y / np.sqrt(np.sum(y * y, axis=1, keepdims=True))
    return z, mu, norm[:, 0], mu[:2 * x["z1"].shape[0]] @ mu.T


def kappas(x: dict):
    """The 2N concentrations of the views, view 1 first."""
    return np.concatenate([x["kappa1"], x["kappa2"]])


def candidate_kappas(x: dict):
    """The concentrations of every candidate: the 2N views', then the extra candidates'."""
    return np.concatenate([kappas(x)] + ([x["extra_kappa"]] if extra_count(x) else []))


def log_c(d: int, k) -> np.ndarray:
    """``log C_d(k)`` (the contract, section :ref:`1 <contract-notation>`) in float64."""
    return np.asarray(log_vmf_normalizer(d, np.asarray(k, dtype=np.float64)))


def logit_scale(x: dict, loss: str, d: int, temperature) -> np.ndarray:
    """Per-anchor magnitude of the logits' ingredients, ``max_{b != a} |log C_d(k_b)| + k_b``
    over every candidate ``b``, the extra ones included.

    A float implementation that forms the logits and then their log-sum-exp makes an
    absolute error of a few units of roundoff times this number in ``loss_a``.
    """
    n2 = 2 * x["z1"].shape[0]
    if loss == "ntxent":
        return np.full(n2, 1.0 / temperature)
    k = candidate_kappas(x)
    s = np.abs(log_c(d, k)) + k
    full = np.broadcast_to(s, (n2, k.size)).copy()
    full[np.arange(n2), np.arange(n2)] = -np.inf
    return np.max(full, axis=1)


def positive_logits(x: dict, loss: str, d: int, temperature) -> np.ndarray:
    """``F_{a,p(a)}`` of each anchor: the number the textbook ``-F_ap + logsumexp_b F_ab``
    subtracts, whose rounding is the smallest non-zero loss that form can return."""
    n = x["z1"].shape[0]
    _, mu, _, _ = stack(x)
    pos = (np.arange(2 * n) + n) % (2 * n)
    c = np.sum(mu[:2 * n] * mu[pos], axis=1)
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
    ``W``, ``G`` and the cosines are (2N, 2N + M), the extra candidates' columns last (the
    contract, section :ref:`3 <contract-loss>`); ``mu`` and the norms are of every candidate,
    ``A_d`` of the views.
    """
    n = x["z1"].shape[0]
    n2 = 2 * n
    _, mu, norm, cos = stack(x)
    idx = np.arange(n2)
    pos = (idx + n) % n2
    if loss == "pcl":
        k = candidate_kappas(x)
        f = log_c(d, k)[None, :] + k[None, :] * cos
        scale = k
        length = np.asarray(bessel_ratio(d / 2 - 1, k[:n2]))
    else:
        f = cos / temperature
        scale = np.full(cos.shape[1], 1.0 / temperature)
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
    anchors of their largest candidate's logit (``min_top_logit``), extra candidates included."""
    if loss == "pcl":
        k = candidate_kappas(x)
        f = log_c(d, k)[None, :] + k[None, :] * cos
    else:
        f = cos / temperature
    idx = np.arange(f.shape[0])
    self_logits = f[idx, idx].copy()
    off = f.copy()
    off[idx, idx] = -np.inf
    return {"max_logit": float(np.max(off)), "max_self_logit": float(np.max(self_logits)),
            "min_top_logit": float(np.min(np.max(off, axis=1)))}


def case_facts(x: dict, loss: str, d: int, temperature, tags: frozenset, ref_losses) -> dict:
    """Numbers the regime diagnoses read, computed once per case: N, d, M, the tags, the raw
    norms' range, the smallest loss, the logits' range and, for the PCL, the range of kappa
    and where ``log ive`` is smallest and ``log I_nu`` largest (of every candidate, the extra
    ones included: an implementation evaluates their normalisers too)."""
    n, m = x["z1"].shape[0], extra_count(x)
    _, _, norm, cos = stack(x)
    facts = {"n": n, "d": d, "m": m, "tags": tags, "min_norm": float(np.min(norm)),
             "max_norm": float(np.max(norm)), "min_loss": float(np.min(ref_losses)) if n > 1 or m else 0.0}
    facts.update(_logit_range(x, loss, d, temperature, cos))
    if loss == "pcl":
        k = candidate_kappas(x)
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
