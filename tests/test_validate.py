"""``probcon-ref validate``: the battery, the verdict, and each diagnosis on a known mistake.

The deliberately broken implementations live in ``tests/peers/broken_pcl.py`` (PyTorch) and
``tests/peers/textbook.py`` (NumPy: the two textbook forms of the contract, section 4, and a float64
output); each is correct but for one mistake, and the validator must both reject it and
name the mistake.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probcon_ref import ntxent_loss, ntxent_loss_and_grad, pcl_loss, pcl_loss_and_grad
from probcon_ref.tools.cli import main
from probcon_ref.testing import ROUNDING, TOLERANCES, battery, load_callable, regimes, validate
from probcon_ref.testing.diagnose.finding import ROUNDING_LEVEL
from probcon_ref.testing.measure import loss_rounding

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def broken(name):
    pytest.importorskip("torch")
    pytest.importorskip("scipy")
    return load_callable(f"{PEERS / 'broken_pcl.py'}:{name}")


def textbook(name):
    return load_callable(f"{PEERS / 'textbook.py'}:{name}")


def ntxent_ref(z1, z2, temperature):
    return ntxent_loss_and_grad(z1, z2, temperature=temperature)


# ---------------------------------------------------------------------------------------
# The battery
# ---------------------------------------------------------------------------------------


def test_pcl_battery_covers_every_regime_of_spec_section_6():
    cases = {c.name: c for c in battery("pcl")}
    tags = set().union(*(c.tags for c in cases.values()))
    assert regimes.required("pcl") <= tags
    dims = {c.d for c in cases.values()}
    assert {2, 3, 4096} <= dims and any(d % 2 and d > 1000 for d in dims)
    kappa = np.concatenate([np.concatenate([c.inputs["kappa1"], c.inputs["kappa2"]]) for c in cases.values()])
    assert kappa.min() == 0 and 0 < kappa[kappa > 0].min() <= 1e-8 and kappa.max() >= 9e5
    np.testing.assert_array_equal(cases["identical"].inputs["z2"], cases["identical"].inputs["z1"])
    np.testing.assert_array_equal(cases["antipodal"].inputs["z2"], -cases["antipodal"].inputs["z1"])
    assert cases["n1"].n == 1
    norms = np.linalg.norm(cases["mixed-norms"].inputs["z1"], axis=1)
    assert norms.min() < 1e-4 and norms.max() > 1e4
    # deterministic for a seed, different for another
    again = {c.name: c for c in battery("pcl")}
    np.testing.assert_array_equal(again["random"].inputs["z1"], cases["random"].inputs["z1"])
    other = {c.name: c for c in battery("pcl", seed=1)}
    assert not np.array_equal(other["random"].inputs["z1"], cases["random"].inputs["z1"])


def test_ntxent_battery_covers_every_regime_of_spec_section_6():
    assert regimes.required("ntxent") <= set().union(*(c.tags for c in battery("ntxent")))


def test_a_regime_outside_the_list_is_refused():
    with pytest.raises(ValueError, match="unknown regime"):
        regimes.keys("identical", "no-such-regime")


def test_ntxent_battery_fixed_temperature():
    assert {c.temperature for c in battery("ntxent", temperature=0.3)} == {0.3}
    assert len({c.temperature for c in battery("ntxent")}) > 3


# ---------------------------------------------------------------------------------------
# Correct implementations pass
# ---------------------------------------------------------------------------------------


def test_reference_passes_with_returned_gradients():
    report = validate(pcl_loss_and_grad)
    assert report.passed, report.to_text()
    assert {r.gradients for r in report.results} == {"returned"}
    assert len(report.results) == 2 * len(battery("pcl"))
    report = validate(ntxent_ref, loss="ntxent")
    assert report.passed, report.to_text()


def test_reference_passes_on_torch_tensors():
    pytest.importorskip("torch")
    report = validate(pcl_loss_and_grad, framework="torch")
    assert report.passed, report.to_text()


def test_other_reductions_pass_when_declared():
    report = validate(lambda *a: pcl_loss(*a, reduction="none"), reduction="none")
    assert report.passed, report.to_text()
    assert {r.gradients for r in report.results} == {"none"}
    assert "gradients: not checked" in report.to_text()
    summed = validate(lambda *a: pcl_loss_and_grad(*a, reduction="sum"), reduction="sum")
    assert summed.passed, summed.to_text()


def test_a_correct_torch_pcl_passes_under_autograd():
    for fn, kwargs in ((broken("correct"), {}), (broken("correct_per_anchor"), {"reduction": "none"})):
        report = validate(fn, framework="torch", **kwargs)
        assert report.passed, report.to_text()
        assert {r.gradients for r in report.results} == {"autograd"}


@pytest.mark.parametrize("seed", [0, 1])
def test_the_project_torch_adapter_passes(seed):
    """``probcon_ref.torch``'s losses (analytic backward), every case, both dtypes, two seeds."""
    pytest.importorskip("torch")
    import probcon_ref.torch as pt

    for fn, kwargs in ((pt.pcl_loss, {}),
                       (lambda *a: pt.pcl_loss(*a, reduction="none"), {"reduction": "none"}),
                       (lambda z1, z2, t: pt.ntxent_loss(z1, z2, temperature=t), {"loss": "ntxent"})):
        report = validate(fn, framework="torch", seed=seed, **kwargs)
        assert report.passed, report.to_text()
        assert {r.gradients for r in report.results} == {"autograd"}


