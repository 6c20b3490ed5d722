"""``probcon-ref validate``: the battery, the verdict, and each diagnosis on a known mistake.

The deliberately broken implementations live in ``tests/peers/broken_pcl.py``; each is
correct but for one mistake, and the validator must both reject it and name the mistake.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probcon_ref import ntxent_loss_and_grad, pcl_loss, pcl_loss_and_grad
from probcon_ref.cli import main
from probcon_ref.testing import battery, load_callable, validate

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def broken(name):
    pytest.importorskip("torch")
    pytest.importorskip("scipy")
    return load_callable(f"{PEERS / 'broken_pcl.py'}:{name}")


def ntxent_ref(z1, z2, temperature):
    return ntxent_loss_and_grad(z1, z2, temperature=temperature)


# ---------------------------------------------------------------------------------------
# The battery
# ---------------------------------------------------------------------------------------


def test_pcl_battery_covers_every_regime_of_spec_section_6():
    cases = {c.name: c for c in battery("pcl")}
    tags = set().union(*(c.tags for c in cases.values()))
    assert {"random", "d2", "d3", "odd-d", "large-d", "tiny-kappa", "huge-kappa", "kappa-zero", "identical",
            "antipodal", "tiny-norm", "huge-norm", "n1", "tiny-loss"} <= tags
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
    assert all(r.errors["loss"] <= 1e-12 for r in equal if r.dtype == "float64")


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
    assert all(r.errors["loss"] <= 1e-12 for r in report.results if r.dtype == "float64")
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
    ({"framework": "jax"}, ValueError, "framework"),
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


def test_docs_page_lists_every_case_and_option():
    page = ROOT / "docs" / "validating.md"
    if not page.is_file():
        pytest.skip("docs/validating.md is not present")
    text = page.read_text()
    for loss in ("pcl", "ntxent"):
        for case in battery(loss):
            if loss == "pcl" or case.name in ("small-tau", "large-tau"):
                assert f"`{case.name}`" in text, case.name
    for option in ("--framework", "--reduction", "--kappa", "--temperature", "--gradients", "--dtype", "--case",
                   "--json", "pair-mean"):
        assert option in text, option
    from probcon_ref import _diagnose as dg

    for key in dg.REDUCTIONS:
        assert key == "declared" or f"`{key}`" in text, key
    for v in dg.VARIANTS:
        if not v.key.startswith("temperature="):
            assert f"`{v.key}`" in text, v.key
    for p in dg.PREDICATES:
        assert f"`{p.key}`" in text, p.key
    for key in dg.GRADIENT_DIAGNOSES:
        assert f"`gradient:{key}`" in text, key
