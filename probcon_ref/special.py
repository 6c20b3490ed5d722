"""Special functions of the vMF distribution, in pure array-API operations (the contract, section 5).

The order ``nu`` is a Python scalar (it comes from the embedding dimension); the argument
``x`` is an array of any shape, from any array-API library, on any device, and no SciPy call
is made. The file follows the docs page *special functions*: the power series
:eq:`eq-bessel-series` (order ``nu < n0``, ``x <= x_s``), Debye's uniform expansion
:eq:`eq-debye` (order ``nu >= n0``, any ``x``; the ratio is the exact derivative of the same
truncated sum :eq:`eq-debye-ratio`), the recurrence from the order
``n1 = nu + ceil(n0 - nu) >= n0`` down to ``nu`` for ``x > x_s`` :eq:`eq-ratio-recurrence`,
the choice of a branch (with ``where`` on clamped inputs, so a discarded branch never makes
inf or NaN), the normaliser, the inverse of the ratio, and last the public functions, which
check their arguments
(:mod:`probcon_ref._inputs`). The exact numbers the methods need are the host-side tables
of :mod:`probcon_ref.tables`.

The docstrings use the page's notation: ``q = sqrt(n^2 + x^2)`` and ``y = n / q`` (the code's
``s`` and ``t``), Debye's sum ``U(y) = sum_{k<K} u_k(y) / n^k``, the power series
``Phi_nu(x) = sum_k (x^2/4)^k / (k! (nu+1)_k)``, ``Lambda_nu(x) = log I_nu(x) - nu log x``,
and the ratio ``R_k(x) = I_{k+1}(x) / I_k(x)`` at order ``k``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from . import _arrays, _inputs
from .tables import (
    Plan,
    QUADRATURE_NODES,
    debye_coefficients,
    debye_plan_for,
    debye_polynomials,
    gauss_legendre,
    log_iv_scaled_at_zero,
    normalizer_anchor,
    plan_for_eps,
)

__all__ = ["log_iv", "bessel_ratio", "log_vmf_normalizer", "inverse_bessel_ratio"]


_LOG_2PI = math.log(2.0 * math.pi)


def _plan(xp, dtype) -> Plan:
    """The plan (:func:`probcon_ref.tables.plan_for_eps`) of the working dtype ``dtype`` (no equation: a lookup)."""
    return plan_for_eps(float(xp.finfo(dtype).eps))


def _horner(xp, coeffs, t):
    """``sum_j coeffs[j] t^j`` by Horner's rule (no equation: arithmetic shared by the expansions)."""
    acc = xp.zeros_like(t) + coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * t + c
    return acc


# ---------------------------------------------------------------------------------------
# The power series (small x)
# ---------------------------------------------------------------------------------------


def _series_sums(xp, nu: float, x, terms: int):
    """``Phi_nu(x)`` and ``Phi_{nu+1}(x)`` :eq:`eq-bessel-series`.

    ``Phi_nu(x) = sum_k (x^2/4)^k / (k! (nu+1)_k)``, summed over ``k = 0 .. terms``.
    """
    q = 0.25 * x * x
    term0 = xp.ones_like(x)
    term1 = xp.ones_like(x)
    sum0 = xp.ones_like(x)
    sum1 = xp.ones_like(x)
    for k in range(1, terms + 1):
        term0 = term0 * q / (k * (nu + k))
        term1 = term1 * q / (k * (nu + 1 + k))
        sum0 = sum0 + term0
        sum1 = sum1 + term1
    return sum0, sum1


def _series_ratio(xp, nu: float, x, terms: int):
    """I_{nu+1}(x) / I_nu(x) from the power series :eq:`eq-series-quantities`.

    ``I_{nu+1}(x) / I_nu(x) = x Phi_{nu+1}(x) / (2 (nu+1) Phi_nu(x))``.
    """
    sum0, sum1 = _series_sums(xp, nu, x, terms)
    return (0.5 / (nu + 1)) * x * sum1 / sum0


# ---------------------------------------------------------------------------------------
# Debye's uniform expansion (order n >= n0)
# ---------------------------------------------------------------------------------------