# ---------------------------------------------------------------------------------------
# Broken implementations are rejected, with the mistake named
# ---------------------------------------------------------------------------------------


def explained_by(report, signature) -> set:
    (finding,) = [f for f in report.findings if f.signature == signature]
    return set(finding.runs)


def failing(report) -> set:
    return report.runs("fail") | report.runs("error")


def test_mean_over_pairs_is_a_factor_of_two():
    fn = broken("mean_over_pairs")
    report = validate(fn, framework="torch")
    assert not report.passed
    assert report.signatures == ["mean-over-pairs"]
    assert explained_by(report, "mean-over-pairs") == failing(report)
    assert "--reduction pair-mean" in report.to_text()
    # ... and it is right under that convention
    assert validate(fn, framework="torch", reduction="pair-mean").passed


def test_sum_validated_as_mean():
    report = validate(lambda *a: pcl_loss_and_grad(*a, reduction="sum"))
    assert report.signatures == ["sum-for-mean"]
    assert explained_by(report, "sum-for-mean") == failing(report)


def test_diagonal_not_excluded():
    report = validate(broken("self_included"), framework="torch")
    assert report.signatures == ["self-included"]
    assert explained_by(report, "self-included") == failing(report) == report.runs()


def test_self_recognised_by_value_fails_only_with_identical_views():
    report = validate(broken("self_masked_by_value"), framework="torch")
    identical = {(c.name, dt) for c in battery("pcl") if "identical" in c.tags for dt in ("float64", "float32")}
    assert failing(report) == identical
    assert report.signatures == ["identical-views"]
    assert "by index" in report.to_text()


def test_missing_normaliser():
    report = validate(broken("no_normaliser"), framework="torch")
    assert report.signatures[0] == "no-normaliser"
    # with kappa equal everywhere the normaliser cancels: the loss is right there
    equal = [r for r in report.results if r.case == "equal-kappa"]
    assert all(r.errors["loss"] <= TOLERANCES["float64"][0] for r in equal if r.dtype == "float64")


def test_constant_offset_is_recognised():
    report = validate(broken("constant_in_positive_only"), framework="torch")
    assert report.signatures == ["constant-offset:normaliser-constant-in-positive-only"]
    assert explained_by(report, report.signatures[0]) == failing(report) == report.runs()
    assert "(d/2) log(2 pi)" in report.findings[0].summary


def test_detached_normaliser_breaks_only_the_kappa_gradient():
    report = validate(broken("detached_normaliser"), framework="torch")
    assert report.signatures == ["gradient:kappa-detached"]
    bad = [r for r in report.results if r.status == "fail"]
    assert bad and all(set(r.wrong) <= {"kappa1", "kappa2"} for r in bad)
    assert all(r.errors["loss"] <= TOLERANCES["float64"][0] for r in report.results if r.dtype == "float64")
    assert explained_by(report, "gradient:kappa-detached") == failing(report)


def test_log_kappa_convention():
    fn = broken("takes_log_kappa")
    report = validate(fn, framework="torch")
    assert report.signatures[0] == "exp-kappa"
    assert "--kappa log" in report.to_text()
    right = validate(fn, framework="torch", kappa="log")
    assert right.passed, right.to_text()
    assert {r.case for r in right.results if r.status == "skip"} == {"kappa-zero", "kappa-zero-d2"}


