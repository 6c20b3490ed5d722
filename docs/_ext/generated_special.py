"""Numbers of the special-functions page, computed from the code when the site is built.

* What the plan of each precision (:func:`probcon_ref.tables.plan_for_eps`) guarantees: the
  first omitted Debye term that the plan tests, Olver's rigorous bound of the truncation
  error in terms of the total variation of Debye's polynomials (computed exactly, in
  rationals), and the tail of the power series beyond the terms the code sums.
* SciPy's ``ive`` where it returns 0: the thresholds, found by bisection on the floats
  themselves, and the value of the scaled function there.
* Which method the code uses where in the ``(nu, x)`` plane, from the plan and the branch
  test of :mod:`probcon_ref.special`, for the map on the page.
* Smaller facts the prose states: the growth of the recurrence's product, the first dimension
  whose normaliser crosses zero, the reference points near those zeros.
* The page's notation, for the notation page.

The figure scripts ``docs/figures/special_*.py`` and ``tests/test_docs_special.py`` call the
data functions directly, so a page, its figures and its tests share one computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from probcon_ref import special, tables

ROOT = Path(__file__).resolve().parents[2]

#: The working precisions, each with its own plan (float16 and bfloat16 compute in float32).
DTYPES = ("float64", "float32")


def _fmt(x: float) -> str:
    """``docs_content._fmt``, imported when first used: ``docs_content`` imports this module."""
    from docs_content import _fmt as fmt

    return fmt(x)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """``docs_content._table``, imported when first used."""
    from docs_content import _table as table

    return table(header, rows)


def _tex(x: float, digits: int = 3) -> str:
    """``x`` in TeX to ``digits`` significant digits: ``1.75``, ``6.81 \\times 10^{-8}``."""
    text = f"{x:.{digits}g}"
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa} \\times 10^{{{int(exponent)}}}"


def eps_of(dtype: str) -> float:
    return float(np.finfo(dtype).eps)


def plan_of(dtype: str) -> tables.Plan:
    return tables.plan_for_eps(eps_of(dtype))


def special_plan_summary() -> str:
    """The plan of each working precision, as :func:`probcon_ref.tables.plan_for_eps` returns it."""
    rows = []
    for dtype in DTYPES:
        p = plan_of(dtype)
        rows.append([dtype, _fmt(eps_of(dtype)), f"{p.debye_min_order:g}", str(p.debye_terms),
                     f"{p.series_max_x:g}", str(p.series_terms)])
    return _table(["dtype", "machine epsilon $\\varepsilon$", "$n_0$", "Debye terms $K$", "$x_s$",
                   "last series term $J$ (terms $0, \\dots, J$)"], rows)


# ---------------------------------------------------------------------------------------
# Debye's polynomials, exactly: values, critical points, total variation
# ---------------------------------------------------------------------------------------


def _value(coeffs, y: Fraction) -> Fraction:
    acc = Fraction(0)
    for c in reversed(coeffs):
        acc = acc * y + c
    return acc


def _derivative(coeffs) -> list[Fraction]:
    return [j * c for j, c in enumerate(coeffs)][1:]


def _sturm_roots(coeffs, a: Fraction, b: Fraction) -> int:
    """The number of distinct real zeros in ``(a, b]`` of a polynomial with ``p(a) != 0`` (Sturm)."""

    def trim(p):
        p = list(p)
        while p and p[-1] == 0:
            p.pop()
        return p

    def remainder(num, den):
        num = list(num)
        while len(num) >= len(den) and num:
            f, shift = num[-1] / den[-1], len(num) - len(den)
            for i, c in enumerate(den):
                num[shift + i] -= f * c
            num = trim(num)
        return num

    chain = [trim(coeffs), trim(_derivative(coeffs))]
    while len(chain[-1]) > 1:
        r = remainder(chain[-2], chain[-1])
        if not r:
            break
        chain.append([-c for c in r])

    def sign_changes(x):
        signs = [v for v in (_value(p, x) for p in chain) if v != 0]
        return sum((s < 0) != (t < 0) for s, t in zip(signs, signs[1:]))

    return sign_changes(a) - sign_changes(b)


@lru_cache(maxsize=None)
def critical_points(k: int, bits: int = 64) -> tuple[Fraction, ...]:
    """The zeros of ``u_k'`` in ``(0, 1)``, each within ``2**-bits``, in exact rationals.

    Located by the sign changes of ``u_k'`` on a grid, refined by bisection, and counted
    against Sturm's theorem: the grid is made finer until no zero is missed.
    """
    d = _derivative(tables.debye_polynomials(k + 1)[k])
    while d and d[0] == 0:  # u_k' = y^m w(y): the zeros at y = 0 are not inside (0, 1)
        d = d[1:]
    expected = _sturm_roots(d, Fraction(0), Fraction(1)) - (1 if _value(d, Fraction(1)) == 0 else 0)
    for grid in (256, 1024, 4096, 16384):
        points = _sign_changes(d, grid, bits)
        if len(points) == expected:
            return points
    raise RuntimeError(f"u_{k}': found {len(points)} zeros in (0, 1), Sturm counts {expected}")


def _sign_changes(d, grid: int, bits: int) -> tuple[Fraction, ...]:
    """Zeros of ``d`` in ``(0, 1)`` between sign changes on ``grid`` points, refined by bisection."""
    scale = math.lcm(*(c.denominator for c in d))
    ints = [int(c * scale) for c in d]
    m = len(ints) - 1

    def sign_at(i: int) -> int:  # the sign of d(i / grid), in integers: grid^m scale d(i / grid)
        acc = ints[m]
        for j in range(m - 1, -1, -1):
            acc = acc * i + ints[j] * grid ** (m - j)
        return (acc > 0) - (acc < 0)

    signs = [sign_at(i) for i in range(grid + 1)]
    points = []
    for i in range(grid):
        if signs[i + 1] == 0 and i + 1 < grid:
            points.append(Fraction(i + 1, grid))
        elif signs[i] * signs[i + 1] < 0:
            lo, hi, s_lo = Fraction(i, grid), Fraction(i + 1, grid), signs[i]
            for _ in range(bits - grid.bit_length() + 1):
                mid = (lo + hi) / 2
                f_mid = _value(d, mid)
                if f_mid == 0:
                    lo = hi = mid
                    break
                lo, hi = (mid, hi) if (f_mid > 0) == (s_lo > 0) else (lo, mid)
            points.append((lo + hi) / 2)
    return tuple(points)


def variation(k: int, a: float | Fraction = 0, b: float | Fraction = 1) -> float:
    """Total variation ``V_{a,b}(u_k) = int_a^b |u_k'(y)| dy`` of Debye's polynomial ``u_k``."""
    a, b = Fraction(a), Fraction(b)
    u = tables.debye_polynomials(k + 1)[k]
    points = [a] + [c for c in critical_points(k) if a < c < b] + [b]
    return float(sum(abs(_value(u, q) - _value(u, p)) for p, q in zip(points, points[1:])))


def debye_sum_remainder_bound(n: float, terms: int, y: float | Fraction = 1) -> float:
    """Olver's bound of the remainder of Debye's sum with ``terms`` terms at order ``n``.

    ``2 exp(2 V_{0,y}(u_1) / n) V_{0,y}(u_K) / n^K`` with ``K = terms``; at ``y = 1`` it holds
    for every ``x >= 0`` (``V_{0,y}`` grows with ``y``).
    """
    return 2 * math.exp(2 * variation(1, 0, y) / n) * variation(terms, 0, y) / n**terms


@dataclass(frozen=True)
class DebyeTermsCheck:
    """What the plan's number of Debye terms guarantees at the switch order ``n0``."""

    dtype: str
    eps: float
    n0: float
    terms: int  # K: u_0 .. u_{K-1} are summed
    first_omitted: float  # max |u_K| / n0^K, as the plan samples it: the plan's test
    variation_u1: float
    variation_uk: float
    bound: float  # Olver's bound of the remainder, for every x
    sum_floor: float  # 1 - sum_{k=1}^{K-1} V(u_k)/n0^k, a lower bound of the truncated sum
    log_bound: float  # bound / (sum_floor - bound): bounds the error of log I_n0

    @property
    def target(self) -> float:
        return self.eps / 16

    @property
    def margin(self) -> float:
        """``eps`` over the bound of the error of ``log I``."""
        return self.eps / self.log_bound