def _debye_pieces(xp, n: float, x, terms: int, *, derivative: bool = False):
    """``q = sqrt(n^2 + x^2)`` and ``log U(y)``, or ``U'(y)/U(y)``, at ``y = n/q`` :eq:`eq-debye`.

    Returns ``(q, log U)`` or, with ``derivative``, ``(q, U'/U)``; the code calls ``q`` and ``y``
    ``s`` and ``t``.
    """
    s = xp.hypot(xp.zeros_like(x) + n, x)
    t = n / s
    coef = debye_coefficients(n, terms)
    big_s = _horner(xp, coef.sum, t)
    if derivative:
        return s, _horner(xp, coef.derivative, t) / big_s
    return s, xp.log(big_s)


def _debye_log_ive(xp, n: float, x, terms: int):
    """``log I_n(x) - x`` by Debye's expansion :eq:`eq-debye` (order ``n >= n0``, ``x > 0``).

    With ``e = n / (q + x)``, the exponential part ``q - x`` is ``n e`` and
    ``n log(x / (n + q)) = -n log1p((n + n e) / x)``: nothing of size ``x`` or ``n log x``
    cancels, and the result keeps the digits of its own size however large ``x`` is.
    """
    s, log_sum = _debye_pieces(xp, n, x, terms)
    e = n / (s + x)
    return -n * xp.log1p((n + n * e) / x) + n * e - 0.5 * _LOG_2PI - 0.5 * xp.log(s) + log_sum


def _debye_log_iv(xp, n: float, x, terms: int):
    """log I_n(x) by Debye's expansion :eq:`eq-debye` (order ``n >= n0``)."""
    return _debye_log_ive(xp, n, x, terms) + x


def _debye_log_iv_scaled(xp, n: float, x, terms: int):
    """log I_n(x) - n log x by Debye's expansion :eq:`eq-debye`; finite at ``x = 0``."""
    s, log_sum = _debye_pieces(xp, n, x, terms)
    return s - n * xp.log(n + s) - 0.5 * _LOG_2PI - 0.5 * xp.log(s) + log_sum


def _debye_ratio(xp, n: float, x, terms: int):
    """I_{n+1}(x) / I_n(x) as the derivative of Debye's expansion :eq:`eq-debye-ratio`.

    ``d/dx log I_n(x) - n/x = x [1/(n+q) - 1/(2 q^2) - (n/q^3) U'(y)/U(y)]``.
    """
    s, dlog_s = _debye_pieces(xp, n, x, terms, derivative=True)
    inv_s = 1 / s
    return x * (1 / (n + s) - 0.5 * inv_s * inv_s - n * inv_s * inv_s * inv_s * dlog_s)


# ---------------------------------------------------------------------------------------
# Small orders: the recurrence, downwards
# ---------------------------------------------------------------------------------------


def _recurrence_down(xp, nu: float, x, plan: Plan):
    """Ratios and log I from the order ``n1 = nu + ceil(n0 - nu) >= n0`` down to ``nu`` :eq:`eq-ratio-recurrence`.

    ``R_{k-1} = x / (2k + x R_k)`` and ``I_{k-1}/I_k = 2k/x + R_k`` for ``k = n1, ..., nu + 1``
    (the code's ``top`` is ``n1``, ``m = n1 - nu`` the number of steps, ``ratio`` the current
    ``R_k``); returns ``(log I_nu(x) - x, R_nu(x))`` for ``x > 0``, the first free of terms of
    size ``x``.
    """
    m = math.ceil(plan.debye_min_order - nu)
    top = nu + m
    ratio = _debye_ratio(xp, top, x, plan.debye_terms)
    growth = xp.ones_like(x)
    for k in (top - i for i in range(m)):
        growth = growth * (2 * k / x + ratio)
        ratio = x / (2 * k + x * ratio)
    return _debye_log_ive(xp, top, x, plan.debye_terms) + xp.log(growth), ratio


# ---------------------------------------------------------------------------------------
# Choosing a branch without producing NaN
# ---------------------------------------------------------------------------------------


def _split_at(xp, x, xs: float):
    """``x`` clamped to ``[0, xs]`` and to ``[xs, inf)`` for the two sides of a branch at ``xs``.

    No equation: plumbing.

    Written with ``where`` rather than ``minimum``/``maximum``: at ``x == xs`` those split the
    derivative between their arguments, so autograd through the selected branch would get
    half of it. Here the branch that ``where`` selects sees ``x`` itself.
    """
    edge = _arrays.const(xp, xs, x)
    return xp.where(x <= xs, x, edge), xp.where(x > xs, x, edge)