def test_unscaled_bessel_overflows_where_predicted():
    report = validate(broken("unscaled_iv"), framework="torch")
    assert {"bessel-overflow", "bessel-underflow", "kappa-zero"} == set(report.signatures)
    covered = set().union(*(set(f.runs) for f in report.findings))
    assert covered == failing(report)
    assert "overflow" in report.to_text()


def test_returned_gradient_with_a_missing_term():
    report = validate(broken("numpy_one_sided_gradient"))
    assert report.signatures == ["gradient:one-sided"]
    assert {r.gradients for r in report.results} == {"returned"}


def test_wrong_output_shape():
    report = validate(broken("correct_per_anchor"), framework="torch")
    assert report.signatures == ["shape"]
    assert "--reduction none" in report.findings[0].detail


def test_calling_convention_mismatch():
    report = validate(ntxent_loss_and_grad, loss="ntxent")
    assert report.signatures == ["calling-convention"]
    assert report.runs("error") == report.runs()
    assert "--temperature" in report.findings[0].detail


# ---------------------------------------------------------------------------------------
# The textbook forms of the contract, section 4, and the measure that rejects them
# ---------------------------------------------------------------------------------------


def tiny(report, run) -> float:
    """The smallest per-anchor reference loss of a run."""
    (r,) = [r for r in report.results if r.run == run]
    return float(np.min(r._ref.losses))


@pytest.mark.parametrize("name, loss", [("textbook_pcl", "pcl"), ("textbook_ntxent", "ntxent")])
def test_textbook_loss_fails_where_the_loss_is_tiny_and_is_named(name, loss):
    """``-F_ap + logsumexp_b F_ab``: right to the logits' rounding, which the old measure (errors
    against the logits' scale) accepted; wrong per anchor where the loss is tiny."""
    report = validate(textbook(name), loss=loss)
    assert not report.passed
    assert report.signatures == ["tiny-loss"]
    assert explained_by(report, "tiny-loss") == failing(report)
    bad = [r for r in report.results if r.status == "fail"]
    assert all(r.wrong == ("loss",) for r in bad)  # its gradients are the reference's
    for r in bad:  # and only where the loss is far below its logits
        assert np.min(r._ref.losses) < 1e-3 * np.max(r._ref.logit_size), r.run
        # its error is the logits' rounding, well inside what the signature allows
        assert loss_rounding(r._got_loss, r._ref, "mean") <= ROUNDING_LEVEL / 4, r.run
    if loss == "pcl":
        (confident,) = [r for r in bad if r.run == ("confident", "float64")]
        assert confident._got_loss == 0.0 and 0 < float(confident._ref.loss) < 1e-40
        assert confident.errors["loss"] == 1.0
        assert {"confident", "confident-close"} <= {r.case for r in bad}
    else:
        assert {("small-tau", "float64"), ("identical", "float64")} <= failing(report)
    text = report.to_text()
    assert "-F_ap + logsumexp_b F_ab" in text and "log1p" in text


@pytest.mark.parametrize("name, loss, blocks", [("positive_weight_pcl", "pcl", {"z1", "z2", "kappa1", "kappa2"}),
                                                ("positive_weight_ntxent", "ntxent", {"z1", "z2"})])
def test_positive_weight_from_one_minus_p_fails_and_is_named(name, loss, blocks):
    """``W_ap = w (P_ap - 1)``: the loss is right, the gradients through the positive are not."""
    report = validate(textbook(name), loss=loss)
    assert not report.passed
    assert report.signatures == ["gradient:positive-weight"]
    assert explained_by(report, "gradient:positive-weight") == failing(report)
    assert all(r.errors["loss"] <= r.tolerances["loss"] for r in report.results)
    bad = [r for r in report.results if r.status == "fail"]
    assert set().union(*(set(r.wrong) for r in bad)) == blocks
    worst = max(max(r.errors[k] / r.tolerances[k] for k in r.wrong) for r in bad)
    assert worst > 1e3  # not a near miss
    case = "confident-close" if loss == "pcl" else "small-tau"
    assert {(case, "float64"), (case, "float32")} <= failing(report)
    assert all(tiny(report, run) < 1e-10 for run in failing(report))


