"""The per-anchor losses under a wrong convention, in NumPy float64 on the host.

Each key of :data:`~probcon_ref.testing.diagnose.variants.VARIANTS` names a change to the
logits ``F_ab`` (the contract, section :ref:`3 <contract-loss>`), to the candidates of an anchor, or to the cosines;
the extra candidates of a batch, where it has any, are candidates too, and take the same
change (the variants of :data:`EXTRA_ONLY` change their part alone);
:func:`variant_losses` evaluates the loss under it, with the stable form of the contract, section :ref:`4 <contract-gradient>`
so that a variant's tiny losses keep their digits. :func:`scaled_losses` does the same for
the variants with a free scalar (a temperature applied on top of kappa), which
``fitted`` solves for.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ...special import log_iv
from ..host import candidate_kappas, extra_count, log_c, stack

__all__ = ["NORMALISER_SHIFTS", "SCALED", "EXTRA_ONLY", "stable_losses", "variant_losses", "scaled_losses",
           "shift_text"]

#: The normaliser's dimension, power or order off: key -> (shift of the power of kappa, shift of
#: the Bessel order), both relative to nu = d/2 - 1. Equal shifts are the normaliser of another
#: dimension (d + 2 shift), whose constant -(d/2) log(2 pi) is the same for every candidate.
NORMALISER_SHIFTS = {
    "normaliser-dimension=d+2": (1.0, 1.0),
    "normaliser-dimension=d+1": (0.5, 0.5),
    "normaliser-dimension=d-1": (-0.5, -0.5),
    "normaliser-dimension=d-2": (-1.0, -1.0),
    "normaliser-power=nu+1": (1.0, 0.0),
    "normaliser-power=nu+1/2": (0.5, 0.0),
    "normaliser-power=nu-1/2": (-0.5, 0.0),
    "normaliser-power=nu-1": (-1.0, 0.0),
    "normaliser-order": (0.0, 1.0),
    "normaliser-order=nu+1/2": (0.0, 0.5),
    "normaliser-order=nu-1/2": (0.0, -0.5),
    "normaliser-order=nu-1": (0.0, -1.0),
}

#: The variants with a free scalar ``s = 1/tau`` (a temperature applied on top of kappa):
#: key -> what the logits become.
SCALED = {
    "temperature-on-logits": "(log C_d(kappa_b) + kappa_b c_ab) / tau",
    "temperature-on-cosine": "log C_d(kappa_b) + kappa_b c_ab / tau",
    "temperature-on-kappa": "log C_d(kappa_b / tau) + (kappa_b / tau) c_ab",
}


def shift_text(shift: float) -> str:
    """``+ 1``, ``- 1/2``... for a shift of the order or the power."""
    frac = Fraction(shift).limit_denominator(2)
    return f"{'+' if frac > 0 else '-'} {abs(frac)}"


def stable_losses(f, candidates, pos):
    """``-F_ap + log sum_{b in candidates} exp(F_ab)`` per anchor, from the gaps to the positive.

    As the contract, section :ref:`4 <contract-gradient>` computes it (``m + log1p(...)``), so that a variant's tiny losses keep
    their digits; the positive need not be among the candidates (a variant may drop it).
    """
    rows = np.arange(f.shape[0])
    gaps = np.where(candidates, f - f[rows, pos][:, None], -np.inf)
    has_pos = candidates[rows, pos]
    others = gaps.copy()
    others[rows, pos] = -np.inf
    m = np.max(others, axis=1)
    m = np.where(has_pos, np.maximum(m, 0.0), m)
    m = np.where(np.isfinite(m), m, 0.0)
    s = np.sum(np.exp(others - m[:, None]), axis=1)
    return m + np.where(has_pos, np.log1p(s + np.expm1(-m)), np.log(s))


#: The variants that change only the extra candidates' part (undefined without them).
EXTRA_ONLY = ("extra-ignored", "extra-no-normaliser", "extra-unnormalised")


def _cosines(key: str, x: dict, memo: dict):
    """The cosines (2N, 2N + M) of each anchor with each candidate, or under ``"unnormalised"``
    the raw dot products, under ``"extra-unnormalised"`` the anchor's direction with the extra
    candidates' raw rows (None where they are not finite, or where every raw norm is 1 and
    they are the cosines)."""
    if "stack" not in memo:
        memo["stack"] = stack(x)
    z, mu, norm, cos = memo["stack"]
    n2 = cos.shape[0]
    if key not in ("unnormalised", "extra-unnormalised"):
        return cos
    with np.errstate(over="ignore", invalid="ignore"):
        if key == "unnormalised":
            dots, rows = z[:n2] @ z.T, norm
        else:
            dots, rows = np.concatenate([cos[:, :n2], mu[:n2] @ z[n2:].T], axis=1), norm[n2:]
    if not np.all(np.isfinite(dots)) or np.allclose(rows, 1.0):
        return None
    return dots


def _log_iv(nu: float, k, memo: dict):
    """``log I_nu(k)`` of the candidates' concentrations, kept per order."""
    key = ("log_iv", nu)
    if key not in memo:
        memo[key] = np.asarray(log_iv(nu, k))
    return memo[key]


