"""The host-side exact tables of the special functions (the contract, section 5).

Everything here is computed once, in Python on the host, exactly (rationals, ``decimal`` at
50 digits) or to the last bit, and cached: Debye's polynomials and the coefficients of their
sum at one order, the per-precision plan (where each method of :mod:`probcon_ref.special`
is used and with how many terms), the Gauss-Legendre rule, and the 50-digit reference
points of the normaliser near its zero (:func:`normalizer_anchor`). :mod:`probcon_ref.special`
turns these numbers into array operations; nothing here touches an array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

__all__ = ["debye_polynomials", "Plan", "plan_for_eps", "debye_plan_for", "DebyeCoefficients",
           "debye_coefficients", "log_iv_scaled_at_zero", "gauss_legendre", "QUADRATURE_NODES",
           "normalizer_anchor"]

_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------
# Debye's polynomials and the plan of each precision
# ---------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def debye_polynomials(count: int) -> tuple[tuple[Fraction, ...], ...]:
    """Exact coefficients of Debye's polynomials ``u_0 .. u_{count-1}`` :eq:`eq-debye-poly`.

    ``u_0 = 1`` and ``u_{k+1}(y) = y^2 (1 - y^2) u_k'(y) / 2 + (1/8) int_0^y (1 - 5 xi^2) u_k(xi) dxi``.
    Entry ``j`` of each tuple is the coefficient of ``y^j``.
    """
    polys = [(Fraction(1),)]
    while len(polys) < count:
        u = polys[-1]
        nxt = [Fraction(0)] * (len(u) + 3)
        for j, c in enumerate(u):
            if j:  # y^2 (1 - y^2) / 2 * j c y^(j-1)
                nxt[j + 1] += Fraction(j) * c / 2
                nxt[j + 3] -= Fraction(j) * c / 2
            # (1/8) * integral of (1 - 5 xi^2) c xi^j
            nxt[j + 1] += c / (8 * (j + 1))
            nxt[j + 3] -= 5 * c / (8 * (j + 3))
        while nxt and nxt[-1] == 0:
            nxt.pop()
        polys.append(tuple(nxt))
    return tuple(polys)


@lru_cache(maxsize=None)
def _debye_polynomial_bound(k: int) -> float:
    """``max_{0<=y<=1} |u_k(y)|``, sampled at 401 points (used to pick the number of terms)."""
    coeffs = [float(c) for c in reversed(debye_polynomials(k + 1)[k])]
    best = 0.0
    for i in range(401):
        t, acc = i / 400, 0.0
        for c in coeffs:
            acc = acc * t + c
        best = max(best, abs(acc))
    return best


@dataclass(frozen=True)
class Plan:
    """Where each method is used, for one floating-point precision (no equation: a container).

    ``debye_min_order`` is ``n0``; ``debye_terms`` the number ``K`` of terms of the Debye sum at
    order ``n0`` (higher orders need no more); ``series_max_x`` is ``x_s`` and
    ``series_terms`` the index ``J`` of the last power-series term summed (terms ``0 .. J``).
    """

    debye_min_order: float
    debye_terms: int
    series_max_x: float
    series_terms: int


@lru_cache(maxsize=None)
def plan_for_eps(eps: float) -> Plan:
    """Choose ``n0``, the Debye terms, ``x_s`` and the series terms from machine epsilon.

    No equation: it sets the parameters of Debye's expansion and of the power series (the
    special-functions page, *Parameters*).

    Debye's sum keeps ``u_0 .. u_{K-1}`` with ``K`` the smallest count whose first omitted
    term ``max|u_K| / n0^K`` is below ``eps / 16`` (a rule of thumb; the docs page bounds the
    remainder rigorously, in terms of the total variation of ``u_K``). The power series sums
    the terms ``k = 0 .. J``, ``J`` the first index whose term at order 0 and ``x_s``,
    ``(x_s / 2)^(2J) / (J!)^2``, is below ``eps / 16``: an absolute threshold, which bounds the
    relative error too, since the sum is at least 1 and higher orders have smaller terms.
    """
    n0 = 30.0 if eps < 1e-10 else 10.0
    x_s = n0 / 2
    target = eps / 16
    k = 1
    while _debye_polynomial_bound(k) / n0**k >= target:
        k += 1
    terms = k  # u_0 .. u_{k-1}; u_k is the first omitted
    q = (x_s / 2) ** 2
    j, term = 0, 1.0
    while term >= target:
        j += 1
        term *= q / (j * j)
    return Plan(n0, terms, x_s, j)


def debye_plan_for(nu: float, dtype_eps: float) -> int | None:
    """Number of Debye terms when order ``nu`` is in Debye's range for this precision, else ``None``.

    No equation: a lookup in the plan.
    """
    plan = plan_for_eps(dtype_eps)
    return plan.debye_terms if nu >= plan.debye_min_order else None


class DebyeCoefficients(NamedTuple):
    """What Debye's expansion at one order needs, as floats: ``U(y)``, ``U'(y)``, ``log U(1)``.

    No equation: a container (see :func:`debye_coefficients`).
    """

    sum: tuple
    derivative: tuple
    log_sum_at_one: float


@lru_cache(maxsize=None)
def debye_coefficients(n: float, terms: int) -> DebyeCoefficients:
    """Coefficients in ``y`` of ``U(y) = sum_k u_k(y) / n^k`` and of ``U'(y)``, and ``log U(1)`` :eq:`eq-debye`.

    Summed exactly in rationals for this order ``n``, then rounded once; ``log U(1)`` sums the
    rounded coefficients in the order of Horner's rule at ``t = 1``, as the array code does,
    so that the normaliser's shift is exactly 0 at ``kappa = 0`` in float64.
    """
    polys = debye_polynomials(terms)
    inv_n = 1 / Fraction(n)
    coeffs = [Fraction(0)] * (3 * (terms - 1) + 1)
    for k, u in enumerate(polys):
        scale = inv_n**k
        for j, c in enumerate(u):
            coeffs[j] += c * scale
    deriv = [j * c for j, c in enumerate(coeffs)][1:]
    rounded = tuple(float(c) for c in coeffs)
    at_one = rounded[-1]
    for c in reversed(rounded[:-1]):
        at_one = at_one * 1.0 + c
    return DebyeCoefficients(rounded, tuple(float(c) for c in deriv), math.log(at_one))


# ---------------------------------------------------------------------------------------
# Constants of the normaliser
# ---------------------------------------------------------------------------------------


def log_iv_scaled_at_zero(nu: float) -> float:
    """``Lambda_nu(0) = lim_{x->0} log I_nu(x) - nu log x = -nu log 2 - lgamma(nu + 1)`` :eq:`eq-series-quantities`."""
    return -(nu * math.log(2.0) + math.lgamma(nu + 1.0))


#: Gauss-Legendre nodes of the quadrature near the normaliser's zero :eq:`eq-normalizer-anchor`.
QUADRATURE_NODES = 12


@lru_cache(maxsize=None)
def gauss_legendre(m: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes and weights of the ``m``-point Gauss-Legendre rule on [-1, 1] (Newton on P_m).

    The quadrature of :eq:`eq-normalizer-anchor`.
    """
    nodes, weights = [], []
    for i in range(1, m + 1):
        x = math.cos(math.pi * (i - 0.25) / (m + 0.5))
        for _ in range(100):
            p0, p1 = 1.0, x
            for k in range(2, m + 1):
                p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
            dp = m * (x * p1 - p0) / (x * x - 1)
            step = p1 / dp
            x -= step
            if abs(step) < 1e-17:
                break
        nodes.append(x)
        weights.append(2 / ((1 - x * x) * dp * dp))
    return tuple(nodes), tuple(weights)