@lru_cache(maxsize=None)
def debye_terms_check(dtype: str) -> DebyeTermsCheck:
    eps, p = eps_of(dtype), plan_of(dtype)
    n0, k = p.debye_min_order, p.debye_terms
    bound = debye_sum_remainder_bound(n0, k)
    floor = 1 - sum(variation(j) / n0**j for j in range(1, k))
    return DebyeTermsCheck(dtype, eps, n0, k, tables._debye_polynomial_bound(k) / n0**k, variation(1),
                           variation(k), bound, floor, bound / (floor - bound))


def debye_bound_table() -> str:
    rows = []
    for dtype in DTYPES:
        c = debye_terms_check(dtype)
        rows.append([dtype, f"{c.n0:g}", str(c.terms), _fmt(c.first_omitted), _fmt(c.target),
                     f"{c.variation_u1:.4f}", f"{c.variation_uk:.4g}", _fmt(c.bound), _fmt(c.log_bound),
                     f"{c.margin:.2f}"])
    return _table(["dtype", "$n_0$", "$K$", "first omitted term $\\max\\lvert u_K\\rvert / n_0^K$",
                   "$\\varepsilon/16$", "$\\mathcal{V}_{0,1}(u_1)$", "$\\mathcal{V}_{0,1}(u_K)$",
                   "bound {eq}`eq-debye-bound` on $\\lvert\\eta_K\\rvert$", "bound on the truncation error of $\\log I_{n_0}$",
                   "$\\varepsilon$ / that bound"], rows)