class SmallOrderPieces(NamedTuple):
    """Both sides of the branch at ``x_s`` for an order below Debye's range (``nu < n0``).

    ``series_log`` is ``Lambda_nu(x) - Lambda_nu(0) = log Phi_nu(x)``, the log of the power
    series :eq:`eq-bessel-series` at ``min(x, x_s)``; ``recurrence_log_ive`` is
    ``log I_nu(x) - x`` at ``large = max(x, x_s)`` from the recurrence
    :eq:`eq-ratio-recurrence`; ``use_series`` says which side holds. Each quantity below
    is formed from these once, in its own terms.
    """

    use_series: object
    series_log: object
    large: object
    recurrence_log_ive: object


def _small_order_pieces(xp, nu: float, x, plan: Plan) -> SmallOrderPieces:
    """The two sides of the branch for ``nu < n0`` (working dtype, validated ``x > 0`` or ``x >= 0``).

    No equation of its own: it evaluates :class:`SmallOrderPieces`.
    """
    small, large = _split_at(xp, x, plan.series_max_x)
    log_ive_large, _ = _recurrence_down(xp, nu, large, plan)
    series_log = xp.log(_series_sums(xp, nu, small, plan.series_terms)[0])
    return SmallOrderPieces(x <= plan.series_max_x, series_log, large, log_ive_large)


def _log_iv_scaled(xp, nu: float, x):
    """``Lambda_nu(x) = log I_nu(x) - nu log x``, finite and exact at ``x = 0`` (working dtype, validated x).

    Debye's expansion in its range; below, ``log Phi_nu(x) - nu log 2 - lgamma(nu + 1)`` up to
    ``x_s`` :eq:`eq-series-quantities` and the recurrence beyond.
    """
    plan = _plan(xp, x.dtype)
    if nu >= plan.debye_min_order:
        return _debye_log_iv_scaled(xp, nu, x, plan.debye_terms)
    p = _small_order_pieces(xp, nu, x, plan)
    by_recurrence = p.recurrence_log_ive + p.large - nu * xp.log(p.large)
    return xp.where(p.use_series, p.series_log + log_iv_scaled_at_zero(nu), by_recurrence)


def _log_iv_positive(xp, nu: float, x):
    """``log I_nu(x)`` for ``x > 0`` (working dtype): Debye, or the series and the recurrence.

    No equation of its own: it chooses the branch (see :func:`log_iv`).
    """
    plan = _plan(xp, x.dtype)
    if nu >= plan.debye_min_order:
        return _debye_log_iv(xp, nu, x, plan.debye_terms)
    p = _small_order_pieces(xp, nu, x, plan)
    by_series = p.series_log + log_iv_scaled_at_zero(nu) + nu * xp.log(x)
    return xp.where(p.use_series, by_series, p.recurrence_log_ive + p.large)


def ratio_working(xp, nu: float, x):
    """I_{nu+1}(x) / I_nu(x) on a validated working-dtype array (all three methods).

    No equation of its own: it chooses the branch, Debye's ratio, the series or the recurrence
    (see :func:`bessel_ratio`).
    """
    plan = _plan(xp, x.dtype)
    if nu >= plan.debye_min_order:
        return _debye_ratio(xp, nu, x, plan.debye_terms)
    small, large = _split_at(xp, x, plan.series_max_x)
    _, by_recurrence = _recurrence_down(xp, nu, large, plan)
    by_series = _series_ratio(xp, nu, small, plan.series_terms)
    return xp.where(x <= plan.series_max_x, by_series, by_recurrence)


# ---------------------------------------------------------------------------------------
# The normaliser
# ---------------------------------------------------------------------------------------


class NormalizerTerms(NamedTuple):
    """The normaliser in the two forms the logits use :eq:`eq-normalizer-shift` :eq:`eq-normalizer-peak`.

    ``shift = log C_d(kappa) - log C_d(0)``, the normaliser measured from the uniform
    density's, and ``peak = shift + kappa``, the logit of a candidate at cosine 1. Each is
    computed on its own, to its own precision: ``shift`` is of size ``kappa`` for large
    ``kappa``, ``peak`` only of size ``((d - 1)/2) log kappa``, and neither is obtained from
    the other by a subtraction that would cost the digits of the smaller.
    """

    shift: object
    peak: object


