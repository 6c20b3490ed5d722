"""The claims of the derivation, gradient and properties pages, checked where they are made.

Each number those pages print comes from ``docs/_ext/generated_derivation.py``; these tests
check that the numbers say what the pages say they say (the textbook forms fail, the stable
ones do not; the large-confidence form's next term is the right one; the batch optimum is
not the anchor's), and the mathematics the pages derive without code (the normaliser, the
conditioned mixture) against mpmath. All but the last build nothing.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

import generated_derivation as g  # noqa: E402

mpmath = pytest.importorskip("mpmath")

from probcon_ref import pcl_loss_and_grad  # noqa: E402
from probcon_ref.special import inverse_bessel_ratio, log_vmf_normalizer  # noqa: E402

PAGES = ("derivation.md", "gradient.md", "properties.md", "notation.md")


# ---------------------------------------------------------------------------------------
# Step 4: the normaliser and the other choice
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [2, 3, 7, 32])
@pytest.mark.parametrize("kappa", [0.5, 7.0, 40.0])
def test_normaliser_from_area_marginal_and_integral(d, kappa):
    """eq-vmf-integral: area x mean of e^{kappa t} under eq-cosine-marginal = (2 pi)^{d/2} kappa^-nu I_nu."""
    with mpmath.workdps(30):
        k, dm = mpmath.mpf(kappa), mpmath.mpf(d)
        area = 2 * mpmath.pi ** (dm / 2) / mpmath.gamma(dm / 2)
        const = mpmath.gamma(dm / 2) / (mpmath.sqrt(mpmath.pi) * mpmath.gamma((dm - 1) / 2))
        weight = (dm - 3) / 2
        total = mpmath.quad(lambda t: const * (1 - t * t) ** weight, [-1, 0, 1])
        integral = area * mpmath.quad(lambda t: const * (1 - t * t) ** weight * mpmath.exp(k * t), [-1, 0, 1])
        closed = (2 * mpmath.pi) ** (dm / 2) * k ** (1 - dm / 2) * mpmath.besseli(dm / 2 - 1, k)
        # (the endpoint singularity of d = 2 costs the quadrature a few digits)
        assert abs(total - 1) < 1e-15
        assert abs(integral / closed - 1) < 1e-15
        # ... and the code's log C_d is minus its logarithm
        assert abs(float(log_vmf_normalizer(d, np.asarray(kappa))) + float(mpmath.log(closed))) < 1e-13


def test_normaliser_in_three_dimensions_and_at_zero():
    for kappa in (0.1, 3.0, 30.0):
        assert math.isclose(float(log_vmf_normalizer(3, np.asarray(kappa))),
                            math.log(kappa / (4 * math.pi * math.sinh(kappa))), rel_tol=1e-13)
    for d in (2, 3, 16):
        area = 2 * math.pi ** (d / 2) / math.gamma(d / 2)
        assert math.isclose(float(log_vmf_normalizer(d, np.asarray(0.0))), -math.log(area), rel_tol=1e-14)


def _gaussian_log_density(x, centre, sigma):
    d = x.shape[-1]
    return -d / 2 * math.log(2 * math.pi * sigma**2) - np.sum((x - centre) ** 2) / (2 * sigma**2)


def test_conditioned_mixture_logits():
    """eq-mixture-conditioned: the Gaussian densities at x = r mu_a differ across b as
    (d/2) log kappa_b - kappa_b (1 - c_ab), kappa_b = r^2 / sigma_b^2."""
    rng = np.random.default_rng(0)
    d, r = 9, 1.7
    mu = rng.normal(size=(5, d))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    sigma = rng.uniform(0.3, 2.0, size=5)
    x = r * mu[0]
    kappa = r**2 / sigma**2
    got = np.array([_gaussian_log_density(x, r * mu[b], sigma[b]) for b in range(1, 5)])
    want = d / 2 * np.log(kappa[1:]) - kappa[1:] * (1 - mu[1:] @ mu[0])
    assert np.ptp(got - want) < 1e-12  # equal up to one constant shared by all b


@pytest.mark.parametrize("c", [-1.0, -0.3, 0.0, 0.4, 0.9])
def test_the_two_choices_grant_different_confidences(c):
    """The conditioned mixture's logit peaks at d / (2 (1 - c)) for every cosine; the vMF logit
    log C_d(k) + k c is decreasing from k = 0 when c <= 0, and peaks at A_d^{-1}(c) otherwise."""
    d = 16
    k = np.geomspace(1e-3, 1e4, 4001)
    conditioned = d / 2 * np.log(k) - k * (1 - c)
    assert math.isclose(k[np.argmax(conditioned)], d / (2 * (1 - c)), rel_tol=1e-2)
    vmf = log_vmf_normalizer(d, k) + k * c
    if c <= 0:
        assert np.all(np.diff(vmf) < 0)
    else:
        assert math.isclose(k[np.argmax(vmf)], float(inverse_bessel_ratio(d / 2 - 1, np.asarray(c))), rel_tol=1e-2)


# ---------------------------------------------------------------------------------------
# Step 5: the logit at large confidence
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [5, 32, 128])
def test_next_terms_of_the_large_kappa_form(d):
    """eq-logit-large-kappa: after the two correction terms the remainder is O(d^4 / kappa^3), with
    the coefficient -(d-1)(d-3)(d-7)(d+3)/384 the page states."""
    for kappa in (1e5, 1e6):
        rest = g.large_kappa_remainder(d, kappa, digits=50)
        first, second = g.large_kappa_terms(d, kappa)
        third = -(d - 1) * (d - 3) * (d - 7) * (d + 3) / (384 * kappa**3)
        assert abs(rest - first) < 2 * abs(second) + 1e-30  # the first term is the right one
        if d > 3:
            assert math.isclose(rest - first - second, third, rel_tol=5e-2 * (1 + d * d / kappa) + 1e-6)


def test_the_leading_form_is_far_off_at_d_128_and_kappa_100():
    """The remainder that the leading form drops: about 19 nats at d = 128, kappa = 100; one nat at
    (d-1)(d-3)/8, within a few per cent."""
    assert 19 < g.large_kappa_remainder(128, 100.0) < 20
    for d in (32, 128):
        k1 = g.large_kappa_one_nat(d)
        assert math.isclose(g.large_kappa_remainder(d, k1), 1.0, rel_tol=1e-6)  # code and mpmath agree
        assert math.isclose(k1, (d - 1) * (d - 3) / 8, rel_tol=0.02)


# ---------------------------------------------------------------------------------------
# Step 6 and the gradient page: the textbook forms fail, the reference does not
# ---------------------------------------------------------------------------------------


def test_textbook_loss_loses_every_digit():
    s = g.textbook_study()
    want = s["oracle"]
    assert np.all((want > 1e-23) & (want < 1e-16)), "the batch is no longer confidently matched"
    assert np.all(np.abs(s["textbook"] - want) > 0.5 * want)
    assert np.all(np.abs(s["reference"] - want) < 1e-12 * want)


def test_textbook_residual_loses_the_positive():
    s = g.textbook_study()
    assert np.all(np.abs(s["textbook_w_pos"] - s["w_pos"]) > 0.5 * np.abs(s["w_pos"]))
    tb_z, tb_kappa = s["grad_errors"]["textbook"]
    ref_z, ref_kappa = s["grad_errors"]["reference"]
    assert tb_z > 1e-2 and tb_kappa > 1e-2
    assert ref_z < 1e-12 and ref_kappa < 1e-12


def test_naive_autograd_agrees_on_an_ordinary_batch_and_fails_on_a_confident_one():
    pytest.importorskip("torch")
    s = g.autograd_study()
    ordinary, confident = s["ordinary"], s["confident"]
    assert ordinary["agreement"] < 1e-12
    assert max(ordinary["z"] + ordinary["kappa"]) < 1e-12
    assert confident["naive_loss"] == 0.0 and confident["oracle_loss"] > 0
    assert confident["z"][1] > 1e-2 and confident["kappa"][1] > 1e-2
    assert max(confident["z"][0], confident["kappa"][0], confident["loss"][0]) < 1e-12


# ---------------------------------------------------------------------------------------
# Step 7: the anchor's optimum and the batch's
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("others", [14.7, 147.3, 300.0])
def test_batch_derivative_in_logarithms_is_the_code_gradient(others):
    """Where the losses are representable, BatchColumn.derivative is pcl_loss_and_grad's dL/dkappa_p."""
    z1, z2 = g.batch_setup(32, 0.9)
    column = g.BatchColumn(z1, z2, others)
    for kappa_p in (50.0, 147.34, 160.0, 400.0):
        k1 = np.full(g.BATCH_PAIRS, others)
        k2 = k1.copy()
        k2[0] = kappa_p
        want = float(pcl_loss_and_grad(z1, z2, k1, k2, reduction="sum")[1].kappa2[0])
        got = column.derivative(kappa_p, scaled=False)
        assert math.isclose(got, want, rel_tol=1e-9), (kappa_p, got, want)