def test_cross_entropy_with_autograd_has_both_textbook_forms():
    """``F.cross_entropy`` is the textbook loss, and its autograd gradient gives the positive
    the weight ``w (P_ap - 1)``: both signatures, covering every failure."""
    report = validate(broken("textbook"), framework="torch")
    assert report.signatures == ["tiny-loss", "gradient:positive-weight"]
    assert explained_by(report, "tiny-loss") | explained_by(report, "gradient:positive-weight") == failing(report)
    assert ("confident-close", "float64") in explained_by(report, "tiny-loss") & explained_by(
        report, "gradient:positive-weight")


def test_a_correct_implementation_stays_within_half_the_raised_tolerance():
    """ROUNDING eps S has a margin of 2 over a straightforward PyTorch PCL (logits
    ``log C_d(kappa_b) + kappa_b c_ab``, the stable loss), per anchor, in every run."""
    report = validate(broken("correct_per_anchor"), framework="torch", reduction="none")
    assert report.passed, report.to_text()
    for r in report.results:
        ref = r._ref
        eps = np.finfo(r.dtype).eps
        rel = np.abs(np.asarray(r._got_loss) - ref.losses) / np.maximum(ref.losses, ref.loss_floor / ref.loss_tol)
        size = ref.logit_size - np.log(2 * r.n)
        assert np.max(rel / (eps * size)) <= ROUNDING / 2, r.run


def test_loss_underflowing_to_zero_is_measured_against_a_floor_of_subnormals():
    """Where every per-anchor loss underflows to 0 (kappa 1e4 to 1e6), an answer a few
    subnormals off passes, and one of 1e-300 does not."""
    sub = np.finfo(np.float64).smallest_subnormal
    case = {"cases": ["huge-kappa"], "dtypes": ["float64"], "reduction": "none"}
    (r,) = validate(lambda *a: pcl_loss(*a, reduction="none"), **case).results
    assert r.status == "pass" and np.all(r._ref.losses == 0)
    assert validate(lambda *a: pcl_loss(*a, reduction="none") + 3 * sub, **case).passed
    off = validate(lambda *a: pcl_loss(*a, reduction="none") + 1e-300, **case)
    assert not off.passed and off.results[0].wrong == ("loss",)


def test_tolerance_is_raised_only_where_the_logits_rounding_exceeds_it():
    """The tolerances of the contract, section 6, raised to ROUNDING eps S where the logits' size S makes that
    larger; the report says which runs, and the reference meets the contract's bound there anyway."""
    report = validate(pcl_loss_and_grad, cases=["random", "large-d"], dtypes=["float64"])
    by_case = {r.case: r for r in report.results}
    assert by_case["random"].tolerances == {k: TOLERANCES["float64"][k != "loss"] for k in by_case["random"].errors}
    large = by_case["large-d"]
    size = float(np.max(large._ref.logit_size - np.log(2 * large.n)))
    assert size > 1e4  # log C_d at d = 4096
    assert large.tolerances["loss"] == pytest.approx(ROUNDING * np.finfo(np.float64).eps * size, rel=1e-12)
    assert large.errors["loss"] <= TOLERANCES["float64"][0]
    rows = {line.split()[0]: line for line in report.to_text().splitlines() if line.endswith(")") or " pass" in line}
    assert "(tol loss" in rows["large-d"] and "(tol" not in rows["random"]


# ---------------------------------------------------------------------------------------
# Output dtype
# ---------------------------------------------------------------------------------------


def test_float64_output_for_float32_input_is_a_failure_with_a_clear_line():
    report = validate(textbook("float64_output"))
    assert report.signatures == ["dtype"]
    assert report.runs("pass") == {run for run in report.runs() if run[1] == "float64"}
    assert failing(report) == explained_by(report, "dtype") == {run for run in report.runs() if run[1] == "float32"}
    line = "dtype: loss, z1, z2, kappa1, kappa2 in float64, expected float32 (the inputs' dtype)"
    assert all(r.message == line and r.wrong == ("dtype",) for r in report.results if r.status == "fail")
    assert line in report.to_text()
    assert "Output dtype differs from the inputs'" in report.findings[0].summary
    # its values are still measured, and are right
    assert all(r.errors[k] <= r.tolerances[k] for r in report.results for k in r.errors)


def test_python_float_loss_for_float32_input_is_reported():
    report = validate(lambda *a: float(pcl_loss(*a)), cases=["random"])
    (f64,) = [r for r in report.results if r.dtype == "float64"]
    (f32,) = [r for r in report.results if r.dtype == "float32"]
    assert f64.status == "pass"
    assert f32.status == "fail" and f32.message == "dtype: loss in Python float, expected float32 (the inputs' dtype)"


