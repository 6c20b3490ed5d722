"""Golden vectors: the shipped set, the reference checked against it, and how it is made.

The set ships in ``probcon_ref/testing/golden``. Its outputs were computed at 50 digits by
:mod:`probcon_ref.testing.oracle`; here the whole set is rebuilt from its seeds and recomputed, and
must agree bit for bit, and the oracle itself is cross-checked against the independent
mpmath oracle of ``tests/reference/mp_reference.py`` when that file is present.

The bit-for-bit comparisons hold on every machine, by construction: the inputs are made
with integer arithmetic and correctly rounded conversions only (no libm or SIMD function,
no product a compiler could fuse), and every output is a 50-digit mpmath value rounded
once to float64. Nothing here compares a float computed by NumPy or libm exactly.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from probcon_ref import ntxent_loss, ntxent_loss_and_grad, pcl_loss, pcl_loss_and_grad
from probcon_ref.testing import oracle, regimes, vectors
from probcon_ref.testing.tolerances import TOLERANCES, bound
from probcon_ref.tools.cli import main
from probcon_ref.special import bessel_ratio, log_vmf_normalizer

EPS = np.finfo(np.float64).eps
SHIPPED = vectors.load()
MP_REFERENCE = Path(__file__).resolve().parent / "reference" / "mp_reference.py"


def test_shipped_set_is_complete_and_versioned():
    manifest = json.loads((vectors.shipped_directory() / "manifest.json").read_text())
    assert manifest["format"] == vectors.FORMAT and manifest["version"] == vectors.VERSION == 1
    assert manifest["digits"] == 50
    assert [m["name"] for m in manifest["cases"]] == [c.name for c in vectors.CASES] == list(SHIPPED)
    covered = set().union(*(c.regimes for c in SHIPPED.values()))
    assert regimes.required("pcl") | regimes.required("ntxent") <= covered
    assert covered <= {r.key for r in regimes.REGIMES}
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
            # exact on any machine: JSON holds repr(float), which Python reads back correctly rounded
            np.testing.assert_array_equal(np.asarray(doc[group][key], dtype=np.float64), value, err_msg=key)
    n = case.n
    assert case.outputs["losses"].shape == (2 * n,)
    assert case.outputs["grad_z1"].shape == case.inputs["z1"].shape
    assert np.all(np.isfinite(np.concatenate([np.ravel(v) for v in case.outputs.values()])))


def test_shipped_inputs_are_rebuilt_from_their_seeds():
    # exact on any machine: the builders use integer arithmetic and correctly rounded
    # conversions only (see probcon_ref/testing/vectors/inputs.py)
    for name, case in SHIPPED.items():
        rebuilt = vectors.case_inputs(name)
        assert set(rebuilt) == set(case.inputs), name
        for key, value in case.inputs.items():
            assert rebuilt[key].dtype == np.float64
            np.testing.assert_array_equal(rebuilt[key], value, err_msg=f"{name}: {key}")


def test_stream_is_splitmix64():
    """The first draws of the reference SplitMix64 (Vigna's C code) from seed 1234567 and 0."""
    s = vectors.Stream(1234567)
    assert [s.next_u64() for _ in range(5)] == [6457827717110365317, 3203168211198807973, 9817491932198370423,
                                                4593380528125082431, 16408922859458223821]
    assert vectors.Stream(0).next_u64() == 16294208416658607535
    x = vectors.Stream(7).integers(-3, 4, (2, 1000))
    assert x.dtype == np.int64 and x.shape == (2, 1000) and set(np.unique(x)) == set(range(-3, 5))


def _simd_features():
    """The NumPy SIMD targets this machine dispatches to (empty where none is known)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    return [f for f in getattr(umath, "__cpu_dispatch__", []) if umath.__cpu_features__.get(f)]


def test_inputs_and_outputs_do_not_depend_on_numpy_simd_kernels():
    """What a CPU without this one's SIMD extensions computes: the same bits.

    NumPy picks its transcendental kernels (exp, log, power) by CPU feature, and their last
    bit differs between them; np.logspace(-6, -4, 3)[1] gave a different float64 with and
    without AVX-512, and a golden input built that way could not be rebuilt elsewhere. A child
    process with every dispatched SIMD target turned off must rebuild every case's inputs,
    and recompute two cases, to the shipped bits.
    """
    features = _simd_features()
    if not features:
        pytest.skip("NumPy dispatches no SIMD target on this machine: nothing to turn off")
    names = ["pcl-order63-tiny-kappa", "pcl-mixed-norms", "pcl-extra-candidates"]
    code = (
        "import sys, numpy as np\n"
        "from probcon_ref.testing import vectors\n"
        "shipped = vectors.load()\n"
        "bad = []\n"
        "for name, case in shipped.items():\n"
        "    x = vectors.case_inputs(name)\n"
        "    bad += [f'{name}: {k}' for k in case.inputs if x[k].tobytes() != case.inputs[k].tobytes()]\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        out = vectors.compute(name)\n"
        "    except ImportError:\n"
        "        break\n"
        "    bad += [f'{name}: {k}' for k in out if out[k].tobytes() != shipped[name].outputs[k].tobytes()]\n"
        "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
        f"on = [k for k in {features!r} if f.get(k)]\n"
        "print('still on:', on, 'differ:', bad)\n"
        "sys.exit(1 if bad or on else 0)\n"
    )
    if np.__version__.startswith("1."):
        code = code.replace("numpy._core._multiarray_umath", "numpy.core._multiarray_umath")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(features)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", list(SHIPPED))
def test_reference_reproduces_the_golden_vectors(name):
    """The contract, sections 5 and 6: every loss to the loss bound (relative), gradient blocks to the
    gradient bound of their max-norm, log C_d and A_d to theirs.

    (Other implementations are held to ``max(loss bound, ROUNDING eps * logit scale)`` by
    ``validate``; the reference itself keeps its logits free of the large terms of ``log C_d``
    and meets the loss bound.)"""
    case = SHIPPED[name]
    x, want = case.inputs, case.outputs
    bank = {k: x[k] for k in ("extra_z", "extra_kappa") if k in x}  # the extra candidates, if any
    if case.loss == "pcl":
        args = (x["z1"], x["z2"], x["kappa1"], x["kappa2"])
        loss, grads = pcl_loss_and_grad(*args, **bank)
        losses = pcl_loss(*args, reduction="none", **bank)
        total = pcl_loss(*args, reduction="sum", **bank)
        got = dict(zip(("grad_z1", "grad_z2", "grad_kappa1", "grad_kappa2"), grads))
        d = case.d
        kappa = np.concatenate([x["kappa1"], x["kappa2"]])
        log_c = log_vmf_normalizer(d, kappa)
        np.testing.assert_array_less(np.abs(log_c - want["log_vmf_normalizer"]),
                                     bound("log_vmf", "float64") * np.maximum(1, np.abs(want["log_vmf_normalizer"]))
                                     + 1e-300)
        length = bessel_ratio(d / 2 - 1, kappa)
        np.testing.assert_array_less(np.abs(length - want["mean_resultant_length"]),
                                     bound("ratio", "float64") * want["mean_resultant_length"] + 1e-300)
    else:
        tau = case.temperature
        loss, grads = ntxent_loss_and_grad(x["z1"], x["z2"], temperature=tau, **bank)
        losses = ntxent_loss(x["z1"], x["z2"], temperature=tau, reduction="none", **bank)
        total = ntxent_loss(x["z1"], x["z2"], temperature=tau, reduction="sum", **bank)
        got = dict(zip(("grad_z1", "grad_z2"), grads))
    rtol, gtol = TOLERANCES["float64"]
    tiny = 4 * np.finfo(np.float64).smallest_subnormal
    for value, ref in ((float(loss), want["loss"]), (float(total), want["loss_sum"])):
        assert abs(value - ref) <= rtol * abs(ref) + tiny, (value, float(ref))
    np.testing.assert_array_less(np.abs(losses - want["losses"]), rtol * np.abs(want["losses"]) + tiny)
    for key, value in got.items():
        scale = float(np.max(np.abs(want[key])))
        assert np.max(np.abs(value - want[key])) <= gtol * scale + tiny, key


def test_golden_special_cases_hold_exactly():
    assert np.all(SHIPPED["pcl-n1"].outputs["losses"] == 0)
    assert np.all(SHIPPED["ntxent-n1"].outputs["grad_z1"] == 0)
    under = SHIPPED["pcl-underflow"].outputs["losses"]
    assert np.any(under == 0) and np.any((under > 0) & (under < np.finfo(np.float64).tiny))
    assert SHIPPED["pcl-confident"].outputs["losses"].max() < 1e-40
    d = SHIPPED["pcl-kappa-zero"].d
    terms = (math.lgamma(d / 2), math.log(2), d / 2 * math.log(math.pi))
    lim = terms[0] - terms[1] - terms[2]
    # libm's lgamma and log may be off by an ulp or two of each term, on some machine or other
    got = SHIPPED["pcl-kappa-zero"].outputs["log_vmf_normalizer"]
    # kappa = 0 at views 0, 1 and 3: the same 50-digit limit, rounded once, three times
    assert got[0] == got[1] == got[3]
    assert abs(got[0] - lim) <= 4 * EPS * sum(map(abs, terms))


def test_golden_cases_with_extra_candidates():
    """The cases with a bank: each holds its extra candidates as the manifest says, and the bank
    is what makes their losses (at N = 1, the only negatives; in the confident case, a share
    from nearly all of a loss down to its last digits)."""
    with_bank = {name: case for name, case in SHIPPED.items() if case.m}
    assert set(with_bank) == {"pcl-extra-candidates", "pcl-extra-confident", "pcl-extra-n1",
                              "ntxent-extra-candidates"}
    assert all("extra-candidates" in case.regimes for case in with_bank.values())
    assert not any("extra-candidates" in case.regimes for case in SHIPPED.values() if not case.m)
    for case in with_bank.values():
        assert case.inputs["extra_z"].shape == (case.m, case.d)
        assert ("extra_kappa" in case.inputs) == (case.loss == "pcl")
    # N = 1: 0 without a bank, exactly; not 0 with one
    assert np.all(SHIPPED["pcl-extra-n1"].outputs["losses"] > 0)
    assert np.all(SHIPPED["pcl-extra-n1"].outputs["grad_z1"] != 0)
    assert np.any(SHIPPED["pcl-extra-candidates"].inputs["extra_kappa"] == 0)
    x = SHIPPED["pcl-extra-confident"].inputs
    losses = SHIPPED["pcl-extra-confident"].outputs["losses"]
    share = 1 - pcl_loss(x["z1"], x["z2"], x["kappa1"], x["kappa2"], reduction="none") / losses
    assert losses.max() < 1e-40
    assert np.sum(share > 0.99) == 2 and np.sum((share > 1e-4) & (share < 1e-2)) == 2
    assert np.sum((share > 1e-14) & (share < TOLERANCES["float64"][0])) == 2  # the last digits


def test_cli_writes_the_shipped_set(tmp_path, capsys):
    assert main(["vectors", str(tmp_path / "out")]) == 0
    assert f"wrote {len(vectors.CASES)} golden cases" in capsys.readouterr().out
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
    """``probcon-ref vectors --recompute`` rebuilds the shipped set: inputs from the seeds,
    outputs at 50 digits, every file's numbers and every JSON file's text identical.

    Exact on any machine: the inputs are built without floating-point functions, and mpmath
    (integer arithmetic inside) rounds each 50-digit output once; two evaluations could only
    disagree on a value within 1e-50 of a tie between two float64.
    """
    pytest.importorskip("mpmath")
    vectors.write(tmp_path, recompute=True)
    again = vectors.load(tmp_path)
    assert list(again) == list(SHIPPED)
    shipped = vectors.shipped_directory()
    for name, case in SHIPPED.items():
        for group in ("inputs", "outputs"):
            mine, theirs = getattr(again[name], group), getattr(case, group)
            assert set(mine) == set(theirs), name
            for key, value in theirs.items():
                assert mine[key].tobytes() == value.tobytes(), f"{name}: {key}"
        assert (tmp_path / f"{name}.json").read_text() == (shipped / f"{name}.json").read_text(), name
    assert (tmp_path / "manifest.json").read_text() == (shipped / "manifest.json").read_text()


def test_a_golden_case_names_only_listed_regimes():
    build = vectors.CASES[0].build
    with pytest.raises(ValueError, match="unknown regime"):
        vectors.CaseSpec("pcl-new", "pcl", "a case", ("random", "no-such-regime"), build, 99)


def test_oracle_rounds_subnormal_results_once():
    """mpmath's float() rounds to 53 bits, then again onto the subnormal grid: a value just
    below a midpoint of that grid would round up. The oracle rounds once."""
    mp = pytest.importorskip("mpmath")
    from probcon_ref.testing.oracle import _round

    with mp.workprec(400):
        k = 12345  # odd: a tie between k and k + 1 goes to k + 1
        x = mp.mpf(2 * k + 1) * mp.mpf(2) ** -1075 - mp.mpf(2) ** -1200
        exact = Fraction(2 * k + 1, 2**1075) - Fraction(1, 2**1200)
        assert float(x) == math.ldexp(k + 1, -1074)  # the double rounding this guards against
        assert _round(x) == float(exact) == math.ldexp(k, -1074)  # Fraction to float rounds once
        values = [mp.mpf(2 * k + 1) * mp.mpf(2) ** -1075, mp.mpf(2) ** -1075, mp.mpf(3) * mp.mpf(2) ** -1076,
                  mp.mpf(2) ** -1022 * (1 - mp.mpf(2) ** -60), mp.mpf(2) ** -1100, mp.mpf(1) / 3, mp.mpf(10) ** -310,
                  -mp.mpf(10) ** -320, mp.mpf(0)]
        for v in values:
            sign, man, exp, _ = v._mpf_
            want = float((-1) ** sign * Fraction(int(man)) * Fraction(2) ** int(exp))
            assert _round(v) == want and math.copysign(1, _round(v)) == math.copysign(1, want), v


def _mp_reference():
    if not MP_REFERENCE.is_file():
        pytest.skip("tests/reference/mp_reference.py is not present")
    pytest.importorskip("mpmath")
    spec = importlib.util.spec_from_file_location("_mp_reference_for_vectors", MP_REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["pcl-d3", "pcl-kappa-zero", "pcl-antipodal", "ntxent-basic",
                                  "pcl-extra-candidates", "ntxent-extra-candidates"])
def test_oracle_agrees_with_the_independent_mp_reference(name):
    ref = _mp_reference()
    x = SHIPPED[name].inputs
    bank = {k: x[k] for k in ("extra_z", "extra_kappa") if k in x}
    if SHIPPED[name].loss == "pcl":
        r = ref.pcl_loss_and_grad(x["z1"], x["z2"], x["kappa1"], x["kappa2"], "mean", **bank)
        mine = oracle.pcl(x["z1"], x["z2"], x["kappa1"], x["kappa2"], **bank)
        keys = ("z1", "z2", "kappa1", "kappa2")
    else:
        r = ref.ntxent_loss_and_grad(x["z1"], x["z2"], float(x["temperature"]), "mean", **bank)
        mine = oracle.ntxent(x["z1"], x["z2"], temperature=float(x["temperature"]), **bank)
        keys = ("z1", "z2")
    # Both are mpmath evaluations (no libm or NumPy arithmetic), so this holds on any machine;
    # one ulp allows the two independent 50-digit values to straddle a float64 tie.
    np.testing.assert_array_max_ulp(mine.losses, r[0], maxulp=1)
    np.testing.assert_array_max_ulp(np.float64(mine.loss), np.float64(r[1]), maxulp=1)
    for key, theirs in zip(keys, r[2:]):
        np.testing.assert_array_max_ulp(mine.grads[key], theirs, maxulp=1)


def test_oracle_special_functions_agree_with_the_mp_reference():
    ref = _mp_reference()
    # mpmath on both sides (machine independent); 2 eps covers a tie and mp_reference's own rounding
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


# ---------------------------------------------------------------------------------------
# The loader checks every file against the manifest (corrupted copies of the shipped set)
# ---------------------------------------------------------------------------------------


@pytest.fixture
def golden_copy(tmp_path):
    """A copy of the shipped set, and helpers to corrupt it."""
    root = tmp_path / "golden"
    shutil.copytree(str(vectors.shipped_directory()), root)
    return root


def _arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _rewrite_npz(path, **changes):
    arrays = {**_arrays(path), **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def _edit_manifest(root, edit):
    path = root / "manifest.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _refused(root, *fragments):
    with pytest.raises(vectors.GoldenVectorError) as info:
        vectors.load(root)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    for fragment in fragments:
        assert fragment in message, message
    return info.value


def test_loader_accepts_the_intact_copy(golden_copy):
    loaded = vectors.load(golden_copy)
    assert list(loaded) == list(SHIPPED)
    case = loaded["pcl-basic"]
    assert all(v.dtype == np.float64 for v in {**case.inputs, **case.outputs}.values())


def test_loader_refuses_a_shape_that_disagrees_with_the_manifest(golden_copy):
    path = golden_copy / "pcl-basic.npz"
    _rewrite_npz(path, z1=_arrays(path)["z1"][:3])
    err = _refused(golden_copy, str(path), "z1 has shape (3, 8)", "(4, 8)")
    assert err.path == str(path)
    # the other way round: the manifest's d no longer matches the arrays
    shutil.copy(vectors.shipped_directory() / "pcl-basic.npz", path)
    _edit_manifest(golden_copy, lambda doc: doc["cases"][0].update(d=9))
    _refused(golden_copy, str(path), "z1 has shape (4, 8)", "d=9")


def test_loader_refuses_a_missing_output(golden_copy):
    path = golden_copy / "pcl-huge-kappa.npz"
    _rewrite_npz(path, grad_kappa2=None)
    _refused(golden_copy, str(path), "missing array grad_kappa2")


def test_loader_refuses_a_missing_input(golden_copy):
    path = golden_copy / "ntxent-basic.npz"
    _rewrite_npz(path, temperature=None)
    _refused(golden_copy, str(path), "missing array temperature")


def test_loader_refuses_an_unexpected_array(golden_copy):
    path = golden_copy / "ntxent-basic.npz"  # a PCL output in an NT-Xent case
    _rewrite_npz(path, grad_kappa1=np.zeros(4))
    _refused(golden_copy, str(path), "unexpected arrays grad_kappa1")


def test_loader_refuses_extra_candidates_the_manifest_does_not_declare(golden_copy):
    path = golden_copy / "pcl-basic.npz"  # a case without extra candidates, given some
    _rewrite_npz(path, extra_z=np.ones((2, 8)), extra_kappa=np.ones(2))
    _refused(golden_copy, str(path), "unexpected arrays extra_kappa, extra_z", "no m")


def test_loader_checks_the_extra_candidates_against_the_manifest(golden_copy):
    index = [c.name for c in vectors.CASES].index("pcl-extra-candidates")
    path = golden_copy / "pcl-extra-candidates.npz"
    _rewrite_npz(path, extra_kappa=None)
    _refused(golden_copy, str(path), "missing array extra_kappa", "with m=8 extra candidates")
    shutil.copy(vectors.shipped_directory() / "pcl-extra-candidates.npz", path)
    _rewrite_npz(path, extra_z=_arrays(path)["extra_z"][:5])
    _refused(golden_copy, str(path), "extra_z has shape (5, 8)", "m=8", "(8, 8)")
    shutil.copy(vectors.shipped_directory() / "pcl-extra-candidates.npz", path)
    _rewrite_npz(path, extra_kappa=-_arrays(path)["extra_kappa"])
    _refused(golden_copy, str(path), "extra_kappa holds negative values")
    shutil.copy(vectors.shipped_directory() / "pcl-extra-candidates.npz", path)
    _edit_manifest(golden_copy, lambda doc: doc["cases"][index].update(m=0))
    _refused(golden_copy, str(golden_copy / "manifest.json"), "m (the extra candidates' count) must be")


def test_loader_reads_extra_candidates_from_json(golden_copy):
    for name in ("pcl-extra-n1", "ntxent-extra-candidates"):
        (golden_copy / f"{name}.npz").unlink()
    loaded = vectors.load(golden_copy)
    for name in ("pcl-extra-n1", "ntxent-extra-candidates"):
        for key, value in SHIPPED[name].inputs.items():
            # exact: the JSON numbers are the shortest repr of the same float64
            assert loaded[name].inputs[key].tobytes() == value.tobytes(), (name, key)
    path = golden_copy / "pcl-extra-n1.json"
    doc = json.loads(path.read_text())
    doc["m"] = 4
    path.write_text(json.dumps(doc))
    _refused(golden_copy, str(path), "m is 4, the manifest says 3")


def test_loader_refuses_a_nan_loss(golden_copy):
    path = golden_copy / "pcl-d3.npz"
    _rewrite_npz(path, loss=np.float64("nan"))
    _refused(golden_copy, str(path), "loss holds 1 non-finite value")


@pytest.mark.parametrize("dtype", [np.float32, np.complex128, np.int64, np.dtype(">f8")],
                         ids=["float32", "complex128", "int64", "big-endian-float64"])
def test_loader_refuses_outputs_not_stored_as_float64(golden_copy, dtype):
    path = golden_copy / "pcl-identical.npz"
    _rewrite_npz(path, grad_z1=_arrays(path)["grad_z1"].astype(dtype))
    _refused(golden_copy, str(path), f"grad_z1 is stored as {np.dtype(dtype)}", "float64")


def test_loader_refuses_duplicate_case_names(golden_copy):
    _edit_manifest(golden_copy, lambda doc: doc["cases"].append(dict(doc["cases"][0])))
    _refused(golden_copy, str(golden_copy / "manifest.json"), "duplicate case name 'pcl-basic'")


@pytest.mark.parametrize("where", ["../outside.npz", "sub/../../outside.npz", "ABSOLUTE", "C:\\golden\\x.npz",
                                   "..\\outside.npz"])
def test_loader_refuses_paths_outside_the_directory(golden_copy, where):
    outside = golden_copy.parent / "outside.npz"
    shutil.copy(golden_copy / "pcl-basic.npz", outside)  # a valid file, so only the path is wrong
    rel = str(outside) if where == "ABSOLUTE" else where
    _edit_manifest(golden_copy, lambda doc: doc["cases"][0].update(npz=rel))
    _refused(golden_copy, str(golden_copy / "manifest.json"), "case 0 ('pcl-basic')", repr(rel),
             "not a path inside the directory")


def test_loader_refuses_a_link_that_leads_outside(golden_copy):
    outside = golden_copy.parent / "outside.npz"
    shutil.copy(golden_copy / "pcl-basic.npz", outside)
    (golden_copy / "pcl-basic.npz").unlink()
    try:
        (golden_copy / "pcl-basic.npz").symlink_to(outside)
    except OSError:
        pytest.skip("cannot make a symbolic link here")
    _refused(golden_copy, str(golden_copy / "manifest.json"), "leads outside the directory")


def test_loader_refuses_an_unknown_loss(golden_copy):
    _edit_manifest(golden_copy, lambda doc: doc["cases"][3].update(loss="infonce"))
    _refused(golden_copy, str(golden_copy / "manifest.json"), "unknown loss 'infonce'")


@pytest.mark.parametrize("keep", [0, 100, 0.5], ids=["empty", "first-100-bytes", "half"])
def test_loader_names_a_truncated_or_empty_npz(golden_copy, keep):
    path = golden_copy / "pcl-large-d.npz"
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    _refused(golden_copy, str(path), "cannot be read as a NumPy .npz archive")


def test_loader_names_a_truncated_manifest(golden_copy):
    path = golden_copy / "manifest.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    _refused(golden_copy, str(path), "is not valid JSON")


def test_loader_names_a_missing_manifest(tmp_path):
    _refused(tmp_path, str(tmp_path / "manifest.json"), "cannot be read")


def test_loader_names_a_missing_case_file_and_unknown_names(golden_copy):
    with pytest.raises(vectors.GoldenVectorError, match="no case named 'no-such-case'"):
        vectors.load(golden_copy, names=["pcl-basic", "no-such-case"])
    (golden_copy / "pcl-n1.npz").unlink()
    (golden_copy / "pcl-n1.json").unlink()
    _refused(golden_copy, str(golden_copy / "pcl-n1.npz"), "is missing")


def test_loader_reads_json_where_there_is_no_npz(golden_copy, tmp_path):
    for path in golden_copy.glob("*.npz"):
        path.unlink()
    loaded = vectors.load(golden_copy)
    assert list(loaded) == list(SHIPPED)
    for name, case in loaded.items():
        for key, value in {**SHIPPED[name].inputs, **SHIPPED[name].outputs}.items():
            # exact: the JSON numbers are the shortest repr of the same float64
            assert {**case.inputs, **case.outputs}[key].tobytes() == value.tobytes(), (name, key)
    # and a set written with --format json loads
    assert main(["vectors", str(tmp_path / "json"), "--format", "json"]) == 0
    assert list(vectors.load(tmp_path / "json")) == list(SHIPPED)
    # the JSON file is checked as strictly as the .npz
    path = golden_copy / "ntxent-d2.json"
    doc = json.loads(path.read_text())
    doc["outputs"]["loss"] = float("nan")
    path.write_text(json.dumps(doc))
    _refused(golden_copy, str(path), "loss holds 1 non-finite value")
    doc["outputs"]["loss"] = 1.0
    doc["n"] = 5
    path.write_text(json.dumps(doc))
    _refused(golden_copy, str(path), "n is 5, the manifest says 4")