def _shifted_normaliser(key: str, k, d: int, lc, memo: dict):
    """``log C`` with the power and the order shifted as :data:`NORMALISER_SHIFTS` says; None
    where it is undefined (an order below 0, or kappa = 0 with a power that differs from the order)."""
    dp, do = NORMALISER_SHIFTS[key]
    nu = d / 2 - 1
    if nu + do < 0:
        return None
    if dp == do:
        return log_c(int(round(d + 2 * dp)), k)
    if np.any(k == 0):
        return None
    return lc + dp * np.log(k) + _log_iv(nu, k, memo) - _log_iv(nu + do, k, memo)


def _product_logits(key: str, k, d: int, cos, lc):
    """The logits with the two concentrations multiplied, the anchor's and the candidate's,
    ``kappa_a kappa_b``."""
    kk = k[:cos.shape[0], None] * k[None, :]
    if key == "kappa-product-no-normaliser":
        return kk * cos
    if key == "kappa-product":
        return lc[None, :] + kk * cos
    if kk.size > 70000:
        return None
    return log_c(d, kk.ravel()).reshape(kk.shape) + kk * cos


def _reparametrised(key: str, k, kappa_mode: str):
    """The concentrations under ``exp-kappa`` / ``kappa-as-log`` (None where undefined)."""
    if key == "exp-kappa":
        return None if np.max(k) > 600 else np.exp(k)
    if kappa_mode != "log" or np.min(k) < 1.0:
        return None
    return np.log(k)


def _pcl_logits(key: str, x: dict, d: int, cos, kappa_mode: str, memo: dict):
    """The PCL logits ``F_ab`` (every anchor with every candidate) under variant ``key``; None
    where it is undefined."""
    k = candidate_kappas(x)  # of the candidates; the anchors' are the first 2N
    rows = k[:cos.shape[0], None]
    if key in ("exp-kappa", "kappa-as-log"):
        k = _reparametrised(key, k, kappa_mode)
        return None if k is None else log_c(d, k)[None, :] + k[None, :] * cos
    if "log_c" not in memo:
        memo["log_c"] = log_c(d, k)
    lc = memo["log_c"]
    if key in NORMALISER_SHIFTS:
        wrong = _shifted_normaliser(key, k, d, lc, memo)
        return None if wrong is None else wrong[None, :] + k[None, :] * cos
    if key.startswith("kappa-product"):
        return _product_logits(key, k, d, cos, lc)
    if key == "no-normaliser":
        return k[None, :] * cos
    if key == "extra-no-normaliser":
        return np.where(np.arange(k.size) < cos.shape[0], lc, 0.0)[None, :] + k[None, :] * cos
    if key == "normaliser-sign":
        return -lc[None, :] + k[None, :] * cos
    if key == "anchor-kappa":
        return rows * cos
    if key == "anchor-concentration":
        return lc[None, :] + rows * cos
    return lc[None, :] + k[None, :] * cos


