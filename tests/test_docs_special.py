"""The special-functions page: what its generated numbers claim, and its notation.

Fast tests call the page's generators and data functions (``docs/_ext/generated_special.py``)
and check the claims the page makes with them: the plan's Debye terms meet Olver's bound with
a margin below ``eps``, the bound's form holds against mpmath, the series' omitted tail is
below ``eps/16``, SciPy's ``ive`` returns 0 exactly where the page says, the map of methods
follows the plan and the code's branch test. The page source is checked for the notation it
gave up. One test reads the built site: the figures are there and numbered.
"""

from __future__ import annotations

import math
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import generated_special as gs  # noqa: E402

from probcon_ref import special, tables  # noqa: E402

PAGE = ROOT / "docs" / "special-functions.md"


# ---------------------------------------------------------------------------------------
# Debye's sum: the plan's rule of thumb, and the bound that holds
# ---------------------------------------------------------------------------------------


def test_variation_of_u1_is_its_closed_form():
    # u_1(y) = (3y - 5y^3)/24 rises to 1/(12 sqrt 5) at y = 1/sqrt 5, then falls to -1/12.
    assert gs.variation(1) == pytest.approx((2 / math.sqrt(5) + 1) / 12, rel=1e-15)
    assert gs.variation(1, 0, 0.5) == pytest.approx(1 / (12 * math.sqrt(5)) - float(
        gs._value(tables.debye_polynomials(2)[1], Fraction(1, 2))) + 1 / (12 * math.sqrt(5)), rel=1e-14)


@pytest.mark.parametrize("k", [2, 7, 13])
def test_variation_is_at_least_the_largest_value(k):
    # u_k(0) = 0 for k >= 1, so V_{0,1}(u_k) >= max |u_k|; and the sampled maximum is below it.
    assert gs.variation(k) >= tables._debye_polynomial_bound(k) * (1 - 1e-12)
    assert len(gs.critical_points(k)) == k  # what Sturm's theorem counted for these


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_plan_terms_meet_the_rigorous_bound(dtype):
    c = gs.debye_terms_check(dtype)
    plan = gs.plan_of(dtype)
    assert (c.n0, c.terms) == (plan.debye_min_order, plan.debye_terms)
    assert c.first_omitted < c.target  # the plan's own test
    assert c.bound > 2 * c.first_omitted and c.bound > c.target  # what the page says of the bound
    assert c.log_bound < c.eps, f"{dtype}: the bound {c.log_bound:.3g} does not meet eps {c.eps:.3g}"
    assert c.margin == pytest.approx(c.eps / c.log_bound)


def test_float32_margin_is_under_two():
    assert 1 < gs.debye_terms_check("float32").margin < 2
    assert gs.debye_terms_check("float64").margin > 2


def _debye_remainder(n: int, terms: int, x: float, mp):
    """``eta_K = I_n(x) sqrt(2 pi q) e^{-(q + n log(x/(n+q)))} - U(y)`` at 40 digits, and ``y``."""
    with mp.workdps(40):
        x, n_ = mp.mpf(x), mp.mpf(n)
        q = mp.sqrt(n_ * n_ + x * x)
        y = n_ / q
        lead = mp.exp(n_ * mp.log(x / (n_ + q)) + q) / mp.sqrt(2 * mp.pi * q)
        polys = tables.debye_polynomials(terms)
        u = mp.fsum(mp.polyval([mp.mpf(c.numerator) / c.denominator for c in reversed(p)], y) / n_**k
                    for k, p in enumerate(polys))
        return float(mp.besseli(n, x) / lead - u), float(y)


@pytest.mark.parametrize("x", [0.01, 1.0, 10.0, 31.6, 100.0, 1000.0])
def test_debye_bound_holds_against_mpmath(x):
    """At the float32 switch order the remainder stays below the bound with the variation on [0, y]."""
    mp = pytest.importorskip("mpmath")
    c = gs.debye_terms_check("float32")
    eta, y = _debye_remainder(int(c.n0), c.terms, x, mp)
    bound = gs.debye_sum_remainder_bound(c.n0, c.terms, Fraction(y))
    assert abs(eta) <= bound, (x, eta, bound)
    assert bound <= c.bound * (1 + 1e-12)  # the uniform bound of the table covers it


def test_variation_on_the_other_side_would_not_bound_the_remainder():
    """Near x = 0 (y near 1) the variation over [y, 1] vanishes, the remainder does not."""
    mp = pytest.importorskip("mpmath")
    c = gs.debye_terms_check("float32")
    eta, y = _debye_remainder(int(c.n0), c.terms, 0.01, mp)
    wrong = 2 * math.exp(2 * gs.variation(1, Fraction(y), 1) / c.n0) * gs.variation(
        c.terms, Fraction(y), 1) / c.n0**c.terms
    assert abs(eta) > 100 * wrong


