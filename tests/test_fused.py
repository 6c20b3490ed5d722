"""CuPy's fused kernels against the array-API reference.

Three layers, so that most of it is proven without a GPU:

* the kernel source compiles with NVRTC, CuPy's own compiler, in both precisions (no
  device is needed to compile);
* the same source, built for the host (``host_kernels.py``), runs the fused path on NumPy
  arrays: :class:`probcon_ref.cupy.FusedSteps`, Python and kernels together, equals the
  reference within the declared tolerances (``probcon_ref/tools/backends.toml``);
* on a GPU, CuPy with the fused kernels equals CuPy without them (``gpu`` marker).

``PROBCON_REQUIRE_TOOLS=c++,nvrtc`` turns the skip of the first two layers (no compiler,
no NVRTC library) into a failure; CI sets it.
"""

from __future__ import annotations

import contextlib

import os
from pathlib import Path

import array_api_compat
import array_api_compat.numpy as npx
import numpy as np
import pytest

import probcon_ref as pr
from probcon_ref import _dispatch, loss, special
from probcon_ref import cupy as _fused

import host_kernels
from conftest import DECLARED, require

TOOLS_VAR = "PROBCON_REQUIRE_TOOLS"
TOL = {dt: DECLARED["cupy"]["tolerances"][dt] for dt in ("float64", "float32")}
DTYPES = {"float64": np.float64, "float32": np.float32}