def debye_bound_note() -> str:
    checks = [debye_terms_check(d) for d in DTYPES]
    ratios = ", ".join(f"{c.variation_uk / tables._debye_polynomial_bound(c.terms):.1f} in {c.dtype}"
                       for c in checks)
    margins = " and ".join(f"{c.margin:.2f} in {c.dtype}" for c in checks)
    floors = ", ".join(f"{c.sum_floor:.4f} in {c.dtype}" for c in checks)
    return (f"The variation of $u_K$ exceeds its largest value (it swings between signs), by a factor "
            f"{ratios}, so the bound is larger than twice the first omitted term, and larger than "
            f"$\\varepsilon/16$. It is still below $\\varepsilon$: the error that the truncation makes in "
            f"$\\log I_{{n_0}}$, at most "
            f"$\\lvert\\eta_K\\rvert / (\\mathcal{{U}} - \\lvert\\eta_K\\rvert)$ with $\\mathcal{{U}}(y)$ at "
            f"least $1 - \\sum_{{k=1}}^{{K-1}} \\mathcal{{V}}_{{0,1}}(u_k)/n_0^k$ ({floors}), stays below "
            f"$\\varepsilon$ by a factor {margins}. Above $n_0$ the bound only falls.\n")


@dataclass(frozen=True)
class SeriesTermsCheck:
    """What the plan's number of power-series terms guarantees at ``x_s``."""

    dtype: str
    eps: float
    x_s: float
    terms: int  # J: the code sums the terms k = 0 .. J
    term_before: float  # term J - 1 at order 0 and x_s: not yet below eps/16
    last_term: float  # term J: the first below eps/16 (the plan's test)
    first_omitted: float  # term J + 1
    tail: float  # bound of the sum of all omitted terms

    @property
    def target(self) -> float:
        return self.eps / 16


@lru_cache(maxsize=None)
def series_terms_check(dtype: str) -> SeriesTermsCheck:
    """The terms ``(x_s/2)^(2k) / (k!)^2`` of the series at order 0, exactly in rationals.

    At order ``nu >= 0`` the terms are smaller (``(nu+1)_k >= k!``) and the sum is at least 1,
    so the tail bounds the relative truncation error of every order and every ``x <= x_s``.
    """
    eps, p = eps_of(dtype), plan_of(dtype)
    q = (Fraction(p.series_max_x) / 2) ** 2
    term = [Fraction(1)]
    while len(term) < p.series_terms + 2:
        k = len(term)
        term.append(term[-1] * q / (k * k))
    j = p.series_terms
    ratio = q / (j + 2) ** 2  # the ratio of consecutive terms falls with k
    tail = term[j + 1] / (1 - ratio)
    return SeriesTermsCheck(dtype, eps, p.series_max_x, j, float(term[j - 1]), float(term[j]),
                            float(term[j + 1]), float(tail))


