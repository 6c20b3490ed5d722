"""Cross-backend consistency: every public function on every declared backend x device x dtype.

Each result is compared with the NumPy float64 result for the same inputs, within the
tolerances declared in ``probcon_ref/tools/backends.toml``, and every output is checked to
live in the input's namespace, on its device, in the expected dtype. Half precisions are
compared with float64 on the half-rounded inputs. Mixed namespaces and devices must fail
clearly (the contract, section 7); SciPy is never reached from a non-NumPy array.
"""

from __future__ import annotations

import importlib
import sys

import array_api_compat
import numpy as np
import pytest

import probcon_ref as pr
from probcon_ref import special
from probcon_ref.tools import backends as _backends
from probcon_ref.tools.declarations import HALF_DTYPES

from conftest import DECLARED, case_params, declared_cases, require, skip_or_fail

# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


def loss_inputs(seed: int = 0, n: int = 12, d: int = 16, *, wide: bool = True):
    """A batch with varied raw norms, agreeing views, a wide range of kappa and one kappa = 0,
    and a bank of 7 extra candidates (one a near duplicate of an anchor, one with kappa = 0).

    ``wide=False`` keeps magnitudes inside the half-precision range.
    """
    rng = np.random.default_rng(seed)
    spread = 2.0 if wide else 0.7
    z1 = rng.normal(size=(n, d)) * rng.lognormal(0.0, spread, size=(n, 1))
    z2 = z1 + 0.5 * rng.normal(size=(n, d)) * np.abs(z1).mean(axis=1, keepdims=True)
    k1 = rng.lognormal(2.0 if wide else 1.0, 1.5 if wide else 0.8, size=n)
    k2 = rng.lognormal(2.0 if wide else 1.0, 1.5 if wide else 0.8, size=n)
    k1[0] = 0.0
    w = rng.uniform(-1.0, 2.0, size=2 * n)
    extra_z = rng.normal(size=(7, d)) * rng.lognormal(0.0, spread, size=(7, 1))
    extra_z[0] = 2.0 * z1[1] + 0.1 * rng.normal(size=d) * np.abs(z1[1]).mean()
    extra_kappa = rng.lognormal(2.0 if wide else 1.0, 1.5 if wide else 0.8, size=7)
    extra_kappa[-1] = 0.0
    return {"z1": z1, "z2": z2, "kappa1": k1, "kappa2": k2, "weights": w, "extra_z": extra_z,
            "extra_kappa": extra_kappa}


def _extra(a, extra: bool, pcl: bool = True) -> dict:
    """The bank of extra candidates as keyword arguments (none unless ``extra``)."""
    if not extra:
        return {}
    return {"extra_z": a["extra_z"], "extra_kappa": a["extra_kappa"]} if pcl else {"extra_z": a["extra_z"]}


def _pcl_loss(reduction, block_size=None, extra=False):
    def run(a):
        loss = pr.pcl_loss(a["z1"], a["z2"], a["kappa1"], a["kappa2"], reduction=reduction, block_size=block_size,
                           **_extra(a, extra))
        return [("loss", loss, "z1")]
    return run


def _pcl_grad(reduction=None, block_size=None, extra=False):
    def run(a):
        kw = {"weights": a["weights"]} if reduction is None else {"reduction": reduction}
        loss, g = pr.pcl_loss_and_grad(a["z1"], a["z2"], a["kappa1"], a["kappa2"], block_size=block_size, **kw,
                                       **_extra(a, extra))
        return [("loss", loss, "z1"), ("grad", g.z1, "z1"), ("grad", g.z2, "z2"),
                ("grad", g.kappa1, "kappa1"), ("grad", g.kappa2, "kappa2")]
    return run


def _ntxent_loss(reduction, block_size=None, extra=False):
    def run(a):
        loss = pr.ntxent_loss(a["z1"], a["z2"], temperature=0.2, reduction=reduction, block_size=block_size,
                              **_extra(a, extra, pcl=False))
        return [("loss", loss, "z1")]
    return run


