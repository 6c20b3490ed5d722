"""Golden vectors: the shipped set, the reference checked against it, and how it is made.

The set ships in ``probcon_ref/data/golden``. Its outputs were computed at 50 digits by
:mod:`probcon_ref.oracle`; a few small cases are recomputed here (the oracle is slow) and
must agree bit for bit, and the oracle itself is cross-checked against the independent
mpmath oracle of ``tests/reference/mp_reference.py`` when that file is present.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from probcon_ref import ntxent_loss, ntxent_loss_and_grad, oracle, pcl_loss, pcl_loss_and_grad, vectors
from probcon_ref.cli import main
from probcon_ref.special import bessel_ratio, log_vmf_normalizer

EPS = np.finfo(np.float64).eps
SHIPPED = vectors.load()
MP_REFERENCE = Path(__file__).resolve().parent / "reference" / "mp_reference.py"


def test_shipped_set_is_complete_and_versioned():
    manifest = json.loads((vectors.shipped_directory() / "manifest.json").read_text())
    assert manifest["format"] == vectors.FORMAT and manifest["version"] == vectors.VERSION == 1
    assert manifest["digits"] == 50
    assert [m["name"] for m in manifest["cases"]] == [c.name for c in vectors.CASES] == list(SHIPPED)
    regimes = set().union(*(c.regimes for c in SHIPPED.values()))
    assert {"d2", "d3", "odd-d", "large-d", "tiny-kappa", "kappa-zero", "huge-kappa", "identical",
            "antipodal", "tiny-norm", "huge-norm", "n1", "tiny-loss"} <= regimes
    assert {c.loss for c in SHIPPED.values()} == {"pcl", "ntxent"}
    assert "allow_pickle=False" in (vectors.shipped_directory() / "README.md").read_text()


@pytest.mark.parametrize("name", list(SHIPPED))
def test_npz_and_json_hold_the_same_float64(name):
    case = SHIPPED[name]
    doc = json.loads((vectors.shipped_directory() / f"{name}.json").read_text())
    assert doc["version"] == 1 and doc["name"] == name and doc["loss"] == case.loss
    assert (doc["n"], doc["d"]) == case.inputs["z1"].shape == (case.n, case.d)
    for group, arrays in (("inputs", case.inputs), ("outputs", case.outputs)):
        assert set(doc[group]) == set(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(np.asarray(doc[group][key], dtype=np.float64), value, err_msg=key)
    n = case.n
    assert case.outputs["losses"].shape == (2 * n,)
    assert case.outputs["grad_z1"].shape == case.inputs["z1"].shape
    assert np.all(np.isfinite(np.concatenate([np.ravel(v) for v in case.outputs.values()])))


def test_shipped_inputs_are_rebuilt_from_their_seeds():
    for name, case in SHIPPED.items():
        rebuilt = vectors.case_inputs(name)
        for key, value in case.inputs.items():
            np.testing.assert_array_equal(rebuilt[key], value, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name", list(SHIPPED))
def test_reference_reproduces_the_golden_vectors(name):
    """SPEC section 6: every loss to 1e-12 relative, gradient blocks to 1e-10 of their max-norm.

    (Other implementations are held to ``max(1e-12, 4 eps * logit scale)`` by ``validate``; the
    reference itself keeps its logits free of the large terms of ``log C_d`` and meets 1e-12.)"""
    case = SHIPPED[name]
    x, want = case.inputs, case.outputs
    if case.loss == "pcl":
        args = (x["z1"], x["z2"], x["kappa1"], x["kappa2"])
        loss, grads = pcl_loss_and_grad(*args)
        losses = pcl_loss(*args, reduction="none")
        total = pcl_loss(*args, reduction="sum")
        got = dict(zip(("grad_z1", "grad_z2", "grad_kappa1", "grad_kappa2"), grads))
        d = case.d
        kappa = np.concatenate([x["kappa1"], x["kappa2"]])
        log_c = log_vmf_normalizer(d, kappa)
        np.testing.assert_array_less(np.abs(log_c - want["log_vmf_normalizer"]),
                                     2e-14 * np.maximum(1, np.abs(want["log_vmf_normalizer"])) + 1e-300)
        length = bessel_ratio(d / 2 - 1, kappa)
        np.testing.assert_array_less(np.abs(length - want["mean_resultant_length"]),
                                     1e-14 * want["mean_resultant_length"] + 1e-300)
    else:
        tau = case.temperature
        loss, grads = ntxent_loss_and_grad(x["z1"], x["z2"], temperature=tau)
        losses = ntxent_loss(x["z1"], x["z2"], temperature=tau, reduction="none")
        total = ntxent_loss(x["z1"], x["z2"], temperature=tau, reduction="sum")
        got = dict(zip(("grad_z1", "grad_z2"), grads))
    rtol = 1e-12
    tiny = 4 * np.finfo(np.float64).smallest_subnormal
    for value, ref in ((float(loss), want["loss"]), (float(total), want["loss_sum"])):
        assert abs(value - ref) <= rtol * abs(ref) + tiny, (value, float(ref))
    np.testing.assert_array_less(np.abs(losses - want["losses"]), rtol * np.abs(want["losses"]) + tiny)
    for key, value in got.items():
        scale = float(np.max(np.abs(want[key])))
        assert np.max(np.abs(value - want[key])) <= 1e-10 * scale + tiny, key


def test_golden_special_cases_hold_exactly():
    assert np.all(SHIPPED["pcl-n1"].outputs["losses"] == 0)
    assert np.all(SHIPPED["ntxent-n1"].outputs["grad_z1"] == 0)
    under = SHIPPED["pcl-underflow"].outputs["losses"]
    assert np.any(under == 0) and np.any((under > 0) & (under < np.finfo(np.float64).tiny))
    assert SHIPPED["pcl-confident"].outputs["losses"].max() < 1e-40
    d = SHIPPED["pcl-kappa-zero"].d
    lim = math.lgamma(d / 2) - math.log(2) - d / 2 * math.log(math.pi)
    assert SHIPPED["pcl-kappa-zero"].outputs["log_vmf_normalizer"][0] == pytest.approx(lim, rel=1e-15)


def test_cli_writes_the_shipped_set(tmp_path, capsys):
    assert main(["vectors", str(tmp_path / "out")]) == 0
    assert "wrote 25 golden cases" in capsys.readouterr().out
    written = vectors.load(tmp_path / "out")
    assert list(written) == list(SHIPPED)
    for name, case in written.items():
        for key, value in {**case.inputs, **case.outputs}.items():
            np.testing.assert_array_equal(value, {**SHIPPED[name].inputs, **SHIPPED[name].outputs}[key])
    assert (tmp_path / "out" / "README.md").read_text() == (vectors.shipped_directory() / "README.md").read_text()
    assert (tmp_path / "out" / "pcl-basic.json").is_file()
    with np.load(tmp_path / "out" / "pcl-basic.npz", allow_pickle=False) as data:
        assert data["z1"].dtype == np.float64
    assert main(["vectors", str(tmp_path / "json"), "--format", "json", "--case", "pcl-d2"]) == 0
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == ["README.md", "manifest.json", "pcl-d2.json"]
    assert main(["vectors", str(tmp_path / "bad"), "--case", "no-such-case"]) == 2
    assert main(["vectors", "--list"]) == 0
    assert "pcl-large-d" in capsys.readouterr().out


def test_recomputed_at_50_digits_bit_for_bit(tmp_path):
    pytest.importorskip("mpmath")
    names = ["pcl-basic", "pcl-kappa-zero-d2", "pcl-confident", "ntxent-identical"]
    vectors.write(tmp_path, recompute=True, names=names)
    again = vectors.load(tmp_path)
    for name in names:
        for key, value in SHIPPED[name].outputs.items():
            np.testing.assert_array_equal(again[name].outputs[key], value, err_msg=f"{name}: {key}")


def _mp_reference():
    if not MP_REFERENCE.is_file():
        pytest.skip("tests/reference/mp_reference.py is not present")
    pytest.importorskip("mpmath")
    spec = importlib.util.spec_from_file_location("_mp_reference_for_vectors", MP_REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["pcl-d3", "pcl-kappa-zero", "pcl-antipodal", "ntxent-basic"])
def test_oracle_agrees_with_the_independent_mp_reference(name):
    ref = _mp_reference()
    x = SHIPPED[name].inputs
    if SHIPPED[name].loss == "pcl":
        r = ref.pcl_loss_and_grad(x["z1"], x["z2"], x["kappa1"], x["kappa2"], "mean")
        mine = oracle.pcl(x["z1"], x["z2"], x["kappa1"], x["kappa2"])
        keys = ("z1", "z2", "kappa1", "kappa2")
    else:
        r = ref.ntxent_loss_and_grad(x["z1"], x["z2"], float(x["temperature"]), "mean")
        mine = oracle.ntxent(x["z1"], x["z2"], temperature=float(x["temperature"]))
        keys = ("z1", "z2")
    np.testing.assert_array_max_ulp(mine.losses, r[0], maxulp=1)
    np.testing.assert_array_max_ulp(np.float64(mine.loss), np.float64(r[1]), maxulp=1)
    for key, theirs in zip(keys, r[2:]):
        np.testing.assert_array_max_ulp(mine.grads[key], theirs, maxulp=1)


def test_oracle_special_functions_agree_with_the_mp_reference():
    ref = _mp_reference()
    for nu, x in [(0, 1e-6), (0.5, 3.0), (63, 1e-6), (2047, 10.0), (2047, 3000.0), (31, 1e6)]:
        assert oracle.log_iv(nu, x) == pytest.approx(float(ref.log_iv(nu, x)), rel=2 * EPS, abs=1e-300)
        assert oracle.bessel_ratio(nu, x) == pytest.approx(float(ref.bessel_ratio(nu, x)), rel=2 * EPS)
    for d, k in [(2, 0.0), (3, 1.0), (4096, 0.0), (4096, 100.0), (33, 1e-300)]:
        assert oracle.log_vmf_normalizer(d, k) == pytest.approx(float(ref.log_vmf_normalizer(d, k)), rel=2 * EPS)


def test_oracle_input_errors_name_the_argument():
    pytest.importorskip("mpmath")
    z = np.eye(2, 3)
    with pytest.raises(ValueError, match="kappa1"):
        oracle.pcl(z, z, np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="temperature"):
        oracle.ntxent(z, z, temperature=0.0)
    with pytest.raises(ValueError, match="z1"):
        oracle.ntxent(np.zeros((2, 3)), z, temperature=1.0)
    with pytest.raises(ValueError, match="d must be"):
        oracle.log_vmf_normalizer(1, 1.0)
    with pytest.raises(ValueError, match="x must be"):
        oracle.log_iv(1.0, -1.0)
    with pytest.raises(ValueError, match="weights"):
        oracle.pcl(z, z, np.ones(2), np.ones(2), weights="median")


def test_docs_page_describes_every_case_and_key():
    page = Path(__file__).resolve().parents[1] / "docs" / "validating.md"
    if not page.is_file():
        pytest.skip("docs/validating.md is not present")
    text = page.read_text()
    for spec in vectors.CASES:
        assert f"`{spec.name}`" in text, spec.name
    keys = set().union(*({*c.inputs, *c.outputs} for c in SHIPPED.values()))
    for key in keys:
        assert f"`{key}`" in text, key
