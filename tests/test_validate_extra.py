"""``validate --extra-candidates``: the battery with a bank, the reference held to it, and the
diagnoses, whose every claim must hold with the bank.

The PyTorch losses with a bank, correct and broken, are in ``tests/peers/bank_losses.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import probcon_ref
from probcon_ref.testing import ROUNDING, battery, host, load_callable, regimes, validate
from probcon_ref.testing.cases import EXTRA_PER_ANCHOR

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"
SOME = ["random", "d2", "kappa-zero", "tiny-norms", "confident", "n1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bank(name):
    pytest.importorskip("torch")
    pytest.importorskip("scipy")  # broken_pcl, whose pieces bank_losses takes
    return load_callable(f"{PEERS / 'bank_losses.py'}:{name}")


def pcl_ref(z1, z2, k1, k2, ez, ek):
    return probcon_ref.pcl_loss_and_grad(z1, z2, k1, k2, extra_z=ez, extra_kappa=ek)


def ntxent_ref(z1, z2, temperature, ez):
    return probcon_ref.ntxent_loss_and_grad(z1, z2, temperature=temperature, extra_z=ez)


def failing(report) -> set:
    return report.runs("fail") | report.runs("error")


def explained_by(report, signature) -> set:
    (finding,) = [f for f in report.findings if f.signature == signature]
    return set(finding.runs)


# ---------------------------------------------------------------------------------------
# The battery with a bank
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["pcl", "ntxent"])
def test_the_bank_leaves_the_batches_and_carries_their_regimes(loss):
    plain, extra = battery(loss), battery(loss, extra_candidates=True)
    assert [c.name for c in plain] == [c.name for c in extra]
    for p, c in zip(plain, extra):
        # exact: the same generator draws the same batch; the bank has a generator of its own
        for key, value in p.inputs.items():
            np.testing.assert_array_equal(c.inputs[key], value, err_msg=f"{c.name}: {key}")
        assert c.temperature == p.temperature and c.dtypes == p.dtypes
        assert p.m == 0 and c.m == 2 * EXTRA_PER_ANCHOR * c.n
        assert c.inputs["extra_z"].shape == (c.m, c.d) and ("extra_kappa" in c.inputs) == (loss == "pcl")
        assert "extra-candidates" in c.tags and "extra-candidates" not in p.tags
        # the bank's norms are the batch's (to rounding), each used EXTRA_PER_ANCHOR times
        z = np.concatenate([c.inputs["z1"], c.inputs["z2"]])
        norms = np.sort(np.linalg.norm(c.inputs["extra_z"], axis=1))
        np.testing.assert_allclose(norms, np.sort(np.tile(np.linalg.norm(z, axis=1), EXTRA_PER_ANCHOR)), rtol=1e-14)
        if loss == "pcl":  # exact: a permutation of the batch's concentrations, repeated
            k = np.concatenate([c.inputs["kappa1"], c.inputs["kappa2"]])
            np.testing.assert_array_equal(np.sort(c.inputs["extra_kappa"]), np.sort(np.tile(k, EXTRA_PER_ANCHOR)))
    assert regimes.required(loss) <= set().union(*(c.tags for c in extra))
    again = battery(loss, extra_candidates=True)
    np.testing.assert_array_equal(again[0].inputs["extra_z"], extra[0].inputs["extra_z"])
    other = battery(loss, extra_candidates=True, seed=1)
    assert not np.array_equal(other[0].inputs["extra_z"], extra[0].inputs["extra_z"])


def test_descriptions_and_regimes_say_what_holds_with_the_bank():
    for loss in ("pcl", "ntxent"):
        (n1,) = [c for c in battery(loss, extra_candidates=True) if c.name == "n1"]
        assert "not 0" in n1.description
    cases = {c.name: c for c in battery("ntxent", extra_candidates=True)}
    for name in ("identical", "small-tau"):
        x = cases[name].inputs
        losses = probcon_ref.ntxent_loss(x["z1"], x["z2"], temperature=cases[name].temperature,
                                         extra_z=x["extra_z"], reduction="none")
        assert ("tiny-loss" in cases[name].tags) == bool(np.max(losses) < 1e-8), name


def test_the_bank_enters_the_logits_size_and_the_reference():
    """S = max over every candidate of |log C_d(kappa_b)| + kappa_b: a bank of huge kappa
    raises the tolerance; the reference's losses are those with the bank."""
    (case,) = [c for c in battery("pcl", extra_candidates=True) if c.name == "random"]
    x = {k: np.array(v) for k, v in case.inputs.items()}
    without = {k: v for k, v in x.items() if not k.startswith("extra")}
    x["extra_kappa"][0] = 1e5
    size = host.logit_scale(x, "pcl", case.d, None)
    assert np.all(size >= 1e5) and np.all(host.logit_scale(without, "pcl", case.d, None) < 1e3)
    (r,) = validate(pcl_ref, extra_candidates=True, cases=["random"], dtypes=["float64"]).results
    ex = {"extra_z": case.inputs["extra_z"], "extra_kappa": case.inputs["extra_kappa"]}
    # exact: the same function on the same float64 inputs
    np.testing.assert_array_equal(r._ref.losses, probcon_ref.pcl_loss(
        *(case.inputs[k] for k in ("z1", "z2", "kappa1", "kappa2")), reduction="none", **ex))
    assert r.m == case.m and r.to_dict()["m"] == case.m
    assert r._ref.logit_size == pytest.approx(host.logit_scale(case.inputs, "pcl", case.d, None)
                                              + np.log(2 * case.n + case.m), rel=1e-15)


