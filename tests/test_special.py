"""Special functions against 50-digit mpmath values (the contract, section 5).

Reference data: ``tests/data/special_ref.npz``, produced by ``tests/reference/make_reference.py``.
float32 results at a float32-rounded argument are compared with the reference at the
float64 argument: the contract's normaliser ``max(1, |log I|, nu + x A)`` bounds the effect of
that input rounding by the float32 epsilon, far below the float32 target.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from probcon_ref import special
from probcon_ref.testing.tolerances import SPECIAL

from accuracy_report import record

HERE = os.path.dirname(__file__)
REF = np.load(os.path.join(HERE, "data", "special_ref.npz"))

# the contract, section 5, by dtype and quantity
BOUNDS = {dt: {"log_iv": SPECIAL["log_iv"][i], "ratio": SPECIAL["ratio"][i], "log_c": SPECIAL["log_vmf"][i]}
          for i, dt in enumerate(("float64", "float32"))}
DTYPES = [np.float64, np.float32]


def _by_order(key):
    values = REF[key]
    return [(float(v), values == v) for v in np.unique(values)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_log_iv_and_ratio_against_mpmath(dtype):
    name = np.dtype(dtype).name
    tiny = np.finfo(dtype).tiny
    worst_log = worst_ratio = 0.0
    where_log = where_ratio = ""
    for nu, sel in _by_order("nu"):
        x, ref_log, ref_ratio = REF["x"][sel], REF["log_iv"][sel], REF["ratio"][sel]
        got_log = special.log_iv(nu, x.astype(dtype))
        got_ratio = special.bessel_ratio(nu, x.astype(dtype))
        assert got_log.dtype == dtype and got_ratio.dtype == dtype
        got_log, got_ratio = got_log.astype(np.float64), got_ratio.astype(np.float64)
        zero_arg = x.astype(dtype) == 0
        # I_nu(0) = 0 for nu > 0: log is -inf exactly, the ratio 0 exactly.
        assert np.all(got_log[zero_arg] == (0.0 if nu == 0 else -np.inf))
        assert np.all(got_ratio[zero_arg] == 0.0)
        ok = ~zero_arg
        scale = np.maximum.reduce([np.ones_like(x), np.abs(ref_log), nu + x * ref_ratio])
        err = np.abs(got_log[ok] - ref_log[ok]) / scale[ok]
        if err.size and err.max() > worst_log:
            worst_log, where_log = float(err.max()), f"nu={nu:g}, x={x[ok][err.argmax()]:.6g}"
        # relative error of the ratio where the true ratio is a normal number of the dtype
        normal = ok & (ref_ratio > tiny / np.finfo(dtype).eps)
        err_r = np.abs(got_ratio - ref_ratio)[normal] / ref_ratio[normal]
        if err_r.size and err_r.max() > worst_ratio:
            worst_ratio, where_ratio = float(err_r.max()), f"nu={nu:g}, x={x[normal][err_r.argmax()]:.6g}"
    record("log_iv / max(1,|log I|,nu+xA)", name, worst_log, BOUNDS[name]["log_iv"], where_log)
    record("bessel_ratio, relative", name, worst_ratio, BOUNDS[name]["ratio"], where_ratio)
    assert worst_log <= BOUNDS[name]["log_iv"], where_log
    assert worst_ratio <= BOUNDS[name]["ratio"], where_ratio


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_log_vmf_normalizer_against_mpmath(dtype):
    name = np.dtype(dtype).name
    worst, where = 0.0, ""
    worst_a = 0.0
    for d, sel in _by_order("d"):
        d = int(d)
        kappa, ref, ref_a = REF["kappa"][sel], REF["log_c"][sel], REF["A"][sel]
        k_in = kappa.astype(dtype)
        got = special.log_vmf_normalizer(d, k_in)
        assert got.dtype == dtype
        # The rounding of kappa to the dtype moves log C_d by A_d(kappa) |kappa - k_in|.
        input_effect = ref_a * np.abs(kappa - k_in.astype(np.float64))
        scale = np.maximum(1.0, np.abs(ref))
        err = np.maximum(np.abs(got.astype(np.float64) - ref) - input_effect, 0) / scale
        if err.max() > worst:
            worst, where = float(err.max()), f"d={d}, kappa={kappa[err.argmax()]:.6g}"
        normal = ref_a > np.finfo(dtype).tiny / np.finfo(dtype).eps
        a_got = special.bessel_ratio(d / 2 - 1, k_in).astype(np.float64)
        rel_a = np.abs(a_got - ref_a)[normal] / ref_a[normal]
        worst_a = max(worst_a, float(rel_a.max(initial=0.0)))
    record("log_vmf_normalizer / max(1,|log C|)", name, worst, BOUNDS[name]["log_c"], where)
    record("A_d (mean resultant length), relative", name, worst_a, BOUNDS[name]["ratio"])
    assert worst <= BOUNDS[name]["log_c"], where
    assert worst_a <= BOUNDS[name]["ratio"]


def _mp_reference():
    sys.path.insert(0, os.path.join(HERE, "reference"))
    try:
        import mp_reference
    finally:
        sys.path.pop(0)
    return mp_reference


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("d", [19, 33, 100, 512, 2048, 4096])
def test_log_vmf_normalizer_near_its_zero(d, dtype):
    """Where log C_d crosses 0 the direct formula cancels large terms; the bound still holds."""
    name = np.dtype(dtype).name
    mp_ref = _mp_reference()
    k0, _, half_width = special.normalizer_anchor(d, float(np.finfo(dtype).eps))
    kappa = (k0 + np.linspace(-2.0, 2.0, 17) * half_width).astype(dtype)
    kappa = kappa[kappa > 0]
    got = special.log_vmf_normalizer(d, kappa).astype(np.float64)
    ref = np.array([float(mp_ref.log_vmf_normalizer(d, float(k))) for k in kappa])
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    record("log_vmf_normalizer near its zero", name, float(err.max()), BOUNDS[name]["log_c"], f"d={d}")
    assert err.max() <= BOUNDS[name]["log_c"]


def test_normalizer_limit_at_zero_is_exact():
    for d in (2, 3, 4, 17, 128, 4096):
        want = math.lgamma(d / 2) - math.log(2) - (d / 2) * math.log(math.pi)
        got = float(special.log_vmf_normalizer(d, np.zeros(1))[0])
        assert abs(got - want) <= BOUNDS["float64"]["log_c"] * max(1.0, abs(want))


def test_closed_forms_for_three_dimensions():
    # d = 3: C_3(k) = k / (4 pi sinh k) and A_3(k) = coth k - 1/k.
    k = np.array([1e-6, 0.1, 1.0, 7.5, 30.0, 700.0])
    log_c = np.log(k) - np.log(4 * np.pi) - (k + np.log(-np.expm1(-2 * k)) - np.log(2.0))
    np.testing.assert_allclose(special.log_vmf_normalizer(3, k), log_c, rtol=2e-15)
    big = k >= 1  # below 1 the closed form itself cancels (coth k ~ 1/k)
    np.testing.assert_allclose(special.bessel_ratio(0.5, k[big]), 1 / np.tanh(k[big]) - 1 / k[big],
                               rtol=BOUNDS["float64"]["ratio"])


def test_inverse_bessel_ratio_against_mpmath():
    mp_ref = _mp_reference()
    import mpmath as mp

    worst, where = 0.0, ""
    for nu in (0.0, 0.5, 7.5, 29.5, 63.0, 255.0, 2047.0):
        rho = np.array([1e-8, 1e-3, 0.1, 0.5, 0.9, 0.99, 0.999])
        x = special.inverse_bessel_ratio(nu, rho)
        for r, xx in zip(rho, x):
            # First-order error in x from the 50-digit residual: (A(x) - rho) / (x A'(x)) / x.
            a = mp_ref.bessel_ratio(nu, float(xx))
            slope = 1 - a * a - (2 * nu + 1) * a / mp.mpf(float(xx))
            err = abs(float((a - mp.mpf(float(r))) / (slope * mp.mpf(float(xx)))))
            if err > worst:
                worst, where = err, f"nu={nu:g}, rho={r:g}"
    record("inverse_bessel_ratio, relative", "float64", worst, 1e-12, where)
    assert worst <= 1e-12, where
    assert special.inverse_bessel_ratio(3.0, np.zeros(2)).tolist() == [0.0, 0.0]


def test_inverse_bessel_ratio_float32_round_trip():
    rho = np.array([0.05, 0.3, 0.6, 0.9], dtype=np.float32)
    x = special.inverse_bessel_ratio(63.0, rho)
    assert x.dtype == np.float32
    np.testing.assert_allclose(special.bessel_ratio(63.0, x.astype(np.float64)), rho, rtol=2e-6)


def test_agrees_with_scipy_where_scipy_is_accurate():
    from scipy.special import ive

    x = np.logspace(0, 3, 50)  # below 1, log(ive(nu, x)) + x cancels on SciPy's side
    for nu in (0.0, 2.5, 63.0):
        np.testing.assert_allclose(special.log_iv(nu, x), np.log(ive(nu, x)) + x, rtol=1e-13)
        # SciPy's ratio of two ive calls is coarser (the contract, section 5), hence the looser bound.
        np.testing.assert_allclose(special.bessel_ratio(nu, x), ive(nu + 1, x) / ive(nu, x), rtol=5e-12)


def test_order_2047_tiny_argument_where_scipy_underflows():
    from scipy.special import ive

    x = np.array([1e-3, 1.0, 100.0, 2000.0])
    with np.errstate(divide="ignore"):
        assert np.all(np.isneginf(np.log(ive(2047.0, x))))  # SciPy: I_2047 underflows
    got = special.log_iv(2047.0, x)
    # Leading term of the series: log I_nu(x) ~ nu log(x/2) - lgamma(nu + 1) for x << sqrt(nu).
    lead = 2047 * np.log(x[:2] / 2) - math.lgamma(2048.0)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[:2], lead, rtol=1e-6)


@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4)])
def test_any_shape(shape):
    x = np.full(shape, 2.5)
    assert special.log_iv(1.5, x).shape == shape
    assert special.bessel_ratio(40.0, x).shape == shape
    assert special.log_vmf_normalizer(64, x).shape == shape


def test_array_api_strict_runs_the_same_code():
    xs = pytest.importorskip("array_api_strict")
    x = np.array([0.0, 1e-3, 1.0, 50.0, 1e4])
    for fn, order in ((special.log_iv, 3.5), (special.bessel_ratio, 40.0)):
        got = fn(order, xs.asarray(x))
        assert type(got).__module__.startswith("array_api_strict")
        np.testing.assert_array_equal(np.from_dlpack(got), fn(order, x))
    got = special.log_vmf_normalizer(4096, xs.asarray(x))
    np.testing.assert_array_equal(np.from_dlpack(got), special.log_vmf_normalizer(4096, x))


# ---------------------------------------------------------------------------------------
# The inverse ratio near both ends, and the branch switch under autograd
# ---------------------------------------------------------------------------------------


def _mp_ratio(mp, nu: float, x: float):
    if x == 0:
        return mp.mpf(0)
    return mp.besseli(nu + 1, x, maxterms=10**6) / mp.besseli(nu, x, maxterms=10**6)


def _ends(dtype, count: int) -> np.ndarray:
    """``rho`` from the smallest subnormal to 1e-2 and from 1e-1 below 1 to the largest float below 1."""
    info = np.finfo(dtype)
    near0 = np.geomspace(float(info.smallest_subnormal), 1e-2, count)
    near1 = 1 - np.geomspace(float(info.eps) / 2, 1e-1, count)
    top = [np.nextafter(dtype(1), dtype(0))]
    for _ in range(3):
        top.append(np.nextafter(top[-1], dtype(0)))
    rho = np.concatenate([near0.astype(dtype), near1.astype(dtype), np.array(top, dtype)])
    return np.unique(rho[(rho > 0) & (rho < 1)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nu", [0.0, 1.0, 63.0, 2047.0])
def test_inverse_bessel_ratio_near_both_ends(nu, dtype):
    """Finite for every rho in (0, 1) and as accurate as rho's own rounding allows.

    Backward: ``|A(x) - rho| <= 6 eps rho + 2 tiny`` (mpmath evaluates A at the returned x).
    Forward: the error of x, ``|A(x) - rho| / A'(x)``, within ``6 eps x (1 + cond) + tiny``, where
    ``cond = rho / (x A'(x))`` is how much a relative change of rho is amplified (about
    ``1 / (1 - rho)`` near 1, so no algorithm can do better there).
    """
    mp = pytest.importorskip("mpmath")
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).smallest_subnormal)
    rho = _ends(dtype, 14)
    x = special.inverse_bessel_ratio(nu, rho)
    assert x.dtype == dtype and np.all(np.isfinite(x)) and np.all(x > 0)
    worst_back = worst_fwd = 0.0
    with mp.workdps(40):
        for r, xi in zip(rho.tolist(), x.tolist()):
            a = _mp_ratio(mp, nu, xi)
            back = float(abs(a - r) / (eps * r + tiny))
            slope = 1 - a * a - (2 * nu + 1) * a / xi
            cond = r / (slope * xi)
            fwd = float(abs(a - r) / slope / (eps * xi * (1 + cond) + tiny))
            worst_back, worst_fwd = max(worst_back, back), max(worst_fwd, fwd)
    record("inverse_bessel_ratio backward, eps rho", dtype.__name__, worst_back, 6, f"nu={nu}")
    record("inverse_bessel_ratio forward, eps x (1+cond)", dtype.__name__, worst_fwd, 6, f"nu={nu}")
    assert worst_back <= 6 and worst_fwd <= 6, (worst_back, worst_fwd)


@pytest.mark.parametrize("nu, rho", [(63.0, np.float32([0.9999962])), (1.0, np.array([0.9999999999999999])),
                                     (2047.0, np.array([1 - 1e-13])), (0.5, np.array([1e-310]))])
def test_inverse_bessel_ratio_reported_nans_are_finite(nu, rho):
    x = special.inverse_bessel_ratio(nu, rho)
    assert np.all(np.isfinite(x)) and np.all(x > 0)
    np.testing.assert_allclose(special.bessel_ratio(nu, x), rho, rtol=8 * np.finfo(rho.dtype).eps)


def test_inverse_bessel_ratio_iterations_converge():
    rho = np.array([1e-3, 0.3, 0.9, 0.999, 1 - 1e-9])
    default = special.inverse_bessel_ratio(14.5, rho)
    np.testing.assert_allclose(special.inverse_bessel_ratio(14.5, rho, iterations=40), default, rtol=1e-15)
    one = special.inverse_bessel_ratio(14.5, rho, iterations=1)  # inside Amos's bracket after any count
    lo, hi = special.ratio_bracket(np, 14.5, rho)
    assert np.all(one >= lo * (1 - 1e-15)) and np.all(one <= hi * (1 + 1e-15))


@pytest.mark.parametrize("nu", [0.0, 2.5, 14.0])
def test_autograd_at_the_branch_switch_gets_the_whole_derivative(nu):
    """At ``x = x_s`` (15 in float64) the series and recurrence branches meet; the derivative of
    ``log I_nu`` there is ``A_nu(x) + nu / x`` (DLMF 10.29.2), not half of it."""
    torch = pytest.importorskip("torch")
    xs = special.plan_for_eps(float(np.finfo(np.float64).eps)).series_max_x
    x = torch.tensor([xs, xs * (1 + 1e-9), xs * (1 - 1e-9)], dtype=torch.float64, requires_grad=True)
    special.log_iv(nu, x).sum().backward()
    want = special.bessel_ratio(nu, x.detach()) + nu / x.detach()
    torch.testing.assert_close(x.grad, want, rtol=1e-9, atol=0)
    k = torch.tensor([xs], dtype=torch.float64, requires_grad=True)
    special.log_vmf_normalizer(int(2 * nu + 2), k).sum().backward()
    torch.testing.assert_close(k.grad, -special.bessel_ratio(nu, k.detach()), rtol=1e-9, atol=0)


@pytest.mark.parametrize("d", [2, 3, 8, 33, 64, 200, 4096])
def test_normalizer_shift_and_peak_against_mpmath(d):
    """Both forms to their own precision, the log C_d bound of the contract, section 5: ``shift`` of
    max(1, |shift|), ``peak`` of max(1, |peak|) (the peak is much smaller than the shift at
    large kappa)."""
    mp = pytest.importorskip("mpmath")
    kappa = np.array([0.0, 1e-300, 1e-6, 0.5, 14.9, 15.0, 15.1, 99.0, 2e3, 1e5, 1e6, 1e12, 1e300])
    terms = special.log_vmf_normalizer_terms_working(np, d, kappa)
    nu = mp.mpf(d) / 2 - 1
    worst = 0.0
    with mp.workdps(50):
        def scaled(x):
            return -nu * mp.log(2) - mp.loggamma(nu + 1) if x == 0 else mp.log(mp.besseli(nu, x, maxterms=10**6)) - nu * mp.log(x)

        for k, shift, peak in zip(kappa.tolist(), terms.shift.tolist(), terms.peak.tolist()):
            if k > 1e13:  # mpmath's series is too slow there; the forms must still be finite
                assert math.isfinite(shift) and math.isfinite(peak)
                continue
            want = -(scaled(mp.mpf(k)) - scaled(mp.mpf(0)))
            worst = max(worst, float(abs(shift - want) / max(1, abs(want))),
                        float(abs(peak - (want + k)) / max(1, abs(want + k))))
    record("normaliser shift and peak / max(1, |value|)", "float64", worst, BOUNDS["float64"]["log_c"], f"d={d}")
    assert worst <= BOUNDS["float64"]["log_c"]