def test_torch_float64_output_for_float32_input_is_reported():
    torch = pytest.importorskip("torch")
    fn = broken("correct")
    report = validate(lambda *a: fn(*(t.double() for t in a)), framework="torch", cases=["random"],
                      dtypes=["float32"])
    (r,) = report.results
    assert r.status == "fail" and r.wrong == ("dtype",)
    assert r.message.startswith("dtype: loss in float64, expected float32")  # autograd's grads are float32
    assert torch.float32  # the gradients, taken by autograd, come back in the inputs' dtype


# ---------------------------------------------------------------------------------------
# Diagnosis lines are claims
# ---------------------------------------------------------------------------------------


def wrong_where(test):
    """The reference, plus 1 on the cases where ``test(z1, z2, kappa1, kappa2)`` holds."""
    def fn(z1, z2, k1, k2):
        loss, grads = pcl_loss_and_grad(z1, z2, k1, k2)
        return (loss + 1 if test(z1, z2, k1, k2) else loss), grads
    return fn


def test_fails_only_is_said_only_when_the_regime_holds_every_failure():
    identical = lambda z1, z2, k1, k2: np.array_equal(z1, z2)
    only = validate(wrong_where(identical))
    assert only.signatures == ["identical-views"]
    runs = {(c.name, dt) for c in battery("pcl") if "identical" in c.tags for dt in ("float64", "float32")}
    assert failing(only) == runs
    assert only.findings[0].summary == f"Fails only when the two views are identical (all {len(runs)} runs in this regime fail)"

    tiny_norm = lambda z1, z2, k1, k2: min(np.min(np.linalg.norm(z, axis=1)) for z in (z1, z2)) < 1e-3
    both = validate(wrong_where(lambda *a: identical(*a) or tiny_norm(*a)))
    assert set(both.signatures) == {"identical-views", "tiny-norm"}
    summaries = {f.signature: f.summary for f in both.findings}
    assert summaries["identical-views"] == f"Fails when the two views are identical (all {len(runs)} runs in this regime fail)"
    assert summaries["tiny-norm"].startswith("Fails with tiny raw norms (all ")
    assert not any("only" in s for s in summaries.values())
    assert set().union(*(set(f.runs) for f in both.findings)) == failing(both)


def test_regime_counts_include_runs_another_finding_explains():
    """+1 where some kappa = 0: an offset in float64 (unchanged when the directions are redrawn),
    the rest by regime; the regime's count is of every failing run in it, not only the rest."""
    report = validate(wrong_where(lambda z1, z2, k1, k2: bool(np.any(k1 == 0) or np.any(k2 == 0))))
    assert report.signatures == ["constant-offset", "kappa-zero"]
    offset, regime = report.findings
    assert offset.summary.startswith("Constant offset of +1 ")
    assert len(failing(report)) == 4 and set(offset.runs) | set(regime.runs) == failing(report)
    assert regime.summary == "kappa = 0 is not handled (all 4 runs in this regime fail)"


def test_a_near_zero_error_is_not_called_a_constant_offset():
    """Two rounding-level errors agree to 1e-8 without being one offset (the textbook form's
    errors at large d and at tiny losses once were)."""
    report = validate(textbook("textbook_pcl"), dtypes=["float64"])
    assert not any(s.startswith("constant-offset") for s in report.signatures)


# ---------------------------------------------------------------------------------------
# Report formats and the command line
# ---------------------------------------------------------------------------------------


def test_json_report_is_complete_and_strict_json():
    report = validate(broken("self_masked_by_value"), framework="torch", cases=["identical", "random"])
    doc = json.loads(report.to_json())
    assert doc["passed"] is False
    assert doc["counts"] == {"pass": 2, "fail": 2, "error": 0, "skip": 0}
    assert {r["case"] for r in doc["runs"]} == {"identical", "random"}
    bad = [r for r in doc["runs"] if r["status"] == "fail"]
    assert all(r["errors"]["loss"] in ("nan", "inf") for r in bad)
    assert doc["diagnoses"][0]["signature"] == "identical-views"
    assert doc["diagnoses"][0]["runs"][0]["case"] == "identical"
    assert set(doc["worst"]) == {"float64", "float32"}
    good = [r for r in doc["runs"] if r["status"] == "pass"]
    assert all(set(r["tolerances"]) == set(r["errors"]) and r["errors"]["loss"] <= r["tolerances"]["loss"]
               for r in good)