# ---------------------------------------------------------------------------------------
# Correct implementations pass
# ---------------------------------------------------------------------------------------


def test_the_reference_passes_every_case_with_a_bank():
    for fn, kwargs in ((pcl_ref, {}), (ntxent_ref, {"loss": "ntxent"}),
                       (lambda z1, z2, ez: ntxent_ref(z1, z2, 0.3, ez), {"loss": "ntxent", "temperature": 0.3})):
        report = validate(fn, extra_candidates=True, **kwargs)
        assert report.passed, report.to_text()
        assert report.dtypes == ("float64", "float32") and {r.gradients for r in report.results} == {"returned"}
        assert len(report.results) == sum(len(c.dtypes) for c in battery(
            kwargs.get("loss", "pcl"), temperature=kwargs.get("temperature"), extra_candidates=True))
    per_anchor = lambda *a: probcon_ref.pcl_loss(*a[:4], extra_z=a[4], extra_kappa=a[5], reduction="none")  # noqa: E731
    assert validate(per_anchor, extra_candidates=True, reduction="none").passed


def test_log_kappa_covers_the_banks_concentrations():
    def fn(z1, z2, lk1, lk2, ez, lek):
        return probcon_ref.pcl_loss(z1, z2, np.exp(lk1), np.exp(lk2), extra_z=ez, extra_kappa=np.exp(lek))
    report = validate(fn, kappa="log", extra_candidates=True)
    assert report.passed, report.to_text()
    assert {r.case for r in report.results if r.status == "skip"} == {"kappa-zero", "kappa-zero-d2"}
    assert "extra_kappa as log-kappa too" in report.to_text()


def test_a_correct_torch_loss_with_a_bank_passes_under_autograd():
    for fn, kwargs in ((bank("pcl"), {}), (bank("ntxent"), {"loss": "ntxent"})):
        report = validate(fn, framework="torch", extra_candidates=True, cases=SOME if not kwargs.get("loss")
                          else ["random", "small-tau", "mixed-norms", "n1"], **kwargs)
        assert report.passed, report.to_text()
        assert {r.gradients for r in report.results} == {"autograd"}


def test_a_correct_loss_with_a_bank_stays_within_half_the_raised_tolerance():
    """ROUNDING eps S, S over every candidate the bank's included, keeps its margin of 2 over a
    straightforward PyTorch PCL with a bank, per anchor, in every run (1.3 eps S at most when
    this was written)."""
    report = validate(bank("pcl_per_anchor"), framework="torch", reduction="none", extra_candidates=True)
    assert report.passed, report.to_text()
    for r in report.results:
        ref = r._ref
        rel = np.abs(np.asarray(r._got_loss) - ref.losses) / np.maximum(ref.losses, ref.loss_floor / ref.loss_tol)
        size = ref.logit_size - np.log(2 * r.n + r.m)
        assert np.max(rel / (np.finfo(r.dtype).eps * size)) <= ROUNDING / 2, r.run