def _ntxent_grad(reduction=None, block_size=None, extra=False, temperature_grad=False):
    def run(a):
        kw = {"weights": a["weights"]} if reduction is None else {"reduction": reduction}
        loss, g = pr.ntxent_loss_and_grad(a["z1"], a["z2"], temperature=0.2, block_size=block_size, **kw,
                                          **_extra(a, extra, pcl=False), temperature_grad=temperature_grad)
        tau = [("grad", g.temperature, "z1")] if temperature_grad else []  # 0-d, in the loss's dtype
        return [("loss", loss, "z1"), ("grad", g.z1, "z1"), ("grad", g.z2, "z2"), *tau]
    return run


LOSS_FUNCTIONS = {
    "pcl_loss-mean": _pcl_loss("mean"),
    "pcl_loss-sum": _pcl_loss("sum"),
    "pcl_loss-none": _pcl_loss("none"),
    "pcl_loss_and_grad-mean": _pcl_grad("mean"),
    "pcl_loss_and_grad-sum": _pcl_grad("sum"),
    "pcl_loss_and_grad-weights": _pcl_grad(None),
    "ntxent_loss-mean": _ntxent_loss("mean"),
    "ntxent_loss-sum": _ntxent_loss("sum"),
    "ntxent_loss-none": _ntxent_loss("none"),
    "ntxent_loss_and_grad-mean": _ntxent_grad("mean"),
    "ntxent_loss_and_grad-sum": _ntxent_grad("sum"),
    "ntxent_loss_and_grad-weights": _ntxent_grad(None),
    # the same functions in blocks of anchors (2N = 24 rows in blocks of 5)
    "pcl_loss-none-block5": _pcl_loss("none", 5),
    "pcl_loss_and_grad-weights-block5": _pcl_grad(None, 5),
    "ntxent_loss-sum-block5": _ntxent_loss("sum", 5),
    "ntxent_loss_and_grad-mean-block5": _ntxent_grad("mean", 5),
    # with the bank of extra candidates, and with the temperature derivative
    "pcl_loss-none-extra": _pcl_loss("none", extra=True),
    "pcl_loss_and_grad-weights-extra": _pcl_grad(None, extra=True),
    "pcl_loss_and_grad-mean-extra-block5": _pcl_grad("mean", 5, extra=True),
    "ntxent_loss-mean-extra": _ntxent_loss("mean", extra=True),
    "ntxent_loss_and_grad-weights-extra-tau": _ntxent_grad(None, extra=True, temperature_grad=True),
    "ntxent_loss_and_grad-sum-tau": _ntxent_grad("sum", temperature_grad=True),
}

ORDERS = (0.0, 0.5, 2.5, 7.0, 15.0, 63.0, 1023.0)
X_GRID = np.concatenate([[0.0, 1e-6, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0], np.geomspace(10.0, 1e5, 12)])
X_GRID_HALF = np.concatenate([[0.0, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0], np.geomspace(10.0, 3e4, 9)])
RHO_GRID = np.array([0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99])

SPECIAL_FUNCTIONS = ("log_iv", "bessel_ratio", "log_vmf_normalizer", "inverse_bessel_ratio")


# ---------------------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------------------


def assert_lives_with(out, like, dtype, what: str) -> None:
    """``out`` is in ``like``'s namespace, on its device, with ``dtype``."""
    ns_out = array_api_compat.array_namespace(out)
    ns_in = array_api_compat.array_namespace(like)
    assert ns_out is ns_in, f"{what}: namespace {ns_out.__name__}, input's is {ns_in.__name__}"
    assert array_api_compat.device(out) == array_api_compat.device(like), (
        f"{what}: device {array_api_compat.device(out)}, input's is {array_api_compat.device(like)}"
    )
    assert out.dtype == dtype, f"{what}: dtype {out.dtype}, expected {dtype}"
    if array_api_compat.is_torch_array(like):  # the plain torch view of the same facts
        assert out.device == like.device and out.dtype == like.dtype