def test_batch_optimum_is_not_the_anchor_optimum():
    rows = g.batch_optimum_study()
    assert {(r["d"], r["c"]) for r in rows} == set(g.BATCH_SETUPS)
    for r in rows:
        ratio = r["batch"] / r["star"]
        assert ratio > 1 - 1e-12, r  # never below kappa* when p is closest to its own anchor
        if r["factor"] < 1:
            assert abs(ratio - 1) < 1e-9, r  # the negatives' share is below rounding
        if r["factor"] >= 2:
            assert abs(r["batch"] / r["others"] - 1) < 0.1, r  # it follows the other views
    # the page's example: d = 32 with every view at kappa*, the batch optimum is clearly above
    equal = next(r for r in rows if r["d"] == 32 and r["factor"] == 1.0)
    assert equal["batch"] > 1.01 * equal["star"]
    # the losses of the d = 128 setup underflow near kappa*, which is why the derivative is used
    assert any(r["loss"] == 0 and r["log_loss"] < -745 for r in rows)


def test_batch_derivative_at_the_anchor_optimum():
    """At kappa_p = kappa*, dL/dkappa_p is sum_r P_rp (c_rp - c_ap) < 0 (eq-dbatch-dkappa)."""
    z1, z2 = g.batch_setup(32, 0.9)
    star = float(inverse_bessel_ratio(15.0, np.asarray(0.9)))
    k1 = np.full(g.BATCH_PAIRS, star)
    k2 = k1.copy()
    _, grads = pcl_loss_and_grad(z1, z2, k1, k2, reduction="sum")
    assert float(grads.kappa2[0]) < 0