# ---------------------------------------------------------------------------------------
# Mistakes with a bank, named
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, loss", [("pcl_ignores_bank", "pcl"), ("ntxent_ignores_bank", "ntxent")])
def test_a_loss_that_ignores_the_bank_fails_and_is_named(name, loss):
    report = validate(bank(name), loss=loss, framework="torch", extra_candidates=True)
    assert not report.passed
    assert report.signatures == ["extra-ignored"]
    assert explained_by(report, "extra-ignored") == failing(report)
    # it passes only where the bank's share is below the tolerance (losses that underflow)
    assert all(r.errors["loss"] > r.tolerances["loss"] for r in report.results if r.status == "fail")
    assert "The extra candidates are left out of the denominator" in report.to_text()


def test_a_numpy_loss_that_ignores_the_bank_is_named_too():
    report = validate(lambda z1, z2, k1, k2, ez, ek: probcon_ref.pcl_loss_and_grad(z1, z2, k1, k2),
                      extra_candidates=True)
    assert report.signatures == ["extra-ignored"] and explained_by(report, "extra-ignored") == failing(report)


def test_the_banks_logits_without_their_normaliser_are_named():
    report = validate(bank("pcl_bank_without_normaliser"), framework="torch", extra_candidates=True)
    assert report.signatures == ["extra-no-normaliser"]
    assert explained_by(report, "extra-no-normaliser") == failing(report)
    # equal kappa everywhere does not hide it: the views keep their normaliser, the bank does not
    assert ("equal-kappa", "float64") in failing(report)
    assert "log C_d(kappa_j)" in report.findings[0].summary


def test_a_bank_of_raw_rows_is_named():
    report = validate(bank("ntxent_raw_bank"), loss="ntxent", framework="torch", extra_candidates=True)
    assert report.signatures == ["extra-unnormalised"]
    assert explained_by(report, "extra-unnormalised") == failing(report) == report.runs()
    pcl = validate(bank("pcl_raw_bank"), framework="torch", extra_candidates=True)
    assert pcl.signatures[0] == "extra-unnormalised"
    assert len(explained_by(pcl, "extra-unnormalised")) >= len(failing(pcl)) - 1  # the rest: the evidence


@pytest.mark.parametrize("name, signatures", [
    ("pcl_self_included", ["self-included"]),
    ("pcl_mean_over_pairs", ["mean-over-pairs"]),
    ("pcl_log_mean_exp", ["constant-offset:log-mean-exp"]),
    ("pcl_detached_normaliser", ["gradient:kappa-detached"]),
    ("pcl_textbook", ["tiny-loss", "gradient:positive-weight"]),
])
def test_known_mistakes_keep_their_names_with_a_bank(name, signatures):
    """Each diagnosis evaluates its claim with the bank: the log-mean-exp's offset is
    log(2N - 1 + M), the kappa gradient's missing term sums over the batch's columns, the
    textbook forms are measured against the logits' size with the bank's."""
    report = validate(bank(name), framework="torch", extra_candidates=True)
    assert report.signatures == signatures, report.to_text()
    assert set().union(*(set(f.runs) for f in report.findings)) == failing(report)


def test_one_pair_with_a_bank_is_its_own_regime():
    """+1 at N = 1 only: the regime with a bank is n1-extra, never n1, whose text says the
    positive is the only candidate and the loss is 0."""
    report = validate(bank("pcl_plus_one_for_one_pair"), framework="torch", extra_candidates=True)
    assert failing(report) == {("n1", "float64"), ("n1", "float32")}
    assert report.signatures == ["n1-extra"]
    assert report.findings[0].summary == "N = 1 with extra candidates is not handled (all 2 runs in this regime fail)"
    zero = validate(bank("pcl_one_pair_is_zero"), framework="torch", extra_candidates=True)
    assert failing(zero) == failing(report)
    # its results at N = 1 are those of the batch alone: 0, whatever the reduction
    assert zero.signatures == ["extra-ignored"]


def test_a_function_without_a_bank_is_told_about_the_option():
    report = validate(probcon_ref.pcl_loss_and_grad, extra_candidates=True, cases=["random"])
    assert report.signatures == ["calling-convention"]
    detail = report.findings[0].detail
    assert "fn(z1, z2, kappa1, kappa2, extra_z, extra_kappa)" in detail and "--extra-candidates, given here" in detail
    plain = validate(pcl_ref, cases=["random"])
    assert plain.signatures == ["calling-convention"]
    assert "--extra-candidates if it takes extra candidates" in plain.findings[0].detail