def _debye_normalizer_terms(xp, n: float, x, terms: int) -> NormalizerTerms:
    """:class:`NormalizerTerms` from Debye's expansion at order ``n >= n0``.

    With ``q = hypot(n, x)``, ``y = n/q`` and ``g = q - n = x (x/q) / (1 + y)`` (the code's
    ``s``, ``t``, ``u``, with ``r = x/q``), both share
    ``common = n log1p(g / 2n) + log1p(g / n) / 2 - (log U(y) - log U(1))``:
    ``shift = common - g`` :eq:`eq-normalizer-shift` and ``peak = common + (x - g)`` with
    ``x - g = n x (n + q + x) / ((n + q)(q + x))``, evaluated divided through by ``q`` as
    ``n r (1 + y / (1 + r)) / (1 + y)`` :eq:`eq-normalizer-peak`. Every term is positive or
    small, so neither form cancels, and nothing overflows below the largest float (``x^2`` is
    never formed).
    """
    s, log_sum = _debye_pieces(xp, n, x, terms)
    r = x / s
    t = n / s
    u = x * (r / (1 + t))
    common = (n * xp.log1p(u / (2 * n)) + 0.5 * xp.log1p(u / n)
              - (log_sum - debye_coefficients(n, terms).log_sum_at_one))
    return NormalizerTerms(common - u, common + n * r * (1 + t / (1 + r)) / (1 + t))


def _normalizer_terms(xp, nu: float, x) -> NormalizerTerms:
    """:class:`NormalizerTerms` at order ``nu`` (working dtype, validated x).

    No equation of its own: it chooses the branch. Orders in Debye's range:
    :func:`_debye_normalizer_terms`. Below, with ``Lambda_nu(x) = log I_nu(x) - nu log x``: up
    to ``x_s``, ``shift = -log Phi_nu(x)`` (the power series) and ``peak = x + shift`` (both
    below ``x_s`` in size); beyond, from the recurrence's ``log I_nu(x) - x``,
    ``peak = nu log x + Lambda_nu(0) - (log I_nu(x) - x)``, terms of size ``nu log x`` at
    most, and ``shift = peak - x``.
    """
    plan = _plan(xp, x.dtype)
    if nu >= plan.debye_min_order:
        return _debye_normalizer_terms(xp, nu, x, plan.debye_terms)
    p = _small_order_pieces(xp, nu, x, plan)
    peak_large = nu * xp.log(p.large) + log_iv_scaled_at_zero(nu) - p.recurrence_log_ive
    return NormalizerTerms(xp.where(p.use_series, -p.series_log, peak_large - p.large),
                           xp.where(p.use_series, x - p.series_log, peak_large))


def log_vmf_normalizer_working(xp, d: int, kappa):
    """``log C_d(kappa)`` on an already validated working-dtype array :eq:`eq-vmf-normalizer`.

    ``log C_d(k) = nu log k - (d/2) log(2 pi) - log I_nu(k) = -(d/2) log(2 pi) - [log I_nu(k) - nu log k]``,
    the bracket computed as one scaled quantity so that ``k = 0`` gives the exact limit.
    Near its zero (``d >= 19``), where that difference of large terms would lose digits, the
    value comes from :func:`normalizer_near_zero` instead.
    """
    nu = d / 2 - 1
    direct = -(d / 2) * _LOG_2PI - _log_iv_scaled(xp, nu, kappa)
    anchor = normalizer_anchor(d, float(xp.finfo(kappa.dtype).eps))
    if anchor is None:
        return direct
    k0, _, half_width = anchor
    near = xp.abs(kappa - k0) <= half_width
    inside = xp.where(near, kappa, _arrays.const(xp, k0, kappa))  # every entry in the window
    return xp.where(near, normalizer_near_zero(xp, d, inside, anchor), direct)


