"""SPEC section 7: every input rule raises the named exception, naming the argument."""

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