def series_terms_table() -> str:
    rows = []
    for dtype in DTYPES:
        c = series_terms_check(dtype)
        rows.append([dtype, f"{c.x_s:g}", str(c.terms), _fmt(c.term_before), _fmt(c.last_term), _fmt(c.target),
                     _fmt(c.first_omitted), _fmt(c.tail), f"{c.target / c.tail:.3g}"])
    return _table(["dtype", "$x_s$", "$J$", "term $J-1$", "term $J$", "$\\varepsilon/16$",
                   "first omitted term, $J+1$", "bound on the omitted tail", "$(\\varepsilon/16)$ / that bound"],
                  rows)


# ---------------------------------------------------------------------------------------
# SciPy's ive where it returns 0
# ---------------------------------------------------------------------------------------

#: Orders of the SciPy comparison: d = 128 and the largest order of the contract.
SCIPY_ORDERS = (63.0, 2047.0)


@dataclass(frozen=True)
class IveCut:
    """Where ``scipy.special.ive(nu, x)`` turns from 0 to a positive number, in one dtype."""

    nu: float
    dtype: str
    last_zero: float  # the largest float x with ive(nu, x) == 0
    first_positive: float  # the next float
    log_scaled: float  # log(exp(-x) I_nu(x)) at first_positive (the code's log_iv, float64)
    log_iv: float  # log I_nu(x) there


@lru_cache(maxsize=None)
def ive_cut(nu: float, dtype: str) -> IveCut:
    """Bisection on the bit patterns of the floats of ``dtype`` (``ive`` increases there)."""
    from scipy.special import ive

    t = np.dtype(dtype).type
    bits = np.int64 if np.dtype(dtype).itemsize == 8 else np.int32

    def zero(i: int) -> bool:
        return ive(t(nu), np.array(i, dtype=bits).view(dtype)[()]) == 0

    lo = int(np.array(np.finfo(dtype).smallest_subnormal, dtype=dtype).view(bits))
    hi = int(np.array(1e30, dtype=dtype).view(bits))
    if not zero(lo) or zero(hi):
        raise RuntimeError(f"ive({nu}, x) in {dtype}: no change from 0 to positive between the bounds")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if zero(mid) else (lo, mid)
    last, first = (float(np.array(i, dtype=bits).view(dtype)[()]) for i in (lo, hi))
    log_iv = float(special.log_iv(nu, np.float64(first)))
    return IveCut(nu, dtype, last, first, log_iv - first, log_iv)


def amos_underflow_limit(dtype: str = "float64") -> float:
    """``ELIM = 2.303 (K log10(2) - 3)``, the exponent at which Amos's routines declare underflow.

    ``K`` is the smaller magnitude of the extreme exponents in Amos's convention
    (``I1MACH(15)``, ``I1MACH(16)``): 1021 and 1024 in IEEE double.
    """
    fi = np.finfo(dtype)
    k = min(abs(fi.minexp + 1), fi.maxexp)
    return 2.303 * (k * math.log10(2) - 3)


def scipy_underflow_measured() -> str:
    rows = []
    for nu in SCIPY_ORDERS:
        for dtype in DTYPES:
            c = ive_cut(nu, dtype)
            rows.append([f"{nu:g}", f"$d = {int(2 * nu + 2)}$", dtype, f"{c.first_positive:.4g}",
                         f"{c.log_scaled:.5g}", f"{c.log_iv:.5g}"])
    table = _table(["order $\\nu$", "dimension", "dtype", "`ive` returns 0 for $x$ below",
                    "there $\\log\\bigl(e^{-x} I_\\nu(x)\\bigr)$ is", "and $\\log I_\\nu(x)$ (`log_iv`)"], rows)
    f64 = np.finfo(np.float64)
    f32 = np.finfo(np.float32)
    cut64 = [ive_cut(nu, "float64").log_scaled for nu in SCIPY_ORDERS]
    cut32 = [ive_cut(nu, "float32").log_scaled for nu in SCIPY_ORDERS]
    note = (f"\nIn float64 the cut falls where $e^{{-x}} I_\\nu(x)$ is $e^{{{min(cut64):.2f}}}$ at both "
            f"orders: the underflow limit that Amos's algorithm sets for itself, "
            f"$\\mathrm{{ELIM}} = 2.303\\,(1021 \\log_{{10}} 2 - 3) = {amos_underflow_limit():.2f}$, some "
            f"{-amos_underflow_limit() - math.log(float(f64.smallest_normal)):.1f} above the logarithm of "
            f"the smallest normal float64 ({math.log(float(f64.smallest_normal)):.2f}) and far from the "
            f"subnormal range, which ends at {math.log(float(f64.smallest_subnormal)):.2f}. In float32 it "
            f"falls at $e^{{{min(cut32):.2f}}}$, half the smallest subnormal float32 "
            f"($e^{{{math.log(float(f32.smallest_subnormal) / 2):.2f}}}$): below it the value rounds to 0 "
            f"in float32. The last column is the logit's own size, which `log_iv` returns as an ordinary "
            f"number; the logarithms are the code's, in float64.\n")
    return table + note