def need_tool(name: str, reason: str):
    if name in {t.strip() for t in os.environ.get(TOOLS_VAR, "").split(",")}:
        pytest.fail(f"{name} is required ({TOOLS_VAR}) but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    if host_kernels.compiler() is None:
        need_tool("c++", "no C++ compiler to build the kernels for the host")
    return host_kernels.host_launcher(tmp_path_factory.mktemp("fused"))


@pytest.fixture
def fused(launch, monkeypatch):
    """Within this fixture, every namespace takes FusedSteps with the host kernels."""
    launch.launched.clear()
    monkeypatch.setattr(_dispatch, "elementwise_steps", lambda xp: _fused.FusedSteps(xp, launch))
    yield launch


@contextlib.contextmanager
def reference_steps():
    """A block in which the public functions take the array-API reference again."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_dispatch, "elementwise_steps", loss.ElementwiseSteps)
        yield


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(np.float64).tiny))


# ---------------------------------------------------------------------------------------
# Compiling with NVRTC
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("real", ["float", "double"])
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_kernel_source_compiles_with_nvrtc(real, arch):
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # cupy absent, or its NVRTC library not found
        need_tool("nvrtc", f"NVRTC is not available ({type(exc).__name__}: {exc})")
    prog = nvrtc.createProgram(_fused.kernel_source(), "fused.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"-DREAL={real}", f"--gpu-architecture={arch}"])
        except nvrtc.NVRTCError:
            pytest.fail("NVRTC rejects fused.cu:\n" + nvrtc.getProgramLog(prog))
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    text = ptx.decode() if isinstance(ptx, bytes) else ptx
    for name in _fused.KERNELS:
        assert f".entry {name}(" in text, f"kernel {name} missing from the PTX"


def test_every_kernel_of_the_source_is_declared():
    src = _fused.kernel_source()
    declared = [line.split("void ")[1].split("(")[0] for line in src.splitlines()
                if line.startswith('extern "C" __global__ void ')]
    assert tuple(declared) == _fused.KERNELS == tuple(_fused.kernel_signatures())
    assert _fused.kernel_signatures()["shifted_exp"] == ("REAL*", "const REAL*", "long long", "long long")


def test_kernel_arguments_are_checked_against_the_signature():
    a = np.zeros(4, dtype=np.float32)

    def check(*args, real="float"):
        _fused.check_arguments("shifted_exp", real, args, lambda x: isinstance(x, np.ndarray))

    check(a, a, np.int64(2), np.int64(2))
    with pytest.raises(TypeError, match=r"argument 2 \(long long\) got int32"):
        check(a, a, np.int32(2), np.int64(2))
    with pytest.raises(TypeError, match=r"argument 3 \(long long\) got int"):
        check(a, a, np.int64(2), 2)
    with pytest.raises(TypeError, match=r"argument 0 \(REAL\*\) got ndarray of float32"):
        check(a, a.astype(np.float64), np.int64(2), np.int64(2), real="double")
    with pytest.raises(TypeError, match="takes 4 arguments, got 3"):
        check(a, a, np.int64(2))
    with pytest.raises(TypeError, match=r"argument 6 \(REAL\) got float64$"):
        _fused.check_arguments("logit_gaps", "float", (a, a, np.int64(1), np.int64(4), np.int64(0), np.int64(1),
                                                       np.float64(-np.inf)), lambda x: isinstance(x, np.ndarray))


# ---------------------------------------------------------------------------------------
# Special functions: one kernel each, in Debye's range
# ---------------------------------------------------------------------------------------

KAPPAS = np.concatenate([[0.0, 1e-300, 1e-12, 1e-3], np.geomspace(0.01, 1e6, 300)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("d", [22, 62, 64, 128, 256, 1000, 4096])
def test_special_kernels_equal_the_reference(fused, dtype, d):
    kappa = KAPPAS.astype(DTYPES[dtype])
    kappa = kappa[np.isfinite(kappa)]
    ref = loss.ElementwiseSteps(npx)
    steps = _fused.FusedSteps(npx, fused)
    terms, ratio = steps.normalizer_terms(d, kappa), steps.mean_resultant_length(d, kappa)
    want_terms, want_ratio = ref.normalizer_terms(d, kappa), ref.mean_resultant_length(d, kappa)
    in_range = special.debye_plan_for(d / 2 - 1, float(np.finfo(kappa.dtype).eps)) is not None
    assert {"normalizer_terms", "bessel_ratio"} <= set(fused.launched) if in_range else not fused.launched
    assert ratio.dtype == kappa.dtype
    for got, want in zip(terms, want_terms):  # shift, then peak
        assert got.dtype == kappa.dtype
        scale = np.maximum(1.0, np.abs(want.astype(np.float64)))
        assert np.max(np.abs(got.astype(np.float64) - want) / scale) <= TOL[dtype]["log_vmf"]
    assert np.max(np.abs(ratio.astype(np.float64) - want_ratio) / want_ratio.clip(np.finfo(kappa.dtype).tiny)) \
        <= TOL[dtype]["ratio"]
    assert ratio[0] == 0  # A_d(0) = 0 exactly


# ---------------------------------------------------------------------------------------
# The softmax of a block, and the whole loss
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rows,cols,self_col,pos_col", [(5, 10, 0, 5), (5, 10, 5, 0), (3, 10, 2, 7),
                                                       (1, 2, 0, 1), (1, 2, 1, 0), (7, 300, 40, 190)])
def test_softmax_of_a_block_equals_the_reference(fused, dtype, rows, cols, self_col, pos_col):
    rng = np.random.default_rng(rows * cols)
    logits = (rng.normal(size=(rows, cols)) * 30).astype(DTYPES[dtype])
    pos = (rng.normal(size=rows) * 30).astype(DTYPES[dtype])
    pos[0] = 500.0  # the positive dominates: m = 0 and tiny losses
    ref = loss.ElementwiseSteps(npx)
    want_gaps = ref.logit_gaps(logits.copy(), pos, self_col, pos_col)
    want = ref.anchor_terms(want_gaps)
    steps = _fused.FusedSteps(npx, fused)
    gaps = steps.logit_gaps(logits, pos, self_col, pos_col)
    assert gaps is logits  # in place: no (rows x cols) temporary
    assert gaps.dtype == want_gaps.dtype and np.array_equal(gaps, want_gaps)
    got = steps.anchor_terms(gaps)
    assert got.e is logits
    for name in ("m", "e", "s", "denominator"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype
        assert rel(a, b) <= 4 * np.finfo(a.dtype).eps, name
    assert np.array_equal(got.e == 0, want.e == 0)  # the same entries are excluded
    np.testing.assert_allclose(loss.per_anchor_loss(npx, got), loss.per_anchor_loss(npx, want),
                               rtol=8 * np.finfo(logits.dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n,d,block_size", [(1, 3, None), (2, 4, 1), (17, 8, 5), (24, 64, None),
                                            (40, 256, 16), (9, 1000, 4)])
def test_fused_loss_and_gradient_equal_the_reference(fused, dtype, n, d, block_size):
    rng = np.random.default_rng(n * d)
    dt = DTYPES[dtype]
    z1 = rng.normal(size=(n, d)) * rng.lognormal(0, 2, size=(n, 1))
    z2 = z1 + 0.5 * rng.normal(size=(n, d)) * np.abs(z1).mean(axis=1, keepdims=True)
    k1, k2 = rng.lognormal(2.0, 1.5, size=(2, n))
    k1[0] = 0.0
    w = rng.uniform(-1, 2, size=2 * n)
    args = [a.astype(dt) for a in (z1, z2, k1, k2)]
    with reference_steps():
        want = pr.pcl_loss_and_grad(*args, weights=w.astype(dt), block_size=block_size)
        want_none = pr.pcl_loss(*args, reduction="none", block_size=block_size)
        want_nt = pr.ntxent_loss_and_grad(args[0], args[1], temperature=0.1, block_size=block_size)
    got = pr.pcl_loss_and_grad(*args, weights=w.astype(dt), block_size=block_size)
    assert {"logit_gaps", "shifted_exp"} <= set(fused.launched)
    got_none = pr.pcl_loss(*args, reduction="none", block_size=block_size)
    got_nt = pr.ntxent_loss_and_grad(args[0], args[1], temperature=0.1, block_size=block_size)
    tol = TOL[dtype]
    assert rel(got[0], want[0]) <= tol["loss"]
    assert rel(got_none, want_none) <= tol["loss"]
    assert rel(got_nt[0], want_nt[0]) <= tol["loss"]
    for a, b in [*zip(got[1], want[1]), *zip(got_nt[1], want_nt[1])]:
        assert a.dtype == b.dtype
        assert rel(a, b) <= tol["grad"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n,m,d,block_size", [(1, 3, 4, None), (6, 50, 64, 4), (5, 2, 1000, None)])
def test_fused_loss_with_extra_candidates_equals_the_reference(fused, dtype, n, m, d, block_size):
    """Extra candidates are columns after the batch's: the kernels see a wider block, whose
    excluded entries (the anchor and its positive) lie in the batch's columns."""
    rng = np.random.default_rng(n * m * d)
    dt = DTYPES[dtype]
    z1 = rng.normal(size=(n, d))
    z2 = z1 + 0.5 * rng.normal(size=(n, d))
    k1, k2 = rng.lognormal(2.0, 1.5, size=(2, n))
    bank, lam = rng.normal(size=(m, d)), rng.lognormal(2.0, 1.5, size=m)
    args = [a.astype(dt) for a in (z1, z2, k1, k2)]
    extra = {"extra_z": bank.astype(dt), "extra_kappa": lam.astype(dt)}
    with reference_steps():
        want = pr.pcl_loss_and_grad(*args, block_size=block_size, **extra)
        want_nt = pr.ntxent_loss_and_grad(args[0], args[1], temperature=0.1, block_size=block_size,
                                          extra_z=extra["extra_z"], temperature_grad=True)
    got = pr.pcl_loss_and_grad(*args, block_size=block_size, **extra)
    assert {"logit_gaps", "shifted_exp"} <= set(fused.launched)
    got_nt = pr.ntxent_loss_and_grad(args[0], args[1], temperature=0.1, block_size=block_size,
                                     extra_z=extra["extra_z"], temperature_grad=True)
    tol = TOL[dtype]
    assert rel(got[0], want[0]) <= tol["loss"] and rel(got_nt[0], want_nt[0]) <= tol["loss"]
    for a, b in [*zip(got[1], want[1]), *zip(got_nt[1], want_nt[1])]:
        assert a.dtype == b.dtype
        assert rel(a, b) <= tol["grad"]


# ---------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------


def test_fused_steps_are_chosen_for_cupy_only():
    pytest.importorskip("cupy")
    import array_api_compat.cupy as cpx

    assert _fused.steps_for(npx) is None
    assert type(_dispatch.elementwise_steps(npx)) is loss.ElementwiseSteps
    assert isinstance(_fused.steps_for(cpx), _fused.FusedSteps)
    with pr.use_fused_kernels(False):
        assert _fused.steps_for(cpx) is None
        with pr.use_fused_kernels(True):
            assert isinstance(_fused.steps_for(cpx), _fused.FusedSteps)
        assert type(_dispatch.elementwise_steps(cpx)) is loss.ElementwiseSteps
    assert isinstance(_fused.steps_for(cpx), _fused.FusedSteps)


def test_use_fused_kernels_takes_a_bool():
    with pytest.raises(TypeError, match="enabled"):
        with pr.use_fused_kernels("no"):
            pass


# ---------------------------------------------------------------------------------------
# On the GPU: CuPy with and without the fused kernels
# ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n,d,block_size", [(1, 3, None), (17, 8, 5), (64, 64, None), (256, 256, 100),
                                            (1024, 128, None), (40, 4096, 16)])