def max_norm_error(got, want) -> float:
    """Max-norm error relative to the max-norm of ``want``."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    scale = max(float(np.max(np.abs(want))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(got - want))) / scale


def _floor(dtype: str) -> float:
    """Smallest normal number of ``dtype``: relative errors below it are absolute."""
    return {"float64": 2.2250738585072014e-308, "float32": 1.1754944e-38,
            "float16": 6.104e-05, "bfloat16": 1.1754944e-38}[dtype]


def relative_error(got, want, dtype: str) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), _floor(dtype))))


def _on_target(target, inputs: dict) -> dict:
    return {k: target.asarray(v) for k, v in inputs.items()}


def _read_back(target, inputs_t: dict) -> dict:
    """The inputs as the backend holds them, in float64 (half precisions: the rounded values)."""
    return {k: target.to_numpy(v).astype(np.float64) for k, v in inputs_t.items()}


def compare_losses(target, name, inputs, within, *, half: bool) -> None:
    inputs_t = _on_target(target, inputs)
    reference_inputs = _read_back(target, inputs_t) if half else inputs
    want = LOSS_FUNCTIONS[name](reference_inputs)
    got = LOSS_FUNCTIONS[name](inputs_t)
    tol = target.tolerances
    for i, ((kind, g, of), (_, w, _)) in enumerate(zip(got, want)):
        assert_lives_with(g, inputs_t[of], inputs_t[of].dtype, f"{name} output {i}")
        g_np = target.to_numpy(g)
        if kind == "loss" and np.ndim(w) == 0:
            err = abs(float(g_np) - float(w)) / abs(float(w))
        else:
            err = max_norm_error(g_np, w)
        assert np.all(np.isfinite(g_np)), f"{name} output {i} is not finite"
        within(f"{name}[{i}] {kind}", err, tol[kind])


def compare_special(target, name, within, *, half: bool) -> None:
    tol = target.tolerances
    grid = RHO_GRID if name == "inverse_bessel_ratio" else (X_GRID_HALF if half else X_GRID)
    x_t = target.asarray(grid.reshape(-1, 1 if grid.size % 2 else 2))  # 2-D: shape is kept
    x = target.to_numpy(x_t).astype(np.float64)
    big = 0.5 * float(np.finfo(np.float16).max) if target.dtype == "float16" else np.inf
    for nu in ORDERS:
        if name == "log_iv":
            got, want = special.log_iv(nu, x_t), special.log_iv(nu, x)
            ratio = special.bessel_ratio(nu, x)
            g = target.to_numpy(got).astype(np.float64)
            finite = np.isfinite(want)
            assert np.array_equal(np.isfinite(g), finite), f"log_iv({nu}): -inf where the reference is not"
            assert np.all(g[~finite] == want[~finite])
            scale = np.maximum(np.maximum(1.0, np.abs(want[finite])), nu + x[finite] * ratio[finite])
            err = float(np.max(np.abs(g[finite] - want[finite]) / scale))
            key = "log_iv"
        elif name == "bessel_ratio":
            got, want = special.bessel_ratio(nu, x_t), special.bessel_ratio(nu, x)
            err, key = relative_error(target.to_numpy(got), want, target.dtype), "ratio"
        elif name == "log_vmf_normalizer":
            d = int(2 * nu + 2)
            got, want = special.log_vmf_normalizer(d, x_t), special.log_vmf_normalizer(d, x)
            g = target.to_numpy(got).astype(np.float64)
            err, key = float(np.max(np.abs(g - want) / np.maximum(1.0, np.abs(want)))), "log_vmf"
        else:
            want = special.inverse_bessel_ratio(nu, x)
            if np.max(want) > big:  # the answer is not representable in the output dtype
                continue
            got = special.inverse_bessel_ratio(nu, x_t)
            err, key = relative_error(target.to_numpy(got), want, target.dtype), "inverse_ratio"
        assert_lives_with(got, x_t, x_t.dtype, f"{name}({nu})")
        assert tuple(got.shape) == tuple(x_t.shape)
        within(f"{name}(nu={nu}) {key}", err, tol[key])


# ---------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_functions_match_numpy_float64(target, name, seed, within):
    compare_losses(target, name, loss_inputs(seed), within, half=False)


@pytest.mark.parametrize("name", SPECIAL_FUNCTIONS)
def test_special_functions_match_numpy_float64(target, name, within):
    compare_special(target, name, within, half=False)


@pytest.mark.parametrize("name", list(LOSS_FUNCTIONS))
def test_half_precision_losses(half_target, name, within):
    """float16/bfloat16: computed in float32, returned in the input dtype (the contract, section 7)."""
    compare_losses(half_target, name, loss_inputs(0, wide=False), within, half=True)


@pytest.mark.parametrize("name", SPECIAL_FUNCTIONS)
def test_half_precision_special_functions(half_target, name, within):
    compare_special(half_target, name, within, half=True)


def test_mixed_dtypes_keep_each_inputs_dtype(target, within):
    """Embeddings in the target dtype, kappa in the other: computed in float64 (promoted),
    the loss returned in float64 and each gradient in its own input's dtype."""
    other = "float64" if target.dtype == "float32" else "float32"
    second = _backends.make_target(target.backend, target.device, other)
    a = loss_inputs(2)
    x = {"z1": target.asarray(a["z1"]), "z2": target.asarray(a["z2"]),
         "kappa1": second.from_numpy(a["kappa1"]), "kappa2": second.from_numpy(a["kappa2"])}
    ref = {k: target.to_numpy(v).astype(np.float64) for k, v in x.items()}
    loss, g = pr.pcl_loss_and_grad(x["z1"], x["z2"], x["kappa1"], x["kappa2"])
    want_loss, want = pr.pcl_loss_and_grad(ref["z1"], ref["z2"], ref["kappa1"], ref["kappa2"])
    wide = x["z1"] if target.dtype == "float64" else x["kappa1"]
    assert_lives_with(loss, wide, wide.dtype, "loss")
    tolerances = DECLARED[target.backend]["tolerances"]
    within("mixed loss", abs(float(target.to_numpy(loss)) - float(want_loss)) / float(want_loss),
           tolerances["float64"]["loss"])
    for name in ("z1", "z2", "kappa1", "kappa2"):
        got, like = getattr(g, name), x[name]
        assert_lives_with(got, like, like.dtype, f"grad {name}")
        dt = target.dtype if name.startswith("z") else other
        within(f"mixed grad {name}", max_norm_error(target.to_numpy(got), getattr(want, name)),
               tolerances[dt]["grad"])