def test_common_confidence_loss_decreases_without_bound():
    z1, z2 = g.batch_setup(32, 0.9)
    logs = [g.log_mean_loss(z1, z2, k) for k in (10.0, 100.0, 1e3, 1e4)]
    assert all(b < a - 1 for a, b in zip(logs, logs[1:]))


# ---------------------------------------------------------------------------------------
# Large confidence: the sizes of the table
# ---------------------------------------------------------------------------------------


def test_product_rounding_measure():
    """The exact dot products of product_rounding are exact: an error put in is found."""
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(4, 300))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    assert g.product_rounding(mu) < 2 + math.log2(300)
    s = g.large_confidence_study()
    for d, kinds in s["rounding"].items():
        assert max(kinds.values()) <= 2 + math.log2(d)
    assert s["structured"] > 2 + math.log2(4096)
    assert s["structured_threshold"] < min(s["threshold"].values())
    assert s["eps_kappa"] > 100 * s["loss_bound"]


# ---------------------------------------------------------------------------------------
# The pages themselves
# ---------------------------------------------------------------------------------------


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_gaps_are_shown_beside_their_equation():
    import docs_content

    shown = {c.target for c in docs_content.implementations("eq-delta")}
    assert "probcon_ref.loss.logit_gaps" in shown
    assert re.search(r"\$\$ \(eq-delta\)\n\n```\{implementations\} eq-delta\n```", _page("derivation.md"))


def test_every_generator_of_these_pages_exists_and_is_used():
    import docs_content

    text = "\n".join(_page(p) for p in PAGES)
    used = set(re.findall(r"^```\{generated\} (\w+)", text, re.M))
    assert set(g.GENERATORS) <= used, set(g.GENERATORS) - used
    assert all(name in docs_content.GENERATORS for name in g.GENERATORS)


def test_pages_cite_the_contract_by_link_and_keep_their_symbols():
    for name in PAGES:
        text = _page(name)
        assert not re.search(r"SPEC section", text), name
        assert "\\frac{d}{dt}" not in text and "\\tfrac{d}{dt}" not in text, name
        assert "kappa_0" not in text, name


def test_notation_links_only_defined_equations():
    sys.path.insert(0, str(ROOT / "tests"))
    import docs_helpers

    defined = docs_helpers.defined_labels()
    text = _page("notation.md")
    cited = set(re.findall(r"\{eq\}`([^`]+)`", text))
    assert cited and cited <= set(defined), cited - set(defined)
    for page in ("derivation.md", "gradient.md"):  # every equation of those pages is listed
        labels = set(docs_helpers.MYST_DOLLAR_LABEL.findall(_page(page)))
        missing = {x for x in labels if x not in cited and x not in _EQUATIONS_WITHOUT_SYMBOLS}
        assert not missing, (page, missing)
    # the special-functions page's symbols come from that page's own generator
    assert re.search(r"^```\{generated\} special_notation_table$", text, re.M)


#: Labelled equations that define no symbol of their own (identities, steps of a derivation).
_EQUATIONS_WITHOUT_SYMBOLS = {
    "eq-inner-product", "eq-distance", "eq-ntxent-posterior", "eq-ntxent-special", "eq-vmf-integral",
    "eq-bessel-integral", "eq-mixture-conditioned", "eq-loss-stable", "eq-compensated-logits",
    "eq-graph", "eq-dlogit-dkappa", "eq-grad-kappa", "eq-grad-mu", "eq-grad-z", "eq-logit-large-kappa",
    "eq-extra-grad", "eq-grad-temperature",
}


def test_exercises_fold_their_solutions(built_site):
    _, html = built_site
    for page, count in (("derivation.html", 2), ("gradient.html", 1)):
        text = (html / page).read_text(encoding="utf-8")
        assert text.count('<details class="solution"><summary>Solution</summary>') == count, page
        assert text.count("</details>") >= count
    derivation = (html / "derivation.html").read_text(encoding="utf-8")
    for needle in ("The loss and its gradient in one box", "textbook", "remainder"):
        assert needle in derivation
    assert "batch optimum" in (html / "properties.html").read_text(encoding="utf-8")