def test_cupy_fused_equals_cupy_reference(dtype, n, d, block_size, within):
    cupy = require("cupy")
    xp = array_api_compat.array_namespace(cupy.empty(0))
    assert isinstance(_fused.steps_for(xp), _fused.FusedSteps)
    rng = np.random.default_rng(n + d)
    z1 = rng.normal(size=(n, d))
    z2 = z1 + 0.5 * rng.normal(size=(n, d))
    k1, k2 = rng.lognormal(2.0, 1.5, size=(2, n))
    k1[0] = 0.0
    args = [cupy.asarray(a, dtype=dtype) for a in (z1, z2, k1, k2)]
    got = pr.pcl_loss_and_grad(*args, block_size=block_size)
    got_nt = pr.ntxent_loss_and_grad(args[0], args[1], block_size=block_size)
    with pr.use_fused_kernels(False):
        want = pr.pcl_loss_and_grad(*args, block_size=block_size)
        want_nt = pr.ntxent_loss_and_grad(args[0], args[1], block_size=block_size)
    host = cupy.asnumpy
    tol = TOL[dtype]
    within("loss (fused vs reference)", rel(host(got[0]), host(want[0])), tol["loss"])
    within("loss (fused vs reference)", rel(host(got_nt[0]), host(want_nt[0])), tol["loss"])
    for a, b in [*zip(got[1], want[1]), *zip(got_nt[1], want_nt[1])]:
        within("grad (fused vs reference)", rel(host(a), host(b)), tol["grad"])
    kappa = cupy.asarray(KAPPAS, dtype=dtype)
    fused, ref = _fused.steps_for(xp), loss.ElementwiseSteps(xp)
    want_ratio = host(ref.mean_resultant_length(d, kappa)).astype(np.float64)
    for got, want in zip(fused.normalizer_terms(d, kappa), ref.normalizer_terms(d, kappa)):
        want = host(want).astype(np.float64)
        err = np.max(np.abs(host(got) - want) / np.maximum(1, np.abs(want)))
        within("log_vmf shift and peak (fused vs reference)", err, tol["log_vmf"])
    ratio = host(fused.mean_resultant_length(d, kappa)).astype(np.float64)
    err_ratio = np.max(np.abs(ratio - want_ratio) / np.maximum(want_ratio, np.finfo(dtype).tiny))
    within("ratio (fused vs reference)", err_ratio, tol["ratio"])