# ---------------------------------------------------------------------------------------
# The (nu, x) plane by method
# ---------------------------------------------------------------------------------------

#: The three methods, in the order of the codes that :func:`method_map` returns.
METHODS = ("power series", "Debye's expansion", "recurrence from a shifted order")


def method_map(dtype: str, orders, xs) -> np.ndarray:
    """``[i, j]`` = the method the code uses for ``log I_nu(x)`` at ``orders[i]``, ``xs[j]``.

    0, 1, 2 index :data:`METHODS`. Debye's range is the plan's test
    (:func:`probcon_ref.tables.debye_plan_for`); below it the side of the branch is the one
    that :func:`probcon_ref.special._small_order_pieces` reports, on the arguments rounded to
    ``dtype``.
    """
    eps, plan = eps_of(dtype), plan_of(dtype)
    x = np.asarray(xs, dtype=dtype)
    out = np.empty((len(orders), len(x)), dtype=np.int8)
    with np.errstate(all="ignore"):
        for i, nu in enumerate(orders):
            if tables.debye_plan_for(float(nu), eps) is not None:
                out[i] = 1
            else:
                out[i] = np.where(special._small_order_pieces(np, float(nu), x, plan).use_series, 0, 2)
    return out


# ---------------------------------------------------------------------------------------
# Smaller facts of the prose
# ---------------------------------------------------------------------------------------


def recurrence_growth_note() -> str:
    """The bound on each factor of the recurrence's product and on the product itself."""
    parts = []
    for dtype in DTYPES:
        p = plan_of(dtype)
        factor = 2 * (p.debye_min_order + 1) / p.series_max_x + 1
        steps = math.ceil(p.debye_min_order)
        parts.append(f"{_tex(factor)} and ${_tex(factor**steps, 2)}$ in {dtype} (largest float "
                     f"${_tex(float(np.finfo(dtype).max), 2)}$)")
    return ("At most $n_0$ steps are taken (at $\\nu = 0$), and since $k < n_0 + 1$, $x > x_s$ and "
            "$R_k < 1$, each factor is below $2(n_0 + 1)/x_s + 1$ and the product below that to the "
            "power $n_0$: " + "; ".join(parts) + ". Every factor is $I_{k-1}/I_k > 1$, so the product "
            "can neither overflow nor underflow.\n")


@lru_cache(maxsize=None)
def first_crossing_dimension() -> int:
    """The smallest ``d`` whose normaliser crosses zero (the code anchors it there)."""
    return next(d for d in range(2, 4097) if tables.normalizer_anchor(d) is not None)


#: Dimensions of the table of reference points and of the figure of A_d and log C_d.
CURVE_DIMS = (2, 3, 16, 128, 1024)


