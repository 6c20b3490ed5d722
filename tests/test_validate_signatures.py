"""``probcon-ref validate`` names the mistakes people make writing the PCL from its definition.

Each wrong implementation of ``tests/peers/mistakes.py`` is correct but for one mistake,
written from the mathematics of that mistake; the validator must reject it, name it, and
account for every failing run with that one finding (the runs where the mistake changes
nothing, such as equal kappas for a normaliser, pass). The regime explanations are claims,
checked here against the runs: "Fails only ..." only where the failures are exactly the runs
of the regime, and nothing of the kind where the failures straddle regimes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probcon_ref import pcl_loss_and_grad
from probcon_ref.testing import battery, load_callable, validate

PEERS = Path(__file__).resolve().parent / "peers"

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The regimes a normaliser, an anchor or a temperature mistake shows in, and where it does not.
SOME = ["random", "d2", "odd-d", "kappa-zero", "tiny-kappa", "equal-kappa", "high-kappa", "n1"]


def mistake(name):
    pytest.importorskip("torch")
    return load_callable(f"{PEERS / 'mistakes.py'}:{name}")


def failing(report) -> set:
    return report.runs("fail") | report.runs("error")


def only(report, signature):
    """The report's one finding, of ``signature``, holding every failing run."""
    assert not report.passed
    assert report.signatures == [signature], report.to_text()[-4000:]
    (finding,) = report.findings
    assert set(finding.runs) == failing(report)
    return finding


@pytest.mark.parametrize("name, signature, words", [
    ("normaliser_nu_plus_one", "normaliser-dimension=d+2", "both nu + 1 = d/2"),
    ("normaliser_dimension_minus_one", "normaliser-dimension=d-1", "dimension d - 1"),
    ("normaliser_power_plus_one", "normaliser-power=nu+1", "power of kappa in the normaliser is nu + 1"),
    ("normaliser_power_minus_half", "normaliser-power=nu-1/2", "(d - 3)/2"),
    ("normaliser_order_plus_one", "normaliser-order", "I_{d/2} instead of I_{d/2-1}"),
])
def test_normaliser_dimension_power_and_order(name, signature, words):
    report = validate(mistake(name), framework="torch", cases=SOME)
    finding = only(report, signature)
    assert words in finding.summary
    # where every kappa is equal the normaliser cancels: only its kappa gradient is wrong
    equal = [r for r in report.results if r.case == "equal-kappa"]
    assert all(r.status == "fail" and set(r.wrong) <= {"kappa1", "kappa2"} for r in equal)
    assert "central differences" in finding.detail


def test_normaliser_off_by_one_on_the_whole_battery():
    """The slip of the issue (nu = d/2 throughout): one finding, every failing run, no regime."""
    report = validate(mistake("normaliser_nu_plus_one"), framework="torch")
    only(report, "normaliser-dimension=d+2")
    assert "Fails" not in report.to_text()


@pytest.mark.parametrize("name, signature", [
    ("anchor_kappa_and_normaliser", "anchor-kappa"),
    ("anchor_kappa_only", "anchor-concentration"),
    ("anchor_normaliser_only", "no-normaliser"),  # log C_d(kappa_a) cancels in each anchor's softmax
    ("kappa_product", "kappa-product"),
    ("kappa_product_normalised", "kappa-product-normalised"),
])
def test_the_anchors_concentration_and_products_of_kappas(name, signature):
    only(validate(mistake(name), framework="torch", cases=SOME), signature)


@pytest.mark.parametrize("name, signature, tau", [
    ("temperature_on_logits", "temperature-on-logits", "0.1"),
    ("temperature_on_cosine", "temperature-on-cosine", "0.1"),
    ("temperature_on_kappa", "temperature-on-kappa", "0.07"),
])
def test_a_temperature_on_top_of_kappa_is_solved_for(name, signature, tau):
    finding = only(validate(mistake(name), framework="torch", cases=SOME), signature)
    assert finding.summary.startswith(f"A temperature {tau} is applied on top of kappa")


def test_loss_times_a_constant_reports_the_constant():
    finding = only(validate(mistake("loss_scaled"), framework="torch", cases=SOME), "loss-scaled")
    assert finding.summary == "The loss is the reference's times 1.7"
    assert "times the same factor" in finding.detail  # autograd: the gradients are scaled too