def _ntxent_logits(key: str, cos, temperature):
    """The NT-Xent logits under variant ``key``; None where it is the reference's."""
    if key == "temperature-multiplied":
        return cos * temperature
    if key.startswith("temperature="):
        t = float(key.split("=", 1)[1])
        return None if t == temperature else cos / t
    return cos / temperature


def _candidates(key: str, n: int, m: int):
    """Which ``b`` enter anchor ``a``'s denominator under variant ``key`` ((2N, 2N + M)
    booleans, the M extra candidates last; None where it is undefined)."""
    idx, cols = np.arange(2 * n), np.arange(2 * n + m)
    pos = (idx + n) % (2 * n)
    if key in EXTRA_ONLY and m == 0:
        return None
    if key in ("self-included", "self-zero-logit"):
        return np.ones((2 * n, 2 * n + m), dtype=bool)
    if key == "positive-excluded":
        return None if n == 1 and m == 0 else (idx[:, None] != cols[None, :]) & (cols[None, :] != pos[:, None])
    if key == "cross-view-only":  # with extra candidates, whether they count is anyone's guess
        view = idx // n
        return None if m else view[:, None] != view[None, :]
    if key == "extra-ignored":
        return (idx[:, None] != cols[None, :]) & (cols[None, :] < 2 * n)
    return idx[:, None] != cols[None, :]


def _losses_of(f, key: str, n: int, m: int):
    """Per-anchor losses of the logits ``f`` with the candidates of variant ``key``."""
    candidates = _candidates(key, n, m)
    if f is None or candidates is None:
        return None
    f = np.array(f, dtype=np.float64)
    idx = np.arange(2 * n)
    if key == "self-zero-logit":
        f[idx, idx] = 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = stable_losses(f, candidates, (idx + n) % (2 * n))
    return out if np.all(np.isfinite(out)) else None


def variant_losses(key: str, x: dict, loss: str, d: int, temperature, kappa_mode: str = "kappa",
                   memo: dict | None = None):
    """Per-anchor losses (2N,) under variant ``key``; None where it is undefined. The extra
    candidates of ``x``, if any, are candidates under every variant (but ``extra-ignored``)
    and take its logits.

    ``memo`` (a dict) keeps the pieces shared by the variants of one batch.
    """
    memo = {} if memo is None else memo
    n, m = x["z1"].shape[0], extra_count(x)
    if key in EXTRA_ONLY and m == 0:
        return None
    cos = _cosines(key, x, memo)
    if cos is None:
        return None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        f = _pcl_logits(key, x, d, cos, kappa_mode, memo) if loss == "pcl" else _ntxent_logits(key, cos, temperature)
    return _losses_of(f, key, n, m)


def scaled_losses(key: str, s: float, x: dict, d: int, memo: dict | None = None):
    """Per-anchor PCL losses (2N,) under the variant ``key`` of :data:`SCALED` with scalar ``s``
    (the extra candidates, if any, scaled alike)."""
    memo = {} if memo is None else memo
    if "stack" not in memo:
        memo["stack"] = stack(x)
    cos = memo["stack"][3]
    k = candidate_kappas(x)
    if "log_c" not in memo:
        memo["log_c"] = log_c(d, k)
    lc = memo["log_c"]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if key == "temperature-on-logits":
            f = s * (lc[None, :] + k[None, :] * cos)
        elif key == "temperature-on-cosine":
            f = lc[None, :] + s * k[None, :] * cos
        else:
            f = log_c(d, s * k)[None, :] + s * k[None, :] * cos
    return _losses_of(f, key, x["z1"].shape[0], extra_count(x))