def normalizer_anchor_table() -> str:
    d0 = first_crossing_dimension()
    rows = []
    for d in sorted({d0, 128, 1024, 4096}):
        row = [f"{d}"]
        for dtype in DTYPES:
            k, c, half = tables.normalizer_anchor(d, eps_of(dtype))
            row += [f"{k:.6g}", _fmt(c), f"{half:.4g}"]
        rows.append(row)
    head = (f"For $d \\ge {d0}$, $\\log C_d(0) > 0$ and $\\log C_d$ crosses zero once. The reference "
            "points the code uses, with the 50-digit value there and the half-width of the window "
            "around it in which {eq}`eq-normalizer-anchor` replaces the direct formula:\n\n")
    return head + _table(["$d$", "$\\kappa_{\\mathrm{ref}}$ (float64)", "$\\log C_d(\\kappa_{\\mathrm{ref}})$",
                          "half-width", "$\\kappa_{\\mathrm{ref}}$ (float32)", "$\\log C_d(\\kappa_{\\mathrm{ref}})$",
                          "half-width"], rows)


def debye_polynomials_y() -> str:
    """``u_0 .. u_3`` in the page's variable ``y``, from :func:`probcon_ref.tables.debye_polynomials`."""
    lines = []
    for k, u in enumerate(tables.debye_polynomials(4)):
        terms = []
        for j, c in enumerate(u):
            if c == 0:
                continue
            a = abs(Fraction(c))
            num = (f"\\tfrac{{{a.numerator}}}{{{a.denominator}}}" if a.denominator != 1
                   else ("" if a == 1 and j else str(a.numerator)))
            power = "" if j == 0 else ("y" if j == 1 else f"y^{{{j}}}")
            if terms:
                terms.append(f" {'-' if c < 0 else '+'} {num}{power}")
            else:
                terms.append(f"{'-' if c < 0 else ''}{num}{power}")
        lines.append(f"u_{k}(y) &= {''.join(terms) or '0'}")
    return "$$\n\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}\n$$\n"


# ---------------------------------------------------------------------------------------
# Accuracy against mpmath
# ---------------------------------------------------------------------------------------

#: The contract's measures, in the page's notation (``err``: the error; ``R_nu``: the ratio).
ACCURACY_MEASURES = {
    "log_iv": r"$\lvert \mathrm{err} \rvert / \max(1, \lvert \log I_\nu \rvert, \nu + x R_\nu)$",
    "ratio": r"$\lvert \mathrm{err} \rvert / R_\nu$",
    "log_vmf": r"$\lvert \mathrm{err} \rvert / \max(1, \lvert \log C_d \rvert)$",
}


def special_accuracy_measured() -> str:
    """The worst error of each function and precision on the accuracy grid, against its target."""
    import docs_data
    from docs_content import _tex_number

    s = docs_data.special_accuracy()
    rows = []
    for quantity, label in docs_data.QUANTITY_LABELS.items():
        argument = "\\kappa" if quantity == "log_vmf" else "x"
        for i, dtype in enumerate(DTYPES):
            err = s.errors[(quantity, dtype)]
            worst = int(np.argmax(err))
            target = docs_data.SPEC_TARGETS[quantity][i]
            rows.append([label, dtype, ACCURACY_MEASURES[quantity], _fmt(float(err[worst])),
                         f"$\\nu = {s.nu[worst]:g}$, ${argument} = {_tex_number(float(s.x[worst]))}$",
                         _fmt(target), "yes" if err[worst] <= target else "**no**"])
    head = (f"Measured on {len(s.x)} points: orders {', '.join(f'{v:g}' for v in docs_data.ACCURACY_ORDERS)}, "
            "and for each a log-spaced sweep of the argument from $10^{-3}$ to $10^6$ plus points near "
            "$\\nu$; $\\mathrm{err}$ is the difference from the reference.\n\n")
    return head + _table(["quantity", "dtype", "measure", "worst", "where", "target", "met"], rows)


# ---------------------------------------------------------------------------------------
# Notation
# ---------------------------------------------------------------------------------------