def test_returned_gradients_of_the_right_loss_with_a_scaled_loss():
    """Only the loss value scaled, the returned gradients the reference's: said so."""
    def fn(*a):
        loss, grads = pcl_loss_and_grad(*a)
        return 3 * loss, grads
    finding = only(validate(fn, cases=SOME), "loss-scaled")
    assert "times 3" in finding.summary and "only the loss value is multiplied" in finding.detail


@pytest.mark.parametrize("temperature, words", [
    (None, "the case's temperature / 0.07"),
    (0.5, "7.14286, which is the temperature 0.5 divided by 0.07"),
])
def test_supcon_scale_of_the_loss(temperature, words):
    name = "ntxent_supcon_scale" if temperature is None else "ntxent_supcon_scale_fixed"
    report = validate(mistake(name), loss="ntxent", framework="torch", temperature=temperature)
    finding = only(report, "loss-scaled")
    assert finding.summary == f"The loss is the reference's times {words}"


def test_gradients_with_respect_to_the_unit_directions():
    report = validate(mistake("direction_gradient"))
    only(report, "gradient:direction")
    text = report.to_text()
    assert "What fails: the loss agrees in every run; only the gradients of z1, z2 fail" in text
    assert "--reduction" not in text and "--kappa" not in text  # no option could explain it


def test_missing_projection():
    only(validate(mistake("no_projection"), framework="torch", cases=SOME), "gradient:no-projection")


def test_float32_overflow_of_exp_cos_over_tau():
    """solo-learn's exp(c / tau) without a shift: NaN in float32 at tau = 0.01, right elsewhere
    but where the loss is tiny (its -log(pos / (pos + neg)) is the textbook form)."""
    report = validate(mistake("ntxent_unshifted"), loss="ntxent", framework="torch")
    (overflow,) = [f for f in report.findings if f.signature == "exp-overflow"]
    assert set(overflow.runs) == {("tiny-tau", "float32")}
    assert set(report.signatures) - {"exp-overflow"} <= {"tiny-loss", "gradient:positive-weight"}
    assert set().union(*(set(f.runs) for f in report.findings)) == failing(report)
    fixed = validate(mistake("ntxent_unshifted_fixed"), loss="ntxent", framework="torch", temperature=0.01)
    (overflow,) = [f for f in fixed.findings if f.signature == "exp-overflow"]
    assert set(overflow.runs) == {r.run for r in fixed.results if r.dtype == "float32"}
    assert "float32" not in fixed.signatures  # the generic regime is not what is named


# ---------------------------------------------------------------------------------------
# Regime explanations are claims
# ---------------------------------------------------------------------------------------


def wrong_where(test):
    """The reference, plus 1 on the cases where ``test(z1, z2, kappa1, kappa2)`` holds."""
    def fn(z1, z2, k1, k2):
        loss, grads = pcl_loss_and_grad(z1, z2, k1, k2)
        return (loss + 1 if test(z1, z2, k1, k2) else loss), grads
    return fn


def regime_lines(report) -> list[str]:
    return [f.summary for f in report.findings if f.summary.startswith("Fails")]


def wrong_by_data_where(test):
    """The reference, its loss off by an amount that depends on the embeddings (no offset, no
    constant ratio) on the cases where ``test`` holds."""
    def fn(z1, z2, k1, k2):
        loss, grads = pcl_loss_and_grad(z1, z2, k1, k2)
        return (loss * (1 + 1e-3 * abs(float(z1[0, 0]))) if test(z1, z2, k1, k2) else loss), grads
    return fn


@pytest.mark.parametrize("name, test", [
    # odd d with N > 4: d = 3 and 33 fail, d = 1025 (N = 4) passes: the odd-d regime half fails
    ("odd-d-but-not-all", lambda z1, z2, k1, k2: z1.shape[1] % 2 == 1 and z1.shape[0] > 4),
    # N >= 16: the random cases and high-kappa, no regime of their own
    ("large-n", lambda z1, z2, k1, k2: z1.shape[0] >= 16),
])
def test_failures_that_straddle_regimes_get_no_regime_line(name, test):
    report = validate(wrong_by_data_where(test), dtypes=["float64"])
    assert not report.passed
    assert not regime_lines(report), regime_lines(report)
    (finding,) = [f for f in report.findings if f.signature == "unexplained"]
    assert set(finding.runs) == failing(report) - set().union(*(set(f.runs) for f in report.findings
                                                               if f is not finding))
    assert "Check the options" not in report.to_text()