# ---------------------------------------------------------------------------------------
# The power series
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_series_terms_follow_the_stated_rule(dtype):
    c = gs.series_terms_check(dtype)
    assert c.terms == gs.plan_of(dtype).series_terms
    assert c.last_term < c.target <= c.term_before  # J is the first term below eps/16
    assert c.first_omitted < c.tail < c.target


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_series_tail_bounds_the_truncation_of_every_order(dtype):
    """The omitted tail of Phi_nu at x_s, relative to the sum, is below the page's bound."""
    c = gs.series_terms_check(dtype)
    q = (Fraction(c.x_s) / 2) ** 2
    for nu in (Fraction(0), Fraction(1, 2), Fraction(7)):
        term, total, tail = Fraction(1), Fraction(1), Fraction(0)
        for k in range(1, c.terms + 40):
            term = term * q / (k * (nu + k))
            if k <= c.terms:
                total += term
            else:
                tail += term
        assert tail / total <= c.tail


# ---------------------------------------------------------------------------------------
# SciPy's ive where it returns 0
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("nu", gs.SCIPY_ORDERS)
def test_ive_cut_is_where_the_page_says(nu, dtype):
    scipy_special = pytest.importorskip("scipy.special")
    c = gs.ive_cut(nu, dtype)
    t = np.dtype(dtype).type
    assert scipy_special.ive(t(nu), t(c.last_zero)) == 0
    assert scipy_special.ive(t(nu), t(c.first_positive)) > 0
    assert np.nextafter(t(c.last_zero), t(np.inf)) == t(c.first_positive)
    if dtype == "float64":  # Amos's own underflow limit, not the subnormal limit e^-745
        assert c.log_scaled == pytest.approx(-gs.amos_underflow_limit(), abs=1e-3)
        assert abs(c.log_scaled - math.log(float(np.finfo(np.float64).smallest_subnormal))) > 40
    else:  # half the smallest subnormal float32
        assert c.log_scaled == pytest.approx(math.log(float(np.finfo(np.float32).smallest_subnormal) / 2),
                                             abs=1e-4)
    assert np.isfinite(c.log_iv)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_ive_cut_value_against_mpmath(dtype):
    mp = pytest.importorskip("mpmath")
    c = gs.ive_cut(63.0, dtype)
    with mp.workdps(30):
        ref = mp.log(mp.besseli(63, mp.mpf(c.first_positive))) - mp.mpf(c.first_positive)
    assert c.log_scaled == pytest.approx(float(ref), rel=1e-12)


def test_amos_limit_is_the_formula():
    assert gs.amos_underflow_limit() == pytest.approx(2.303 * (1021 * math.log10(2) - 3), rel=1e-15)


# ---------------------------------------------------------------------------------------
# The map of methods, the recurrence, the reference points
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_method_map_follows_the_plan_and_the_code(dtype):
    plan = gs.plan_of(dtype)
    orders = np.array([0.0, 0.5, plan.debye_min_order - 0.5, plan.debye_min_order, 2047.0])
    xs = np.geomspace(1e-3, 1e6, 200)
    regions = gs.method_map(dtype, orders, xs)
    x = xs.astype(dtype)
    for i, nu in enumerate(orders):
        if nu >= plan.debye_min_order:
            assert np.all(regions[i] == gs.METHODS.index("Debye's expansion"))
        else:
            expected = np.where(x <= plan.series_max_x, 0, 2)
            np.testing.assert_array_equal(regions[i], expected)
    assert set(np.unique(regions)) == {0, 1, 2}


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_series_region_is_the_series(dtype):
    """Where the map says power series, log_iv is the series' value; just above x_s it is not."""
    plan = gs.plan_of(dtype)
    nu = 3.0
    x = np.array([plan.series_max_x], dtype=dtype)
    assert gs.method_map(dtype, [nu], x)[0, 0] == 0
    by_series = (np.log(special._series_sums(np, nu, x, plan.series_terms)[0])
                 + tables.log_iv_scaled_at_zero(nu) + nu * np.log(x))
    assert special.log_iv(nu, x)[0] == by_series.astype(dtype)[0]


def test_recurrence_factor_bound():
    for dtype in gs.DTYPES:
        plan = gs.plan_of(dtype)
        bound = 2 * (plan.debye_min_order + 1) / plan.series_max_x + 1
        top = math.ceil(plan.debye_min_order)  # the most steps, at nu = 0
        x = np.geomspace(plan.series_max_x * (1 + 1e-6), 1e6, 50)
        ratio = special.bessel_ratio(top, x)
        growth = np.ones_like(x)
        for k in range(top, 0, -1):
            factor = 2 * k / x + ratio
            assert np.all(factor < bound) and np.all(factor > 1)
            growth *= factor
            ratio = x / (2 * k + x * ratio)
        assert np.all(growth <= bound**top) and np.all(np.isfinite(growth))