def log_vmf_normalizer_terms_working(xp, d: int, kappa) -> NormalizerTerms:
    """``log C_d(kappa) - log C_d(0)`` and ``log C_d(kappa) - log C_d(0) + kappa`` :eq:`eq-normalizer-shift` :eq:`eq-normalizer-peak`.

    A constant added to every candidate's logit leaves the softmax unchanged, so the loss
    measures the normaliser from the uniform density's, which avoids the terms of size
    ``(d/2) log d`` that ``log C_d`` carries for large ``d``. The logit
    ``F_ab = shift_b + kappa_b c_ab = peak_b - kappa_b (1 - c_ab)`` is then formed from
    whichever of the two forms cancels less :eq:`eq-positive-logit`.
    """
    return _normalizer_terms(xp, d / 2 - 1, kappa)


def normalizer_near_zero(xp, d: int, kappa, anchor):
    """``log C_d(k) = log C_d(k_ref) - int_{k_ref}^{k} A_d(xi) dxi`` near its zero :eq:`eq-normalizer-anchor`.

    ``log C_d(k_ref)`` at the reference point ``k_ref`` (the code's ``k0``) is known to 50
    digits (:func:`probcon_ref.tables.normalizer_anchor`) and the integral, whose
    size is about ``|log C_d(k)|`` itself, by Gauss-Legendre quadrature: the error is relative
    to the value, not to the large terms that cancel in the direct formula.
    """
    k0, c0, _ = anchor
    nodes, weights = gauss_legendre(QUADRATURE_NODES)
    half = 0.5 * (kappa - k0)
    integral = xp.zeros_like(kappa)
    for x_i, w_i in zip(nodes, weights):
        integral = integral + w_i * ratio_working(xp, d / 2 - 1, k0 + half * (1 + x_i))
    return c0 - half * integral


def mean_resultant_length_working(xp, d: int, kappa):
    """``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)`` on a validated array :eq:`eq-mean-resultant`."""
    return ratio_working(xp, d / 2 - 1, kappa)


# ---------------------------------------------------------------------------------------
# The inverse of the ratio
# ---------------------------------------------------------------------------------------


def ratio_bracket(xp, nu: float, r):
    """Bounds ``lo <= A_{nu}^{-1}(r) <= hi`` from Amos's bounds of the ratio :eq:`eq-ratio-bounds`.

    ``G_{a,b}(x) = x / (a + sqrt(x^2 + b^2))`` brackets the ratio,
    ``G_{nu+1/2, nu+3/2}(x) <= I_{nu+1}(x)/I_nu(x) <= G_{nu+1/2, nu+1/2}(x)`` (Amos 1974), and
    ``G_{a,b}(x) = r`` solves in closed form, ``x = r (a + sqrt(b^2 - r^2 (b^2 - a^2))) / (1 - r^2)``.
    Both ends tend to ``(nu + 1/2) / (1 - r)`` as ``r -> 1`` and to a multiple of ``r`` as
    ``r -> 0``; ``1 - r^2`` is formed as ``(1 - r)(1 + r)``, exact near 1.
    """
    one_minus_sq = (1 - r) * (1 + r)
    a = nu + 0.5
    lo = (2 * a) * r / one_minus_sq
    hi = r * (a + xp.sqrt((a + 1) ** 2 - r * r * (2 * a + 1))) / one_minus_sq
    return lo, hi


def _ratio_slope(xp, nu: float, x, a, switch: float):
    """``R_nu'(x)``: ``1 - R^2 - (2 nu + 1) R / x`` below ``switch``, the slope of ``G_{nu+1/2, nu+1/2}`` above.

    ``R`` is the ratio at ``x`` (the code's ``a``). The first form cancels to ``O(1 / x^2)`` for
    large ``x`` and loses its digits there; the second,
    ``(alpha + alpha^2 / sqrt(x^2 + alpha^2)) / (alpha + sqrt(x^2 + alpha^2))^2`` with
    ``alpha = nu + 1/2`` (the code's ``c``, and ``q`` for the square root), has the same leading
    behaviour ``alpha / x^2`` and nothing that cancels :eq:`eq-ratio-derivative`.
    """
    c = nu + 0.5
    exact = 1 - a * a - (2 * nu + 1) * a / x
    q = xp.sqrt(x * x + c * c)
    model = (c + c * c / q) / ((c + q) * (c + q))
    return xp.where(x <= switch, exact, model)