# ---------------------------------------------------------------------------------------
# Namespaces and devices: kept, never mixed, never left
# ---------------------------------------------------------------------------------------


def _all_public_calls(x: dict):
    """Every public function on the arrays in ``x`` (inputs on one backend)."""
    pr.pcl_loss(x["z1"], x["z2"], x["kappa1"], x["kappa2"], reduction="none")
    pr.pcl_loss_and_grad(x["z1"], x["z2"], x["kappa1"], x["kappa2"], weights=x["weights"])
    pr.ntxent_loss(x["z1"], x["z2"], reduction="none")
    pr.ntxent_loss_and_grad(x["z1"], x["z2"], weights=x["weights"])
    pr.pcl_loss_and_grad(x["z1"], x["z2"], x["kappa1"], x["kappa2"], block_size=5)
    pr.ntxent_loss_and_grad(x["z1"], x["z2"], block_size=5)
    pr.pcl_loss_and_grad(x["z1"], x["z2"], x["kappa1"], x["kappa2"], extra_z=x["extra_z"], extra_kappa=x["extra_kappa"])
    pr.ntxent_loss_and_grad(x["z1"], x["z2"], extra_z=x["extra_z"], temperature_grad=True)
    for nu in (2.5, 63.0):  # a small order (series and recurrence) and a large one (Debye)
        special.log_iv(nu, x["kappa1"])
        special.bessel_ratio(nu, x["kappa1"])
        special.log_vmf_normalizer(int(2 * nu + 2), x["kappa1"])
        special.inverse_bessel_ratio(nu, x["kappa2"] / (1.0 + x["kappa2"]))