def test_first_crossing_dimension():
    d0 = gs.first_crossing_dimension()
    assert tables._log_normalizer_at_zero(d0) > 0 >= tables._log_normalizer_at_zero(d0 - 1)


# ---------------------------------------------------------------------------------------
# The page: notation, citations, generators, equation index
# ---------------------------------------------------------------------------------------

#: Notation the page gave up, each a clash with the derivation pages or with itself.
RETIRED = {
    r"S(t)": "Debye's sum is U(y)",
    r"S_\nu": "the power series is Phi_nu",
    r"L(x)": "L is the batch loss; the scaled log is Lambda_nu",
    r"L(0)": "L is the batch loss",
    r"\kappa_0": "kappa_0 is taken; the reference point is kappa_ref",
    r"r_k": "r is the radius; the ratio is R_k",
    r"t = n": "t is the marginal of the derivation; Debye's variable is y",
    r"u = s": "u is a point of the sphere",
    r"s = \sqrt": "s_a is the softmax sum; the square root is q",
    r"\epsilon": "machine epsilon is \\varepsilon",
    r"\varepsilon_K": "epsilon is machine epsilon; the remainder is eta_K",
    "SPEC section": "link to the contract page",
}


def test_page_uses_none_of_the_retired_notation():
    text = PAGE.read_text(encoding="utf-8")
    found = {k: why for k, why in RETIRED.items() if k in text}
    assert not found, f"docs/special-functions.md still writes: {found}"


def test_docstrings_use_the_page_notation():
    for module in ("special.py", "tables.py"):
        text = (ROOT / "probcon_ref" / module).read_text(encoding="utf-8")
        for old in ("S(t)", "L(x)", "r_k", "SPEC section"):
            assert old not in text, f"probcon_ref/{module} still writes {old}"


def test_every_symbol_of_the_notation_table_is_on_the_page():
    text = PAGE.read_text(encoding="utf-8")
    for symbol, meaning, where in gs.NOTATION:
        for part in re.findall(r"\$([^$]+)\$", symbol):
            assert part in text, f"{part} ({meaning}) is not on the page"
        for label in re.findall(r"`(eq-[^`]+)`", where):
            assert f"$$ ({label})" in text, f"{label} is not an equation of the page"
        for label in re.findall(r"\{ref\}`([^`]+)`", where):
            assert f"({label})=" in text, f"{label} is not a section label of the page"


def test_notation_table_is_a_table():
    table = gs.special_notation_table()
    lines = table.strip().splitlines()
    assert lines[0] == "| symbol | meaning | defined in |"
    assert len(lines) == 2 + len(gs.NOTATION)
    symbols = [row[0] for row in gs.NOTATION]
    assert len(set(symbols)) == len(symbols)


def test_contract_links_and_generated_numbers():
    text = PAGE.read_text(encoding="utf-8")
    assert "<contract-special>`" in text
    for name in gs.GENERATORS:
        if name != "special_notation_table":
            assert f"```{{generated}} {name}" in text, f"the page does not show {name}"


def test_equations_of_the_page_are_indexed_with_their_code():
    import docs_content

    index = docs_content.equation_index()
    for label, function in (("eq-series-quantities", "_series_ratio"), ("eq-banerjee", "inverse_ratio_working"),
                            ("eq-ratio-derivative", "_ratio_slope")):
        row = next(line for line in index.splitlines() if f"`{label}` |" in line)
        assert f"probcon_ref.special.{function}" in row
        assert function in {c.qualname for c in docs_content.implementations(label)}
        assert f"```{{implementations}} {label}" in PAGE.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------
# The built page
# ---------------------------------------------------------------------------------------

FIGURES = {"fig-special-curves": "special_curves.png", "fig-special-regions": "special_regions.png",
           "fig-special-accuracy": "special_accuracy.png"}


def test_figures_are_built(built_site):
    proc, html = built_site
    images = {p.name for p in (html / "_images").glob("*.png")}
    missing = sorted(set(FIGURES.values()) - images)
    assert not missing, f"figures missing from the site: {missing}"


def test_figures_are_numbered_and_referenced(built_site):
    """Every figure of the page carries its label and a number, and every reference to it resolves."""
    proc, html = built_site
    page = (html / "special-functions.html").read_text(encoding="utf-8")
    text = PAGE.read_text(encoding="utf-8")
    for label in FIGURES:
        assert f".. _{label}:" in text and f"{{numref}}`{label}`" in text
        figure = re.search(r'<figure[^>]*id="' + re.escape(label) + r'"[^>]*>(.*?)</figure>', page, re.S)
        assert figure, f"no figure carries the label {label} (a label before a plot must name its figure)"
        assert re.search(r'<span class="caption-number">Fig\. \d+', figure.group(1))
        assert re.search(r'<a class="reference internal" href="#' + re.escape(label)
                         + r'"><span class="std std-numref">Fig\. \d+', page), f"{{numref}}`{label}` is unresolved"
