"""Numbers and curves that the documentation shows, computed from the code when the site is built.

Nothing here is typed in: every figure script in ``docs/figures/`` and every generated
table calls one of these functions, each cached so that a page and its figure share one
computation. The accuracy study evaluates mpmath at 50 significant digits on a grid sized
to keep the whole build within a minute or so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from probcon_ref import ntxent_loss, pcl_loss, pcl_loss_and_grad
from probcon_ref import special
from probcon_ref.testing.tolerances import SPECIAL

# ---------------------------------------------------------------------------------------
# Accuracy of the special functions against mpmath
# ---------------------------------------------------------------------------------------

#: Orders sampled: both sides of the switch between methods (n0 = 10 in float32, 30 in
#: float64), half-integer orders (odd dimensions) and the largest order of the contract, section 5.
ACCURACY_ORDERS = (0.0, 0.5, 1.0, 2.5, 7.0, 9.5, 10.0, 14.5, 29.5, 30.0, 63.0, 255.0, 1023.0, 2047.0)

#: The targets of the contract, section 5, as (float64, float32): the rows of probcon_ref.testing.tolerances.
SPEC_TARGETS = SPECIAL

QUANTITY_LABELS = {
    "log_iv": r"$\log I_\nu(x)$",
    "ratio": r"$I_{\nu+1}(x)/I_\nu(x)$",
    "log_vmf": r"$\log C_d(\kappa)$, $d = 2\nu + 2$",
}

QUANTITY_MEASURES = {
    "log_iv": r"$\lvert e \rvert / \max(1, \lvert \log I_\nu \rvert, \nu + x A)$",
    "ratio": r"$\lvert e \rvert / A$",
    "log_vmf": r"$\lvert e \rvert / \max(1, \lvert \log C_d \rvert)$",
}


def accuracy_arguments(nu: float) -> np.ndarray:
    """The arguments x sampled for order ``nu``, each exactly representable in float32.

    A log-spaced sweep from 1e-3 to 1e6 plus points around the turning region x ~ nu,
    where the Debye expansion's variable t = nu / sqrt(nu^2 + x^2) crosses its middle.
    """
    x = list(np.geomspace(1e-3, 1e6, 25))
    if nu > 0:
        x += [nu * f for f in (0.5, 0.9, 1.0, 1.1, 2.0)]
    x32 = np.unique(np.asarray(x, dtype=np.float32))
    return x32.astype(np.float64)


@dataclass(frozen=True)
class AccuracySample:
    """Reference values (mpmath, 50 digits, rounded once) and the code's errors."""

    nu: np.ndarray
    x: np.ndarray
    ref_log_iv: np.ndarray
    ref_ratio: np.ndarray
    ref_log_vmf: np.ndarray
    errors: dict  # (quantity, dtype name) -> array of scaled errors, one per point


def _mpmath_reference(nu: float, x: float):
    """log I_nu(x), I_{nu+1}(x)/I_nu(x) and log C_{2nu+2}(x) at 50 digits (x > 0)."""
    import mpmath
    from mpmath import mp, mpf

    with mp.workdps(50):
        xm, num = mpf(float(x)), mpf(float(nu))
        # A large term limit: for orders ~2000 and x ~ 1e4..1e5 mpmath sums a long series.
        i0 = mpmath.besseli(num, xm, maxterms=10**6)
        i1 = mpmath.besseli(num + 1, xm, maxterms=10**6)
        log_i0 = mpmath.log(i0)
        d = 2 * num + 2
        log_c = num * mpmath.log(xm) - (d / 2) * mpmath.log(2 * mpmath.pi) - log_i0
        return float(log_i0), float(i1 / i0), float(log_c)


@lru_cache(maxsize=None)
def special_accuracy() -> AccuracySample:
    """Errors of ``log_iv``, ``bessel_ratio`` and ``log_vmf_normalizer`` in float64 and float32."""
    nus, xs, refs = [], [], []
    for nu in ACCURACY_ORDERS:
        for x in accuracy_arguments(nu):
            nus.append(nu)
            xs.append(x)
            refs.append(_mpmath_reference(nu, x))
    nu_arr, x_arr = np.asarray(nus), np.asarray(xs)
    ref = np.asarray(refs)
    ref_log_iv, ref_ratio, ref_log_vmf = ref[:, 0], ref[:, 1], ref[:, 2]
    errors = {}
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        got_log_iv = np.empty_like(x_arr)
        got_ratio = np.empty_like(x_arr)
        got_log_vmf = np.empty_like(x_arr)
        for nu in ACCURACY_ORDERS:
            sel = nu_arr == nu
            xd = x_arr[sel].astype(dtype)
            got_log_iv[sel] = special.log_iv(nu, xd)
            got_ratio[sel] = special.bessel_ratio(nu, xd)
            got_log_vmf[sel] = special.log_vmf_normalizer(int(2 * nu + 2), xd)
        scale_iv = np.maximum.reduce([np.ones_like(x_arr), np.abs(ref_log_iv), nu_arr + x_arr * ref_ratio])
        errors[("log_iv", name)] = np.abs(got_log_iv - ref_log_iv) / scale_iv
        errors[("ratio", name)] = np.abs(got_ratio - ref_ratio) / ref_ratio
        errors[("log_vmf", name)] = np.abs(got_log_vmf - ref_log_vmf) / np.maximum(1.0, np.abs(ref_log_vmf))
    return AccuracySample(nu_arr, x_arr, ref_log_iv, ref_ratio, ref_log_vmf, errors)