@pytest.fixture
def scipy_blocked(monkeypatch):
    """SciPy unreachable: its special functions raise, and importing it fails."""

    def refuse(*args, **kwargs):
        raise AssertionError("SciPy was called")

    sc = sys.modules.get("scipy.special")
    if sc is not None:
        for attr in dir(sc):
            if not attr.startswith("_") and callable(getattr(sc, attr)):
                monkeypatch.setattr(sc, attr, refuse)
    for mod in [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")] + ["scipy"]:
        monkeypatch.setitem(sys.modules, mod, None)


@pytest.mark.parametrize(
    "target", case_params(c for c in declared_cases() if c.backend != "numpy"), indirect=True
)
def test_non_numpy_backends_never_reach_scipy_or_the_host(target, scipy_blocked, monkeypatch):
    """No SciPy call and no copy to the host (torch: .cpu/.numpy/__array__; CuPy: asnumpy)."""
    x = _on_target(target, loss_inputs(3))

    def refuse(*args, **kwargs):
        raise AssertionError("data was copied to the host")

    if target.backend == "torch":
        torch = target.module
        for method in ("cpu", "numpy", "__array__", "tolist", "item"):
            monkeypatch.setattr(torch.Tensor, method, refuse)
    if target.backend == "cupy":
        monkeypatch.setattr(target.module, "asnumpy", refuse)
    if target.backend == "jax":
        for method in ("__array__", "tolist", "item"):
            monkeypatch.setattr(type(x["z1"]), method, refuse)
    _all_public_calls(x)


def test_array_api_strict_keeps_a_non_default_device(within):
    """array-api-strict simulates devices: every output stays on the input's device."""
    xs = require("array_api_strict")
    dev = xs.Device("device1")
    a = loss_inputs(4)
    x = {k: xs.asarray(v, device=dev) for k, v in a.items()}
    loss, g = pr.pcl_loss_and_grad(x["z1"], x["z2"], x["kappa1"], x["kappa2"], weights=x["weights"])
    for out in (loss, *g):
        assert out.device == dev
    outs = [pr.pcl_loss(x["z1"], x["z2"], x["kappa1"], x["kappa2"], reduction="none"),
            *pr.ntxent_loss_and_grad(x["z1"], x["z2"])[1], pr.ntxent_loss(x["z1"], x["z2"]),
            special.log_iv(3.0, x["kappa1"]), special.bessel_ratio(40.0, x["kappa1"]),
            special.log_vmf_normalizer(7, x["kappa1"]),
            special.inverse_bessel_ratio(3.0, x["kappa2"] / (1.0 + x["kappa2"]))]
    for out in outs:
        assert out.device == dev
    want, _ = pr.pcl_loss_and_grad(a["z1"], a["z2"], a["kappa1"], a["kappa2"], weights=a["weights"])
    got = float(np.from_dlpack(xs.asarray(loss, device=xs.Device("CPU_DEVICE"))))
    within("device1 loss", abs(got - float(want)) / abs(float(want)), 1e-12)


def _mixed(first, second):
    a = loss_inputs(5, n=3, d=4)
    z1 = first(a["z1"])
    rest = [second(a[k]) for k in ("z2", "kappa1", "kappa2")]
    return z1, rest


def _numpy(a):
    return np.asarray(a)


def _strict(a):
    return require("array_api_strict").asarray(a)


def _torch_cpu(a):
    return require("torch-cpu").as_tensor(a)


def _torch_cuda(a):
    return require("torch-cuda").as_tensor(a, device="cuda")


def _cupy(a):
    return require("cupy").asarray(a)


def _jax_cpu(a):
    return require("jax-cpu").numpy.asarray(a)


MIXES = [
    pytest.param(_numpy, _strict, TypeError, id="numpy+array_api_strict"),
    pytest.param(_numpy, _torch_cpu, TypeError, id="numpy+torch-cpu"),
    pytest.param(_strict, _torch_cpu, TypeError, id="array_api_strict+torch-cpu"),
    pytest.param(_numpy, _jax_cpu, TypeError, id="numpy+jax-cpu"),
    pytest.param(_jax_cpu, _torch_cpu, TypeError, id="jax-cpu+torch-cpu"),
    pytest.param(_cupy, _torch_cuda, TypeError, id="cupy+torch-cuda", marks=pytest.mark.gpu),
    pytest.param(_numpy, _cupy, TypeError, id="numpy+cupy", marks=pytest.mark.gpu),
    pytest.param(_torch_cpu, _torch_cuda, ValueError, id="torch-cpu+torch-cuda", marks=pytest.mark.gpu),
]


@pytest.mark.parametrize("first, second, error", MIXES)
def test_mixed_namespaces_and_devices_fail_clearly(first, second, error):
    z1, (z2, k1, k2) = _mixed(first, second)
    words = "one array library" if error is TypeError else "one device"
    with pytest.raises(error, match=words) as info:
        pr.pcl_loss(z1, z2, k1, k2)
    assert "z1" in str(info.value) and "z2" in str(info.value)
    with pytest.raises(error, match=words):
        pr.pcl_loss_and_grad(z1, z2, k1, k2)
    with pytest.raises(error, match=words):
        pr.ntxent_loss(z1, z2)
    with pytest.raises(error, match=words):
        pr.ntxent_loss_and_grad(z1, z2)


def test_mixed_devices_in_array_api_strict_fail_clearly():
    xs = require("array_api_strict")
    a = loss_inputs(6, n=3, d=4)
    z1 = xs.asarray(a["z1"], device=xs.Device("device1"))
    z2, k1, k2 = (xs.asarray(a[k]) for k in ("z2", "kappa1", "kappa2"))
    with pytest.raises(ValueError, match="one device; z1 is on .* but z2 is on"):
        pr.pcl_loss(z1, z2, k1, k2)
    with pytest.raises(ValueError, match="one device"):
        pr.ntxent_loss_and_grad(z1, z2)


# ---------------------------------------------------------------------------------------
# CuPy without a device: everything up to the point a device is needed
# ---------------------------------------------------------------------------------------


class _RecordingNamespace:
    """Wraps a namespace and records every attribute the reference asks it for."""

    def __init__(self, ns):
        self._ns = ns
        self.used: set[str] = set()

    def __getattr__(self, name):
        self.used.add(name)
        return getattr(self._ns, name)


@pytest.fixture(scope="module")
def namespace_calls():
    """Every namespace attribute the public functions use, recorded on NumPy inputs."""
    recorder = _RecordingNamespace(array_api_compat.array_namespace(np.zeros(1)))
    mp = pytest.MonkeyPatch()
    mp.setattr(array_api_compat, "array_namespace", lambda *arrays, **kw: recorder)
    try:
        a = loss_inputs(7)
        _all_public_calls(a)
        for dt in (np.float32, np.float16):  # the float32 and half-precision paths too
            _all_public_calls({k: v.astype(dt) for k, v in a.items()})
    finally:
        mp.undo()
    assert {"concat", "where", "exp", "log1p", "matrix_transpose"} <= recorder.used
    return recorder.used


@pytest.mark.parametrize("name", ["cupy", "torch-cpu", "array_api_strict", "jax-cpu"])
def test_each_namespace_provides_what_the_reference_uses(name, namespace_calls):
    """Runs without a GPU: the namespace array-api-compat gives CuPy arrays has every function."""
    backend, _ = {"cupy": ("cupy", "cuda"), "torch-cpu": ("torch", "cpu"),
                  "array_api_strict": ("array_api_strict", "cpu"), "jax-cpu": ("jax", "cpu")}[name]
    try:
        _backends.ADAPTERS[backend].module()
    except ImportError as exc:
        skip_or_fail(name, f"{backend} is not installed ({exc})")
    ns = importlib.import_module(DECLARED[backend]["namespace"])
    # Half-precision dtypes are looked up optionally (getattr with a default).
    optional = set(HALF_DTYPES) - set(DECLARED[backend]["half_dtypes"])
    missing = sorted(n for n in namespace_calls - optional if not hasattr(ns, n))
    assert not missing, f"{ns.__name__} lacks {missing}"


def test_cupy_imports_and_reports_its_device_without_one():
    """CuPy is exercised up to the point a device is needed (it imports on any machine)."""
    try:
        cupy = _backends.ADAPTERS["cupy"].module()
    except ImportError as exc:
        skip_or_fail("cupy", f"cupy is not installed ({exc})")
    import array_api_compat.cupy as cupy_ns

    assert array_api_compat.is_cupy_namespace(cupy_ns)
    available = bool(cupy.cuda.is_available())
    assert _backends.cupy_device_available() is available
    reason = _backends.availability("cupy", "cuda")
    if available:
        assert reason is None
        x = cupy.asarray([1.0, 2.0])
        assert array_api_compat.array_namespace(x) is cupy_ns
    else:
        assert "cupy.cuda.is_available() is False" in reason
        assert ("cupy", reason) in _backends.unavailable_targets()
        cupy_cases = [c for c in declared_cases() if c.backend == "cupy"]
        assert cupy_cases and all(c.gpu for c in cupy_cases)