@lru_cache(maxsize=None)
def normalizer_anchor(d: int, eps: float = 2.0**-52):
    """``(k0, log C_d(k0), half_width)`` with ``log C_d(k0)`` close to 0, or ``None``.

    ``k0`` is the reference point ``kappa_ref`` of the docs page.

    ``log C_d`` falls from ``log C_d(0) = lgamma(d/2) - log 2 - (d/2) log pi`` (positive for
    ``d >= 19``) towards ``-inf``, crossing zero once. ``k0`` is a float64 near that crossing,
    found on the leading term of Debye's expansion and rounded to the working precision
    (``eps``) so that ``k - k0`` is exact; ``log C_d(k0)`` is then evaluated with
    Python's ``decimal`` at 50 digits from the power series, whose terms are all positive.
    The window ``|k - k0| <= half_width`` covers the arguments where the direct formula
    would miss the accuracy target (the contract, section 5); the value near the zero then
    comes from :eq:`eq-normalizer-anchor`.
    """
    nu = d / 2 - 1
    if _log_normalizer_at_zero(d) <= 0:
        return None

    def leading(k: float) -> float:  # log C_d(k), Debye's expansion to leading order
        s = math.hypot(nu, k)
        return nu * math.log(k) - (d / 2) * _LOG_2PI - (nu * math.log(k / (nu + s)) + s
                                                          - 0.5 * _LOG_2PI - 0.5 * math.log(s))

    lo, hi = 1e-3, 1.0
    while leading(hi) > 0:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if leading(mid) > 0 else (lo, mid)
    mantissa, exponent = math.frexp(0.5 * (lo + hi))
    bits = round(-math.log2(eps)) + 1
    k0 = math.ldexp(round(mantissa * 2**bits), exponent - bits)
    half_width = max(4.0, 0.04 * k0) if eps < 1e-10 else max(8.0, 0.1 * k0)
    return k0, float(_log_normalizer_decimal(d, k0)), half_width