def scipy_ratio_error() -> float:
    """Worst relative error of ``ive(nu+1, x) / ive(nu, x)`` on the accuracy grid, where finite."""
    from scipy.special import ive

    s = special_accuracy()
    with np.errstate(all="ignore"):
        got = ive(s.nu + 1, s.x) / ive(s.nu, s.x)
    ok = np.isfinite(got)
    return float(np.max(np.abs(got[ok] - s.ref_ratio[ok]) / s.ref_ratio[ok]))


# ---------------------------------------------------------------------------------------
# The loss: gradient check, landscape, approach to NT-Xent
# ---------------------------------------------------------------------------------------


def example_batch(n: int = 6, d: int = 16, seed: int = 3):
    """A small batch with agreeing views, uneven norms and confidences from 0.1 to 100."""
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d)) * rng.lognormal(0.0, 1.0, size=(n, 1))
    z2 = z1 + 0.7 * rng.normal(size=(n, d)) * np.abs(z1).mean(axis=1, keepdims=True)
    k1 = 10.0 ** rng.uniform(-1, 2, size=n)
    k2 = 10.0 ** rng.uniform(-1, 2, size=n)
    return z1, z2, k1, k2


@lru_cache(maxsize=None)
def gradient_check() -> dict:
    """Analytic gradient of the mean PCL against central finite differences (float64).

    Returns, per block, the max-norm difference divided by the block's max-norm.
    """
    z1, z2, k1, k2 = example_batch()
    _, grads = pcl_loss_and_grad(z1, z2, k1, k2)
    args = [z1, z2, k1, k2]
    names = ["z1", "z2", "kappa1", "kappa2"]
    out = {}
    for i, name in enumerate(names):
        analytic = np.asarray(getattr(grads, name))
        numeric = np.zeros_like(args[i])
        for idx in np.ndindex(args[i].shape):
            h = 1e-6 * max(1.0, abs(args[i][idx]))
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[i][idx] += h
            minus[i][idx] -= h
            numeric[idx] = (float(pcl_loss(*plus)) - float(pcl_loss(*minus))) / (2 * h)
        out[name] = float(np.max(np.abs(analytic - numeric)) / np.max(np.abs(analytic)))
    return out


def landscape_setup(d: int = 32, n: int = 8, negative_kappa: float = 10.0, seed: int = 0):
    """Anchor 0, its positive at a chosen cosine, and fixed random negatives.

    Returns a function ``(c, kappa_p) -> loss of anchor 0`` that calls :func:`pcl_loss`.
    """
    rng = np.random.default_rng(seed)
    others = rng.normal(size=(2 * n, d))
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    e0 = np.zeros(d)
    e0[0] = 1.0
    e1 = np.zeros(d)
    e1[1] = 1.0

    def anchor_loss(c: float, kappa_p: float) -> float:
        z = others.copy()
        z[0] = e0
        z[n] = c * e0 + math.sqrt(max(0.0, 1.0 - c * c)) * e1
        kappa = np.full(2 * n, negative_kappa)
        kappa[n] = kappa_p
        losses = pcl_loss(z[:n], z[n:], kappa[:n], kappa[n:], reduction="none")
        return float(losses[0])

    return anchor_loss


def _relative_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b| / |b|``, and 0 where both are 0 (a loss that underflowed in both)."""
    diff = np.abs(a - b)
    scale = np.abs(b)
    return np.where(diff == 0, 0.0, diff / np.where(scale == 0, 1.0, scale))


@lru_cache(maxsize=None)
def ntxent_limit(temperature: float = 0.1, seed: int = 5) -> dict:
    """PCL with every kappa near 1/tau, against NT-Xent(tau).

    ``kappa_b = exp(s g_b) / tau`` with standard normal ``g_b``: the spread ``s`` measures how
    far the confidences are from the common value 1/tau. Also PCL with one common kappa
    against NT-Xent at tau = 1/kappa, over a range of kappa.
    """
    rng = np.random.default_rng(seed)
    n, d = 32, 64
    z1 = rng.normal(size=(n, d))
    z2 = z1 + 0.8 * rng.normal(size=(n, d))
    g1, g2 = rng.normal(size=(2, n))
    reference = float(ntxent_loss(z1, z2, temperature=temperature))
    spreads = np.geomspace(1e-8, 1.0, 33)
    gaps = []
    for s in spreads:
        k1 = np.exp(s * g1) / temperature
        k2 = np.exp(s * g2) / temperature
        gaps.append(abs(float(pcl_loss(z1, z2, k1, k2)) - reference) / reference)
    kappas = np.geomspace(0.1, 300.0, 41)
    pcl_common, ntx = [], []
    for k in kappas:
        full = np.full(n, k)
        pcl_common.append(float(pcl_loss(z1, z2, full, full)))
        ntx.append(float(ntxent_loss(z1, z2, temperature=1.0 / k)))
    pcl_common, ntx = np.asarray(pcl_common), np.asarray(ntx)
    exact = float(pcl_loss(z1, z2, np.full(n, 1 / temperature), np.full(n, 1 / temperature)))
    return {
        "temperature": temperature,
        "n": n,
        "d": d,
        "spreads": spreads,
        "gaps": np.asarray(gaps),
        "kappas": kappas,
        "pcl_common": pcl_common,
        "ntxent": ntx,
        "common_rel_diff": _relative_difference(pcl_common, ntx),
        "exact_rel_diff": abs(exact - reference) / reference,
    }