def test_cli_exit_status_and_json(capsys):
    path = PEERS / "broken_pcl.py"
    pytest.importorskip("torch")
    pytest.importorskip("scipy")
    assert main(["validate", f"{path}:correct", "--framework", "torch", "--case", "random", "--case", "n1"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "random" in out
    assert main(["validate", f"{path}:mean_over_pairs", "--framework", "torch", "--dtype", "float64",
                 "--case", "random", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["diagnoses"][0]["signature"] == "mean-over-pairs"
    assert main(["validate", f"{path}:no_such_function"]) == 2
    assert "no attribute" in capsys.readouterr().err
    assert main(["validate", "not-a-target"]) == 2
    assert main(["validate", f"{path}:correct", "--loss", "ntxent", "--kappa", "log"]) == 2
    assert "kappa='log'" in capsys.readouterr().err


def test_cli_imports_module_from_the_current_directory(tmp_path):
    (tmp_path / "user_loss.py").write_text(
        "from probcon_ref import pcl_loss_and_grad\n"
        "def mine(z1, z2, k1, k2):\n"
        "    return pcl_loss_and_grad(z1, z2, k1, k2)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "probcon_ref", "validate", "user_loss:mine", "--case", "random"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 runs pass" in proc.stdout


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"loss": "infonce"}, ValueError, "loss"),
    ({"framework": "tensorflow"}, ValueError, "framework"),
    ({"reduction": "avg"}, ValueError, "reduction"),
    ({"kappa": "exp"}, ValueError, "kappa"),
    ({"gradients": "maybe"}, ValueError, "gradients"),
    ({"dtypes": ("float16",)}, ValueError, "dtypes"),
    ({"dtypes": ()}, ValueError, "dtypes"),
    ({"cases": ["nope"]}, ValueError, "cases"),
    ({"loss": "ntxent", "temperature": 0.0}, ValueError, "temperature"),
    ({"loss": "pcl", "temperature": 0.5}, ValueError, "temperature"),
    ({"loss": "ntxent", "kappa": "log"}, ValueError, "kappa"),
    ({"gradients": "autograd"}, ValueError, "autograd"),
])
def test_bad_options_name_the_argument(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        validate(pcl_loss_and_grad, **kwargs)


def test_bad_callable_and_target():
    with pytest.raises(TypeError, match="fn must be callable"):
        validate("probcon_ref:pcl_loss")
    with pytest.raises(ValueError, match="MODULE:CALLABLE"):
        load_callable("probcon_ref.pcl_loss")
    with pytest.raises(TypeError, match="not a callable"):
        load_callable("probcon_ref:__version__")
    with pytest.raises(ValueError, match="does not exist"):
        load_callable("no/such/file.py:f")
    with pytest.raises(TypeError, match="seed"):
        battery("pcl", seed=1.5)


def test_docs_pages_list_every_case_option_and_signature():
    """The validating page names every option; it and the peers page, with the tables their
    generators print, name every case of the battery and every signature of the diagnoses."""
    page = ROOT / "docs" / "validating.md"
    if not page.is_file():
        pytest.skip("docs/validating.md is not present")
    text = page.read_text()
    for option in ("--framework", "--reduction", "--kappa", "--temperature", "--gradients", "--dtype", "--case",
                   "--json", "pair-mean", "--extra-candidates"):
        assert option in text, option
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    import generated_peers

    pages = text + (ROOT / "docs" / "peers.md").read_text()
    for name in ("validate_battery", "validate_signatures"):
        if f"{{generated}} {name}" in pages:
            pages += getattr(generated_peers, name)()
    for loss in ("pcl", "ntxent"):
        for case in battery(loss):
            assert f"`{case.name}`" in pages, case.name
    from probcon_ref.testing import diagnose as dg

    for key in dg.REDUCTIONS:
        assert key == "declared" or f"`{key}`" in pages, key
    for v in dg.VARIANTS:
        assert f"`{v.key}`" in pages, v.key
    for p in dg.PREDICATES:
        assert f"`{p.key}`" in pages, p.key
    for key in dg.GRADIENT_DIAGNOSES:
        assert f"`gradient:{key}`" in pages, key
