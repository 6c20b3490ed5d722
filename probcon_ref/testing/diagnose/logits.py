"""The per-anchor losses under a wrong convention, in NumPy float64 on the host.

Each key of :data:`~probcon_ref.testing.diagnose.variants.VARIANTS` names a change to the
logits ``F_ab`` (the contract, section :ref:`3 <contract-loss>`), to the candidates of an anchor, or to the cosines;
:func:`variant_losses` evaluates the loss under it, with the stable form of the contract, section :ref:`4 <contract-gradient>`
so that a variant's tiny losses keep their digits. :func:`scaled_losses` does the same for
the variants with a free scalar (a temperature applied on top of kappa), which
``fitted`` solves for.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ...special import log_iv
from ..host import kappas, log_c, stack

__all__ = ["NORMALISER_SHIFTS", "SCALED", "stable_losses", "variant_losses", "scaled_losses", "shift_text"]

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


def _cosines(key: str, x: dict, memo: dict):
    """The cosines, or for ``"unnormalised"`` the raw dot products (None where they are
    not finite, or where every raw norm is 1 and they are the cosines)."""
    if "stack" not in memo:
        memo["stack"] = stack(x)
    z, _, _, cos = memo["stack"]
    if key != "unnormalised":
        return cos
    with np.errstate(over="ignore", invalid="ignore"):
        dots = z @ z.T
    if not np.all(np.isfinite(dots)) or np.allclose(np.linalg.norm(z, axis=1), 1.0):
        return None
    return dots


def _log_iv(nu: float, k, memo: dict):
    """``log I_nu(k)`` of the batch's concentrations, kept per order."""
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
    """The logits with the two views' concentrations multiplied, ``kappa_a kappa_b``."""
    kk = k[:, None] * k[None, :]
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
    """The PCL logits ``F_ab`` (all pairs) under variant ``key``; None where it is undefined."""
    k = kappas(x)
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
    if key == "normaliser-sign":
        return -lc[None, :] + k[None, :] * cos
    if key == "anchor-kappa":
        return k[:, None] * cos
    if key == "anchor-concentration":
        return lc[None, :] + k[:, None] * cos
    return lc[None, :] + k[None, :] * cos


def _ntxent_logits(key: str, cos, temperature):
    """The NT-Xent logits under variant ``key``; None where it is the reference's."""
    if key == "temperature-multiplied":
        return cos * temperature
    if key.startswith("temperature="):
        t = float(key.split("=", 1)[1])
        return None if t == temperature else cos / t
    return cos / temperature


def _candidates(key: str, n: int):
    """Which ``b`` enter anchor ``a``'s denominator under variant ``key`` ((2N, 2N) booleans;
    None where it is undefined)."""
    idx = np.arange(2 * n)
    pos = (idx + n) % (2 * n)
    if key in ("self-included", "self-zero-logit"):
        return np.ones((2 * n, 2 * n), dtype=bool)
    if key == "positive-excluded":
        return None if n == 1 else (idx[:, None] != idx[None, :]) & (idx[None, :] != pos[:, None])
    if key == "cross-view-only":
        view = idx // n
        return view[:, None] != view[None, :]
    return idx[:, None] != idx[None, :]


def _losses_of(f, key: str, n: int):
    """Per-anchor losses of the logits ``f`` with the candidates of variant ``key``."""
    candidates = _candidates(key, n)
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
    """Per-anchor losses (2N,) under variant ``key``; None where it is undefined.

    ``memo`` (a dict) keeps the pieces shared by the variants of one batch.
    """
    memo = {} if memo is None else memo
    cos = _cosines(key, x, memo)
    if cos is None:
        return None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        f = _pcl_logits(key, x, d, cos, kappa_mode, memo) if loss == "pcl" else _ntxent_logits(key, cos, temperature)
    return _losses_of(f, key, x["z1"].shape[0])


def scaled_losses(key: str, s: float, x: dict, d: int, memo: dict | None = None):
    """Per-anchor PCL losses (2N,) under the variant ``key`` of :data:`SCALED` with scalar ``s``."""
    memo = {} if memo is None else memo
    if "stack" not in memo:
        memo["stack"] = stack(x)
    cos = memo["stack"][3]
    k = kappas(x)
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
    return _losses_of(f, key, x["z1"].shape[0])