def inverse_ratio_working(xp, nu: float, rho, iterations: int | None = None):
    """The ``x >= 0`` with ``R_nu(x) = rho`` on a validated working-dtype array (see :func:`inverse_bessel_ratio`).

    Newton steps on ``R_nu(x) = rho`` inside the bracket of :func:`ratio_bracket`
    :eq:`eq-ratio-bounds` from the start ``x0`` :eq:`eq-banerjee`, with the slope of
    :func:`_ratio_slope` :eq:`eq-ratio-derivative`; the inverted series for small ``rho``.
    """
    eps = float(xp.finfo(rho.dtype).eps)
    if iterations is None:
        iterations = 12 if eps < 1e-10 else 8
    r = xp.where(rho > 0, rho, _arrays.const(xp, 0.5, rho))  # rho = 0 takes the series below
    lo, hi = ratio_bracket(xp, nu, r)
    lo, hi = lo * (1 - 4 * eps), hi * (1 + 4 * eps)  # room for the rounding of R_nu and of the bounds
    x = xp.minimum(xp.maximum(r * (2 * nu + 2 - r * r) / ((1 - r) * (1 + r)), lo), hi)
    # Above this x the exact slope keeps fewer than 2 digits (its rounding is eps x^2 / (nu + 1/2)).
    switch = math.sqrt(1e-2 * (nu + 0.5) / eps)
    floor = _arrays.const(xp, float(xp.finfo(rho.dtype).smallest_normal), r)
    for _ in range(iterations):
        a = ratio_working(xp, nu, x)
        f = a - r
        lo = xp.where(f < 0, x, lo)
        hi = xp.where(f > 0, x, hi)
        newton = x - f / xp.maximum(_ratio_slope(xp, nu, x, a, switch), floor)
        inside = (newton > lo) & (newton < hi)
        x = xp.where(inside, newton, xp.sqrt(lo) * xp.sqrt(hi))
    # Small rho: the inverted power series, x = 2 (nu + 1) rho (1 + (nu + 1) rho^2 / (nu + 2)) + O(rho^5),
    # exact to rounding below eps^(1/4) / 4, and free of the rounding that R_nu suffers for
    # subnormal x, which Newton's step would amplify by 1/R_nu' = 2 (nu + 1).
    series = (2 * nu + 2) * rho * (1 + (nu + 1) / (nu + 2) * rho * rho)
    return xp.where(rho < eps**0.25 / 4, series, x)


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------


def log_iv(nu, x):
    """Natural log of the modified Bessel function of the first kind, ``log I_nu(x)``.

    Implements :eq:`eq-debye`, :eq:`eq-bessel-series` and :eq:`eq-ratio-recurrence`.

    Parameters
    ----------
    nu : float
        Order, a Python number ``>= 0``.
    x : array
        Argument, ``>= 0`` and finite, any shape, any array-API library and device.

    Returns
    -------
    array
        ``log I_nu(x)`` in the dtype, namespace and device of ``x``; ``-inf`` at
        ``x = 0`` when ``nu > 0`` (where ``I_nu(0) = 0``) and 0 when ``nu = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref.special import log_iv
    >>> float(log_iv(0.5, np.asarray(1.0)))  # I_{1/2}(1) = sqrt(2/pi) sinh(1)
    -0.0643...
    """
    nu = _inputs.order(nu)
    xp, x, out_dtype = _inputs.special_argument(x, "x")
    if nu == 0:
        out = _log_iv_scaled(xp, nu, x)
    else:
        # log I_nu(0) = -inf for nu > 0; evaluate on a clamped copy so no branch divides by 0.
        positive = x > 0
        finite = _log_iv_positive(xp, nu, xp.where(positive, x, xp.ones_like(x)))
        out = xp.where(positive, finite, xp.full_like(x, -math.inf))
    return _arrays.to_output(xp, out, out_dtype)


def bessel_ratio(nu, x):
    """The ratio ``I_{nu+1}(x) / I_nu(x)`` :eq:`eq-debye-ratio`.

    For ``nu = d/2 - 1`` this is the vMF mean resultant length ``A_d(x)`` :eq:`eq-mean-resultant`,
    and ``d/dx log C_d(x) = -A_d(x)``. Zero at ``x = 0``; tends to 1 as ``x`` grows.

    Parameters
    ----------
    nu : float
        Order, a Python number ``>= 0``.
    x : array
        Argument, ``>= 0`` and finite.

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref.special import bessel_ratio
    >>> float(bessel_ratio(0.5, np.asarray(2.0)))  # coth(2) - 1/2
    0.5373...
    """
    nu = _inputs.order(nu)
    xp, x, out_dtype = _inputs.special_argument(x, "x")
    return _arrays.to_output(xp, ratio_working(xp, nu, x), out_dtype)