def test_cupy_launcher_compiles_once_per_precision_and_refuses_strided_arrays():
    """CuPy's launcher with a stand-in for CuPy (NumPy arrays, a recording RawModule)."""
    compiled, launches = [], []

    class RawModule:
        def __init__(self, code, options):
            compiled.append((code, options))

        def get_function(self, name):
            return lambda grid, block, args: launches.append((name, grid, block, len(args)))

    class FakeCupy:
        ndarray = np.ndarray

    FakeCupy.RawModule = RawModule
    launch = _fused.CupyLauncher(FakeCupy)
    a = np.zeros((2, 4), dtype=np.float32)
    for _ in range(3):
        launch("shifted_exp", "float", (1, 2), (256,), (a, a[:, 0].copy(), np.int64(2), np.int64(4)))
    launch("shifted_exp", "double", (1, 2), (256,), (a.astype(np.float64), np.zeros(2), np.int64(2), np.int64(4)))
    assert [opts for _, opts in compiled] == [("-DREAL=float",), ("-DREAL=double",)]
    assert compiled[0][0] == _fused.kernel_source()
    assert launches == [("shifted_exp", (1, 2), (256,), 4)] * 4
    with pytest.raises(ValueError, match="C-contiguous"):
        launch("shifted_exp", "float", (1, 2), (256,), (a[:, ::2], a[:, 0].copy(), np.int64(2), np.int64(2)))


class _Counted(np.ndarray):
    """A NumPy array that counts the elementwise operations (ufunc calls) made on it."""

    calls = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kw):
        _Counted.calls += 1
        plain = [i.view(np.ndarray) if isinstance(i, _Counted) else i for i in inputs]
        out = getattr(ufunc, method)(*plain, **kw)
        return out.view(_Counted) if isinstance(out, np.ndarray) else out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_documented_launch_counts_of_the_reference_special_functions(dtype):
    """The docs say how many elementwise operations the two fused special-function kernels
    replace at d = 256; count them in the reference."""
    kappa = np.linspace(0.0, 100.0, 64).astype(dtype).view(_Counted)
    ref = loss.ElementwiseSteps(npx)
    _Counted.calls = 0
    ref.normalizer_terms(256, kappa)
    ref.mean_resultant_length(256, kappa)
    count = _Counted.calls
    page = (Path(__file__).resolve().parents[1] / "docs" / "backends.md").read_text()
    said = {"float32": "launches at d = 256 in float32", "float64": "in float64"}[dtype]
    text = " ".join(page.split())
    assert f"{count} {said}" in text or f"({count} {said})" in text, (count, said)