def _log_normalizer_at_zero(d: int) -> float:
    return math.lgamma(d / 2) - math.log(2) - (d / 2) * math.log(math.pi)


_PI_50 = "3.14159265358979323846264338327950288419716939937510582097494459"


def _log_normalizer_decimal(d: int, k: float):
    """``log C_d(k)`` at 50 digits with :mod:`decimal` :eq:`eq-bessel-series`.

    ``log C_d(k) = -(d/2) log(2 pi) + nu log 2 + lgamma(nu + 1) - log sum_j (k^2/4)^j / (j! (nu+1)_j)``.
    """
    import decimal

    ctx = decimal.Context(prec=60, Emax=10**9, Emin=-(10**9))
    D = ctx.create_decimal
    pi = D(_PI_50)
    nu = D(d) / 2 - 1
    q = ctx.multiply(D(k), D(k)) / 4
    term, total, j = D(1), D(1), 0
    while True:
        j += 1
        term = ctx.divide(ctx.multiply(term, q), ctx.multiply(D(j), nu + j))
        total = ctx.add(total, term)
        if j > float(q) ** 0.5 and term < total * D("1e-55"):
            break
    log_gamma = _log_gamma_half_integer(d, ctx, pi)  # lgamma(d/2) = lgamma(nu + 1)
    return ctx.add(ctx.subtract(ctx.add(-(D(d) / 2) * (2 * pi).ln(ctx), nu * D(2).ln(ctx)), total.ln(ctx)), log_gamma)


def _log_gamma_half_integer(d: int, ctx, pi):
    """``log Gamma(d/2)`` exactly (to the context's precision) for an integer ``d >= 2``."""
    D = ctx.create_decimal
    if d % 2 == 0:
        return D(math.factorial(d // 2 - 1)).ln(ctx)
    m = (d - 1) // 2  # Gamma(m + 1/2) = (2m)! sqrt(pi) / (4^m m!)
    ratio = ctx.divide(D(math.factorial(2 * m)), D(4**m * math.factorial(m)))
    return ctx.add(ratio.ln(ctx), pi.ln(ctx) / 2)