# ---------------------------------------------------------------------------------------
# The report, the options, the command line and JAX
# ---------------------------------------------------------------------------------------


def test_the_report_says_a_bank_was_passed():
    report = validate(pcl_ref, extra_candidates=True, cases=["random", "n1"])
    text = report.to_text()
    assert "extra candidates passed as extra_z and extra_kappa, after the batch's arguments" in text
    assert "with the same extra candidates" in text
    header = next(line for line in text.splitlines() if line.startswith("case "))
    assert header.split()[:5] == ["case", "N", "d", "M", "dtype"]
    row = next(line for line in text.splitlines() if line.startswith("n1 "))
    assert row.split()[1:4] == ["1", "8", str(2 * EXTRA_PER_ANCHOR)]
    doc = json.loads(report.to_json())
    assert doc["convention"]["extra_candidates"] is True
    assert {r["m"] for r in doc["runs"]} == {2 * EXTRA_PER_ANCHOR * 16, 2 * EXTRA_PER_ANCHOR}
    plain = validate(probcon_ref.pcl_loss_and_grad, cases=["random"])
    assert plain.to_dict()["convention"]["extra_candidates"] is False and "extra candidates" not in plain.to_text()


@pytest.mark.parametrize("value", [1, "yes", None])
def test_the_option_is_a_bool(value):
    with pytest.raises(TypeError, match="extra_candidates"):
        validate(pcl_ref, extra_candidates=value)
    with pytest.raises(TypeError, match="extra_candidates"):
        battery("pcl", extra_candidates=value)


def test_cli_flag_passes_the_bank(tmp_path):
    (tmp_path / "user_bank.py").write_text(
        "from probcon_ref import pcl_loss_and_grad\n"
        "def mine(z1, z2, k1, k2, bank, bank_kappa):\n"
        "    return pcl_loss_and_grad(z1, z2, k1, k2, extra_z=bank, extra_kappa=bank_kappa)\n"
        "def forgets(z1, z2, k1, k2, bank, bank_kappa):\n"
        "    return pcl_loss_and_grad(z1, z2, k1, k2)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "probcon_ref", "validate", *args, "--case", "random",
                               "--case", "n1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    good = run("user_bank:mine", "--extra-candidates")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "4 of 4 runs pass" in good.stdout and "extra candidates passed" in good.stdout
    bad = run("user_bank:forgets", "--extra-candidates", "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert [d["signature"] for d in json.loads(bad.stdout)["diagnoses"]] == ["extra-ignored"]
    without = run("user_bank:mine")  # called without its bank: every call raises
    assert without.returncode == 1 and "Every call raised" in without.stdout
    assert "--extra-candidates if it takes extra candidates" in without.stdout


def test_validate_jax_with_a_bank_differentiates_the_batch_only():
    pytest.importorskip("jax")
    import probcon_ref.jax as pj

    def pcl(z1, z2, k1, k2, ez, ek):
        return pj.pcl_loss(z1, z2, k1, k2, extra_z=ez, extra_kappa=ek)
    for case, dtype in (("random", "float64"), ("n1", "float32")):  # each eager JAX run takes seconds
        report = validate(pcl, framework="jax", extra_candidates=True, cases=[case], dtypes=[dtype])
        assert report.passed, report.to_text()
        assert {r.gradients for r in report.results} == {"autograd"}  # jax.grad, of the batch's arguments
    nt = validate(lambda z1, z2, ez: pj.ntxent_loss(z1, z2, temperature=0.3, extra_z=ez), loss="ntxent",
                  temperature=0.3, framework="jax", extra_candidates=True, cases=["n1"], dtypes=["float64"])
    assert nt.passed, nt.to_text()
    ignores = validate(lambda z1, z2, k1, k2, ez, ek: pj.pcl_loss(z1, z2, k1, k2), framework="jax",
                       extra_candidates=True, cases=["random"], dtypes=["float64"])
    assert ignores.signatures == ["extra-ignored"]


def test_docs_page_states_the_bank_as_the_package_draws_it():
    page = (ROOT / "docs" / "validating.md").read_text()
    assert "--extra-candidates" in page and f"$M = {2 * EXTRA_PER_ANCHOR}N$" in page
    for key in ("extra-ignored", "extra-no-normaliser", "extra-unnormalised", "n1-extra"):
        assert f"`{key}`" in page, key