#: (symbol, meaning, where it is defined) for every symbol the special-functions page introduces.
NOTATION = (
    ("$\\varepsilon$", "machine epsilon of the working precision ($2^{-52}$ in float64, $2^{-23}$ in float32)",
     "{ref}`special-parameters`"),
    ("$n$", "an order in Debye's range, $n \\ge n_0$", "{eq}`eq-debye`"),
    ("$n_0$", "the order from which Debye's expansion is used", "{ref}`special-algorithm`"),
    ("$x_s$", "the argument up to which the power series is used, below $n_0$", "{ref}`special-algorithm`"),
    ("$K$", "the number of terms of Debye's sum", "{eq}`eq-debye`, {ref}`special-parameters`"),
    ("$J$", "the index of the last power-series term the code sums", "{ref}`special-parameters`"),
    ("$(\\nu+1)_k$", "the rising factorial $(\\nu+1)(\\nu+2)\\cdots(\\nu+k)$", "{eq}`eq-bessel-series`"),
    ("$\\Phi_\\nu(x)$", "the power series of $I_\\nu$ without its leading factor", "{eq}`eq-bessel-series`"),
    ("$\\Lambda_\\nu(x)$", "$\\log I_\\nu(x) - \\nu \\log x$, finite at $x = 0$", "{eq}`eq-series-quantities`"),
    ("$q$", "$\\sqrt{n^2 + x^2}$", "{eq}`eq-debye`"),
    ("$y$", "$n / q \\in (0, 1]$, Debye's variable (DLMF writes $p$)", "{eq}`eq-debye`"),
    ("$u_k(y)$", "Debye's polynomials", "{eq}`eq-debye-poly`"),
    ("$\\mathcal{U}(y)$", "Debye's sum $\\sum_{k<K} u_k(y)/n^k$ at the order at hand", "{eq}`eq-debye`"),
    ("$\\eta_K$", "the remainder of Debye's sum after $K$ terms", "{eq}`eq-debye`, {eq}`eq-debye-bound`"),
    ("$\\mathcal{V}_{a,b}(f)$", "the total variation $\\int_a^b \\lvert f'\\rvert$ of $f$ on $[a, b]$",
     "{eq}`eq-debye-bound`"),
    ("$R_k(x)$", "the ratio $I_{k+1}(x)/I_k(x)$ at order $k$; $A_d = R_{d/2-1}$", "{eq}`eq-ratio-recurrence`"),
    ("$n_1$", "the shifted order $\\nu + \\lceil n_0 - \\nu \\rceil \\ge n_0$ the recurrence starts from",
     "{eq}`eq-ratio-recurrence`"),
    ("$g$", "$q - n = x^2/(n + q)$ at the order $n = \\nu$", "{eq}`eq-normalizer-shift`"),
    ("$\\mathrm{shift}$, $\\mathrm{peak}$", "$\\log C_d(\\kappa) - \\log C_d(0)$ and that plus $\\kappa$",
     "{eq}`eq-normalizer-shift`, {eq}`eq-normalizer-peak`"),
    ("$\\kappa_{\\mathrm{ref}}$", "the reference point near the zero of $\\log C_d$", "{eq}`eq-normalizer-anchor`"),
    ("$\\xi$", "a variable of integration", "{eq}`eq-debye-poly`, {eq}`eq-normalizer-anchor`"),
    ("$G_{\\alpha,\\beta}(x)$", "Amos's bounds of the ratio, $x/(\\alpha + \\sqrt{x^2 + \\beta^2})$",
     "{eq}`eq-ratio-bounds`"),
    ("$\\rho$", "the value of the ratio whose argument the inverse finds", "{eq}`eq-ratio-bounds`"),
    ("$x^{(0)}$", "the inverse's starting point (Banerjee et al.)", "{eq}`eq-banerjee`"),
    ("$\\hat x$", "the computed inverse", "{ref}`special-inverse`"),
    ("$\\mathrm{err}$", "a computed value less its 50-digit reference", "{ref}`special-accuracy`"),
)


def special_notation_table() -> str:
    return _table(["symbol", "meaning", "defined in"], [list(row) for row in NOTATION])


GENERATORS = {
    "special_plan_summary": special_plan_summary,
    "debye_bound_table": debye_bound_table,
    "debye_bound_note": debye_bound_note,
    "series_terms_table": series_terms_table,
    "scipy_underflow_measured": scipy_underflow_measured,
    "recurrence_growth_note": recurrence_growth_note,
    "normalizer_anchor_table": normalizer_anchor_table,
    "debye_polynomials_y": debye_polynomials_y,
    "special_accuracy_measured": special_accuracy_measured,
    "special_notation_table": special_notation_table,
}

_SOURCES = (ROOT / "probcon_ref" / "special.py", ROOT / "probcon_ref" / "tables.py")
DEPENDENCIES = {name: _SOURCES for name in GENERATORS}