def test_a_mistake_no_signature_knows_gets_the_evidence_and_no_advice():
    report = validate(mistake("squared_cosine"), framework="torch")
    assert report.signatures == ["unexplained"]
    (finding,) = report.findings
    assert set(finding.runs) == failing(report)
    assert "not the runs of one, two or three regimes" in finding.summary
    assert "What fails: the loss in" in finding.detail and "grad kappa1 in" in finding.detail
    assert "neither a constant offset" in finding.detail and "nor a constant ratio" in finding.detail
    assert "at kappa x1, kappa x10, kappa x100 the loss errors are" in finding.detail
    text = report.to_text()
    assert "--" not in text.split("Diagnosis:")[1]  # no option suggested
    assert not regime_lines(report)


def test_nearly_a_regime_names_its_exception():
    """Wrong in every float32 run but one: "Fails only in float32", with the count and the exception."""
    def fn(z1, z2, k1, k2):
        loss, grads = pcl_loss_and_grad(z1, z2, k1, k2)
        off = z1.dtype == np.float32 and z1.shape != (1, 8)  # n1 passes
        return (loss + np.float32(1) if off else loss), grads
    report = validate(fn)
    runs32 = {r.run for r in report.results if r.dtype == "float32"}
    assert failing(report) == runs32 - {("n1", "float32")}
    (finding,) = [f for f in report.findings if f.signature == "float32"]
    assert finding.summary == f"Fails only in float32 ({len(runs32) - 1} of {len(runs32)} runs in this regime fail)"
    assert "In this regime n1 (float32) passes." in finding.detail
    assert "Every run outside it passes." in finding.detail


def test_regime_lines_are_true_of_the_runs():
    """Every regime line of every report above: its runs fail, its count is right."""
    from probcon_ref.testing.diagnose import PREDICATES

    report = validate(mistake("normaliser_power_plus_one"), framework="torch", cases=SOME + ["kappa-zero-d2"])
    by_key = {p.key: p for p in PREDICATES}
    for f in report.findings:
        if f.signature in by_key:
            runs = {r.run for r in report.results if r._ref is not None and r.status != "skip"
                    and by_key[f.signature].test(r._ref.facts, r.dtype)}
            assert set(f.runs) == runs & failing(report)
            assert f"{len(runs & failing(report))}" in f.summary or "all" in f.summary


def test_the_battery_covers_the_temperatures_people_train_with():
    cases = {c.name: c for c in battery("ntxent")}
    assert cases["tiny-tau"].temperature == 0.01 and cases["tiny-tau"].dtypes == ("float64", "float32")
    assert cases["tiniest-tau"].temperature == 0.005 and cases["tiniest-tau"].dtypes == ("float64",)
    pcl = {c.name: c for c in battery("pcl")}
    k = np.concatenate([pcl["high-kappa"].inputs["kappa1"], pcl["high-kappa"].inputs["kappa2"]])
    assert 50 <= k.min() and k.max() <= 200 and k.max() > 150
    # a typical batch there, not only tiny losses: the mean loss is of order 1
    from probcon_ref import ntxent_loss, pcl_loss

    assert float(ntxent_loss(cases["tiny-tau"].inputs["z1"], cases["tiny-tau"].inputs["z2"], temperature=0.01)) > 0.1
    assert float(pcl_loss(*(pcl["high-kappa"].inputs[k] for k in ("z1", "z2", "kappa1", "kappa2")))) > 0.1
    report = validate(lambda z1, z2, t: __import__("probcon_ref").ntxent_loss_and_grad(z1, z2, temperature=t),
                      loss="ntxent", cases=["tiny-tau", "tiniest-tau"])
    assert report.passed and report.runs() == {("tiny-tau", "float64"), ("tiny-tau", "float32"),
                                               ("tiniest-tau", "float64")}