def log_vmf_normalizer(d, kappa):
    """Log-normaliser of the von Mises-Fisher density on the unit sphere in ``R^d``.

    ``log C_d(kappa) = nu log(kappa) - (d/2) log(2 pi) - log I_nu(kappa)`` with ``nu = d/2 - 1``
    :eq:`eq-vmf-normalizer`, and at ``kappa = 0`` its limit
    ``lgamma(d/2) - log 2 - (d/2) log pi`` (the uniform density), reached continuously.

    Parameters
    ----------
    d : int
        Dimension of the ambient space, ``>= 2``.
    kappa : array
        Concentrations, ``>= 0`` and finite.

    Examples
    --------
    >>> import numpy as np, math
    >>> from probcon_ref.special import log_vmf_normalizer
    >>> float(log_vmf_normalizer(3, np.asarray(0.0))) == -math.log(4 * math.pi)
    True
    """
    d = _inputs.dimension(d)
    xp, kappa, out_dtype = _inputs.special_argument(kappa, "kappa")
    return _arrays.to_output(xp, log_vmf_normalizer_working(xp, d, kappa), out_dtype)


def inverse_bessel_ratio(nu, rho, *, iterations: int | None = None):
    """The ``x >= 0`` with ``bessel_ratio(nu, x) = rho``, for ``0 <= rho < 1`` :eq:`eq-optimal-kappa`.

    With ``nu = d/2 - 1`` this is the optimal confidence ``A_d^{-1}(c)`` of a positive pair
    whose views have cosine ``c``; ``R_nu(x)`` below is ``bessel_ratio(nu, x)``. The root lies in
    the bracket of :func:`ratio_bracket`
    :eq:`eq-ratio-bounds`; the iteration starts from the approximation of Banerjee et al.
    (2005), ``x0 = rho (2 nu + 2 - rho^2) / (1 - rho^2)`` :eq:`eq-banerjee`, clamped into the
    bracket, and takes Newton steps on ``R_nu(x) = rho`` with the slope of :func:`_ratio_slope`
    :eq:`eq-ratio-derivative`. Each step shrinks the bracket to the side where the root
    lies; a step that would leave it is replaced by the bracket's geometric mean. So every
    iterate stays in ``[lo, hi]``, which is finite for every ``rho < 1`` (``rho`` within an ulp
    of 1 and subnormal ``rho`` included), and the result is as accurate as the ratio allows:
    near ``rho = 1`` a change of one ulp in ``rho`` moves the answer by a relative
    ``eps / (1 - rho)``, and so does the answer's error.

    Parameters
    ----------
    nu : float
        Order, ``>= 0`` (a Python or NumPy number).
    rho : array
        Target ratio in ``[0, 1)``.
    iterations : int, optional
        Number of Newton steps, ``>= 1`` (default: 12 in float64, 8 in float32).

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref.special import bessel_ratio, inverse_bessel_ratio
    >>> x = inverse_bessel_ratio(63.0, np.asarray([0.25, 0.9]))
    >>> np.allclose(bessel_ratio(63.0, x), [0.25, 0.9], rtol=1e-14)
    True
    """
    nu = _inputs.order(nu)
    if iterations is not None:
        iterations = _arrays.integer_scalar(iterations, "iterations")
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
    xp, r, out_dtype = _inputs.special_argument(rho, "rho", below_one=True)
    x = inverse_ratio_working(xp, nu, r, iterations)
    if out_dtype != r.dtype and _arrays.read_bool(xp.all(x <= float(xp.finfo(out_dtype).max))) is False:
        raise OverflowError(f"the inverse ratio is not representable in {out_dtype}: it exceeds the largest "
                            f"{out_dtype} ({float(xp.finfo(out_dtype).max):.5g}) for rho this close to 1")
    return _arrays.to_output(xp, x, out_dtype)
