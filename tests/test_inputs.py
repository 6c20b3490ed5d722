"""The contract, section 7: every input rule raises the named exception, naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

import probcon_ref as pr
from probcon_ref import special


def _batch(n=3, d=4, dtype=np.float64):
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, n, d)).astype(dtype)
    k1, k2 = rng.uniform(0.5, 3, size=(2, n)).astype(dtype)
    return z1, z2, k1, k2


PCL_FUNCS = [pr.pcl_loss, pr.pcl_loss_and_grad]
NTX_FUNCS = [pr.ntxent_loss, pr.ntxent_loss_and_grad]


@pytest.mark.parametrize("fn", PCL_FUNCS)
@pytest.mark.parametrize(
    "change, exc, words",
    [
        (lambda b: (b[0][0], *b[1:]), ValueError, "z1 must be 2-D"),
        (lambda b: (b[0], b[1][:, :3], *b[2:]), ValueError, "equal shapes"),
        (lambda b: (b[0][:0], b[1][:0], b[2][:0], b[3][:0]), ValueError, "N >= 1"),
        (lambda b: (b[0][:, :1], b[1][:, :1], *b[2:]), ValueError, "d >= 2"),
        (lambda b: (b[0], b[1], b[2][:2], b[3]), ValueError, "kappa1 must have shape"),
        (lambda b: (b[0], b[1], b[2], b[3][:, None]), ValueError, "kappa2 must have shape"),
        (lambda b: (b[0].astype(np.int64), *b[1:]), TypeError, "z1 must have a real floating dtype"),
        (lambda b: (b[0], b[1].astype(np.complex128), *b[2:]), TypeError, "z2 must have a real floating dtype"),
        (lambda b: (b[0], b[1], b[2].astype(np.int32), b[3]), TypeError, "kappa1 must have a real floating dtype"),
        (lambda b: (_with(b[0], (1, 1), np.nan), *b[1:]), ValueError, "z1 must be finite"),
        (lambda b: (b[0], _with(b[1], (0, 0), np.inf), *b[2:]), ValueError, "z2 must be finite"),
        (lambda b: (b[0], b[1], b[2], _with(b[3], (1,), np.nan)), ValueError, "kappa2 must be finite"),
        (lambda b: (b[0], _with_row(b[1], 2, 0.0), *b[2:]), ValueError, "z2 has a zero-norm embedding (row 2)"),
        (lambda b: (b[0], b[1], _with(b[2], (0,), -1e-9), b[3]), ValueError, "kappa1 must be non-negative"),
        (lambda b: ([[1.0, 2.0]], *b[1:]), TypeError, "z1 must be an array"),
    ],
)
def test_pcl_input_rules(fn, change, exc, words):
    with pytest.raises(exc) as info:
        fn(*change(_batch()))
    assert words in str(info.value)


def _with(a, idx, value):
    a = a.copy()
    a[idx] = value
    return a


def _with_row(a, row, value):
    a = a.copy()
    a[row] = value
    return a


@pytest.mark.parametrize("fn", NTX_FUNCS)
@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf")])
def test_temperature_must_be_positive(fn, tau):
    z1, z2, _, _ = _batch()
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        fn(z1, z2, temperature=tau)


@pytest.mark.parametrize("fn", PCL_FUNCS + NTX_FUNCS)
def test_unknown_reduction(fn):
    z1, z2, k1, k2 = _batch()
    args = (z1, z2, k1, k2) if fn in PCL_FUNCS else (z1, z2)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fn(*args, reduction="average")


@pytest.mark.parametrize("fn", [pr.pcl_loss_and_grad, pr.ntxent_loss_and_grad])
def test_gradient_has_no_none_reduction(fn):
    z1, z2, k1, k2 = _batch()
    args = (z1, z2, k1, k2) if fn is pr.pcl_loss_and_grad else (z1, z2)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fn(*args, reduction="none")


def test_weights_shape_and_values():
    z1, z2, k1, k2 = _batch()
    with pytest.raises(ValueError, match=r"weights must have shape \(2N,\) = \(6,\)"):
        pr.pcl_loss_and_grad(z1, z2, k1, k2, weights=np.ones(3))
    with pytest.raises(ValueError, match="weights must be finite"):
        pr.pcl_loss_and_grad(z1, z2, k1, k2, weights=np.full(6, np.nan))


def test_mixed_namespaces_are_a_type_error():
    torch = pytest.importorskip("torch")
    z1, z2, k1, k2 = _batch()
    with pytest.raises(TypeError, match="one array library.*kappa1 from"):
        pr.pcl_loss(z1, z2, torch.as_tensor(k1), k2)


def test_mixed_namespaces_strict():
    xs = pytest.importorskip("array_api_strict")
    z1, z2, _, _ = _batch()
    with pytest.raises(TypeError, match="z2 from"):
        pr.ntxent_loss(z1, xs.asarray(z2))


def test_mixed_devices_are_a_value_error():
    xs = pytest.importorskip("array_api_strict")
    z1, z2, k1, k2 = (xs.asarray(a) for a in _batch())
    other = xs.Device("device1")
    with pytest.raises(ValueError, match="one device.*kappa2 is on"):
        pr.pcl_loss(z1, z2, k1, xs.asarray(k2, device=other))


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: special.log_iv(-1.0, np.ones(2)), ValueError, "nu must be a finite number >= 0"),
        (lambda: special.log_iv("1", np.ones(2)), TypeError, "nu must be a real number"),
        (lambda: special.log_iv(1.0, -np.ones(2)), ValueError, "x must be non-negative"),
        (lambda: special.bessel_ratio(1.0, np.array([1.0, np.nan])), ValueError, "x must be non-negative"),
        (lambda: special.bessel_ratio(1.0, np.array([1.0, np.inf])), ValueError, "x must be finite"),
        (lambda: special.log_iv(1.0, np.ones(2, dtype=np.int64)), TypeError, "x must have a real floating dtype"),
        (lambda: special.log_vmf_normalizer(1, np.ones(2)), ValueError, "d must be >= 2"),
        (lambda: special.log_vmf_normalizer(3.0, np.ones(2)), TypeError, "d must be an integer"),
        (lambda: special.log_vmf_normalizer(True, np.ones(2)), TypeError, "d must be an integer, got bool"),
        (lambda: special.log_iv(np.True_, np.ones(2)), TypeError, "nu must be a real number, got bool"),
        (lambda: special.inverse_bessel_ratio(1.0, np.array([0.5]), iterations=0), ValueError, "iterations must be at least 1"),
        (lambda: special.inverse_bessel_ratio(1.0, np.array([0.5]), iterations=-3), ValueError, "iterations must be at least 1"),
        (lambda: special.inverse_bessel_ratio(1.0, np.array([0.5]), iterations=2.0), TypeError, "iterations must be an integer"),
        (lambda: special.log_iv(1.0, np.ma.masked_array([1.0, 2.0], mask=[0, 1])), TypeError, "x is a masked array"),
        (lambda: special.log_vmf_normalizer(3, -np.ones(2)), ValueError, "kappa must be non-negative"),
        (lambda: special.inverse_bessel_ratio(1.0, np.array([1.0])), ValueError, r"rho must lie in \[0, 1\)"),
        (lambda: special.inverse_bessel_ratio(1.0, np.array([-0.1])), ValueError, r"rho must lie in \[0, 1\)"),
    ],
)
def test_special_function_input_rules(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_half_precision_computes_in_float32_and_returns_half():
    torch = pytest.importorskip("torch")
    z1, z2, k1, k2 = (torch.as_tensor(a, dtype=torch.float16) for a in _batch())
    loss, grads = pr.pcl_loss_and_grad(z1, z2, k1, k2)
    assert loss.dtype == torch.float16
    assert all(g.dtype == torch.float16 for g in grads)
    ref, _ = pr.pcl_loss_and_grad(*(t.double() for t in (z1, z2, k1, k2)))
    assert abs(float(loss) - float(ref)) <= 2e-3 * abs(float(ref))
    zb = torch.as_tensor(_batch()[0], dtype=torch.bfloat16)
    assert pr.ntxent_loss(zb, zb).dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------
# Results beyond the output dtype's range: a clear error, never a silent inf or NaN
# ---------------------------------------------------------------------------------------


def test_float16_loss_beyond_its_range_is_an_overflow_error():
    z = np.float16([[1, 0], [1, 0]])
    k = np.float16([4e4, 4e4])
    true = float(pr.pcl_loss(z.astype(np.float64), -z.astype(np.float64), k.astype(np.float64), k.astype(np.float64)))
    assert true > float(np.finfo(np.float16).max)  # the claim the message makes
    with pytest.raises(OverflowError, match="the loss is not representable in float16"):
        pr.pcl_loss(z, -z, k, k)


def test_float16_gradient_beyond_its_range_names_the_block():
    rng = np.random.default_rng(4)
    z1, z2 = (1e-4 * rng.standard_normal((2, 4, 8))).astype(np.float16)
    k = np.full(4, 100.0, dtype=np.float16)
    wide = pr.pcl_loss_and_grad(z1.astype(np.float64), z2.astype(np.float64), k.astype(np.float64), k.astype(np.float64))
    assert np.max(np.abs(wide[1].z1)) > float(np.finfo(np.float16).max)
    with pytest.raises(OverflowError, match="gradient with respect to z1 is not representable in float16"):
        pr.pcl_loss_and_grad(z1, z2, k, k)


def test_float16_results_inside_the_range_come_out_finite():
    z1, z2, k1, k2 = _batch(n=4, d=8)
    half = [a.astype(np.float16) for a in (z1, z2, k1, k2)]
    loss, grads = pr.pcl_loss_and_grad(*half)
    want_loss, want = pr.pcl_loss_and_grad(*[a.astype(np.float32) for a in half])
    assert loss.dtype == np.float16 and np.isfinite(loss)
    assert float(loss) == float(np.float16(want_loss))  # the float32 result rounded once
    for g, w in zip(grads, want):
        assert g.dtype == np.float16 and np.array_equal(g, w.astype(np.float16))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # NumPy reports the overflow first
def test_gradient_beyond_float64_names_the_block():
    """A row of norm 5e-324: the gradient is that of a unit row divided by 5e-324."""
    z1 = np.array([[5e-324, 0, 0, 0], [0, 1.0, 0, 0]])
    z2 = np.array([[1.0, 0.3, 0, 0], [0, 1.0, 0.2, 0]])
    k = np.array([3.0, 2.0])
    unit = z1.copy()
    unit[0, 0] = 1.0
    g_unit = pr.pcl_loss_and_grad(unit, z2, k, k)[1].z1[0]
    assert np.max(np.abs(g_unit)) > np.finfo(np.float64).max * 5e-324  # so the true gradient exceeds the range
    with pytest.raises(OverflowError, match="gradient with respect to z1 is not representable in float64"):
        pr.pcl_loss_and_grad(z1, z2, k, k)
    assert np.isfinite(float(pr.pcl_loss(z1, z2, k, k)))  # the loss itself is representable


@pytest.mark.parametrize("dtype, big", [(np.float64, 1.6e308), (np.float32, 2.95e38)])
def test_kappa_beyond_the_range_is_a_value_error(dtype, big):
    z1, z2, k1, k2 = _batch(dtype=dtype)
    k1 = k1.copy()
    k1[1] = big
    with pytest.raises(ValueError, match="kappa1 must be at most"):
        pr.pcl_loss(z1, z2, k1, k2)
    with pytest.raises(ValueError, match=r"largest .* / \(16 N\), N = 3"):
        pr.pcl_loss(z1, z2, k1, k2)
    k1[1] = float(np.finfo(dtype).max) / (16 * 3)  # at the edge of the range: finite, gradients too
    assert np.isfinite(float(pr.pcl_loss(z1, z2, k1, k2)))
    assert all(np.all(np.isfinite(g)) for g in pr.pcl_loss_and_grad(z1, z2, k1, k2)[1])


def test_largest_accepted_kappa_gives_finite_gradients_for_identical_rows():
    """The gradient sums 2N terms of size kappa before its row factor: the range is max / (16 N)."""
    n = 20
    z = np.tile(np.eye(1, 2), (n, 1))
    top = float(np.finfo(np.float64).max) / (16 * n)
    loss, grads = pr.pcl_loss_and_grad(z, z.copy(), np.full(n, top), np.full(n, top))
    assert float(loss) == pytest.approx(np.log(2 * n - 1), rel=1e-12)  # every candidate ties
    assert all(np.array_equal(g, np.zeros_like(g)) for g in grads[:2])  # exact: radial, projected to 0
    nt_loss, nt_grads = pr.ntxent_loss_and_grad(z, z.copy(), temperature=1 / top)
    assert np.isfinite(float(nt_loss)) and all(np.all(np.isfinite(g)) for g in nt_grads)


@pytest.mark.parametrize("tau", [1e-310, 5.6e-309])
def test_temperature_beyond_the_range_is_a_value_error(tau):
    z1, z2, _, _ = _batch()
    with pytest.raises(ValueError, match="temperature must be at least"):
        pr.ntxent_loss(z1, z2, temperature=tau)
    assert np.isfinite(float(pr.ntxent_loss(z1, z2, temperature=1e-300)))


# ---------------------------------------------------------------------------------------
# Scalars of any library, masked arrays
# ---------------------------------------------------------------------------------------


def test_temperature_accepts_numpy_scalars_and_zero_d_arrays():
    z1, z2, _, _ = _batch()
    want = float(pr.ntxent_loss(z1, z2, temperature=0.25))
    for tau in (np.float32(0.25), np.float64(0.25), np.array(0.25), np.array(0.25, dtype=np.float32)):
        assert float(pr.ntxent_loss(z1, z2, temperature=tau)) == want
    assert float(pr.ntxent_loss(z1, z2, temperature=np.int64(1))) == float(pr.ntxent_loss(z1, z2, temperature=1.0))
    torch = pytest.importorskip("torch")
    assert float(pr.ntxent_loss(z1, z2, temperature=torch.tensor(0.25, dtype=torch.float64))) == want
    for bad in (True, np.True_, np.array([0.25, 0.5]), "0.25", 0.25j):
        with pytest.raises(TypeError, match="temperature must be a real number"):
            pr.ntxent_loss(z1, z2, temperature=bad)


def test_dimension_and_order_accept_numpy_integers():
    k = np.array([0.0, 2.0, 50.0])
    want = special.log_vmf_normalizer(128, k)
    np.testing.assert_array_equal(special.log_vmf_normalizer(np.int64(128), k), want)
    np.testing.assert_array_equal(special.log_vmf_normalizer(np.array(128), k), want)
    np.testing.assert_array_equal(special.log_iv(np.float32(63.0), k), special.log_iv(63.0, k))
    np.testing.assert_array_equal(special.inverse_bessel_ratio(np.int64(63), np.array([0.5])),
                                  special.inverse_bessel_ratio(63.0, np.array([0.5])))


def test_masked_arrays_are_a_type_error():
    z1, z2, k1, k2 = _batch()
    masked = np.ma.masked_array(z1, mask=np.zeros_like(z1, dtype=bool))
    with pytest.raises(TypeError, match="z1 is a masked array"):
        pr.pcl_loss(masked, z2, k1, k2)
    with pytest.raises(TypeError, match="kappa2 is a masked array"):
        pr.pcl_loss(z1, z2, k1, np.ma.masked_array(k2))


# ---------------------------------------------------------------------------------------
# One host synchronisation per call
# ---------------------------------------------------------------------------------------


@pytest.fixture
def host_reads(monkeypatch):
    """Counts every conversion of an array-api-strict array to a Python scalar (a host read)."""
    xs = pytest.importorskip("array_api_strict")
    cls = type(xs.asarray(1.0))
    count = {"n": 0}
    for name in ("__bool__", "__int__", "__float__", "__index__", "__complex__"):
        original = getattr(cls, name)

        def counted(self, _original=original):
            count["n"] += 1
            return _original(self)

        monkeypatch.setattr(cls, name, counted)
    return xs, count


@pytest.mark.parametrize("kappa_high", [10.0, 5e4])  # the plain and the compensated logits
def test_each_call_reads_the_host_once(host_reads, kappa_high):
    xs, count = host_reads
    z1, z2, k1, k2 = [xs.asarray(a) for a in _batch(n=5, d=6)]
    k2 = k2 * kappa_high
    calls = [
        lambda: pr.pcl_loss(z1, z2, k1, k2),
        lambda: pr.pcl_loss(z1, z2, k1, k2, reduction="none"),
        lambda: pr.pcl_loss_and_grad(z1, z2, k1, k2),
        lambda: pr.pcl_loss_and_grad(z1, z2, k1, k2, weights=xs.ones(10, dtype=xs.float64)),
        lambda: pr.ntxent_loss(z1, z2, temperature=1 / kappa_high),
        lambda: pr.ntxent_loss_and_grad(z1, z2, temperature=1 / kappa_high, block_size=2),
    ]
    for call in calls:
        count["n"] = 0
        call()
        assert count["n"] == 1, count["n"]
