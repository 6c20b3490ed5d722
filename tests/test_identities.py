"""Exact identities and invariances of the contract, section 3, in random regimes (hypothesis)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import probcon_ref as pr
from probcon_ref.testing.tolerances import TOLERANCES

# the bounds of the contract, section 6, where an identity holds to the reference's own accuracy
LOSS_TOL, GRAD_TOL = TOLERANCES["float64"]
LOSS_TOL32, GRAD_TOL32 = TOLERANCES["float32"]

# CI sees the same 40 examples on every run (derandomized), so that a red run always means
# a change. PROBCON_HYPOTHESIS_EXAMPLES=N explores N fresh random examples per test instead.
_EXPLORE = int(os.environ.get("PROBCON_HYPOTHESIS_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXPLORE or 40, derandomize=not _EXPLORE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
EPS = np.finfo(np.float64).eps


def conditioning(*kappas) -> float:
    """How much rounding the inputs (the z, one ulp each) moves a loss of tiny relative size:
    the logits ``kappa c`` move by about ``kappa eps``, and ``log`` of a tiny loss with them."""
    return 16 * EPS * max(float(np.max(k)) for k in kappas)


@st.composite
def batches(draw, max_n=12, max_d=40):
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(2, max_d))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    log_norm = draw(st.floats(-6, 6))
    z1 = rng.normal(size=(n, d)) * 10.0 ** (log_norm + rng.uniform(-1, 1, size=(n, 1)))
    agreement = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0]))
    z2 = z1 * agreement + rng.normal(size=(n, d)) * np.abs(z1).max(axis=1, keepdims=True)
    log_k = draw(st.floats(-3, 4))
    k1 = 10.0 ** (log_k + rng.uniform(-1, 1, size=n))
    k2 = 10.0 ** (log_k + rng.uniform(-1, 1, size=n))
    return z1, z2, k1, k2


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-300)


@SETTINGS
@given(batches(), st.sampled_from([0.05, 0.2, 0.5, 1.0, 3.0]))
def test_kappa_equal_inverse_temperature_is_ntxent(batch, tau):
    z1, z2, _, _ = batch
    k = np.full(z1.shape[0], 1.0 / tau)
    loss_p, g_p = pr.pcl_loss_and_grad(z1, z2, k, k)
    loss_n, g_n = pr.ntxent_loss_and_grad(z1, z2, temperature=tau)
    assert rel(loss_p, loss_n) <= 1e-13
    assert rel(pr.pcl_loss(z1, z2, k, k, reduction="none"), pr.ntxent_loss(z1, z2, temperature=tau, reduction="none")) <= 1e-13
    assert rel(g_p.z1, g_n.z1) <= 1e-12 and rel(g_p.z2, g_n.z2) <= 1e-12


@pytest.mark.parametrize("d", [2, 3, 64, 4096])
@pytest.mark.parametrize("kappa", [0.0, 1.0, 1e6])
def test_one_pair_loss_is_exactly_zero(d, kappa):
    rng = np.random.default_rng(d)
    z1, z2 = rng.normal(size=(2, 1, d))
    k = np.array([kappa])
    loss, grads = pr.pcl_loss_and_grad(z1, z2, k, k)
    assert float(loss) == 0.0
    assert all(float(np.max(np.abs(g))) == 0.0 for g in grads)
    assert float(pr.ntxent_loss(z1, z2)) == 0.0


@SETTINGS
@given(batches(), st.integers(0, 2**32 - 1))
def test_invariant_to_raw_norms(batch, seed):
    z1, z2, k1, k2 = batch
    rng = np.random.default_rng(seed)
    s1 = 10.0 ** rng.uniform(-5, 5, size=(z1.shape[0], 1))
    s2 = 10.0 ** rng.uniform(-5, 5, size=(z1.shape[0], 1))
    loss, g = pr.pcl_loss_and_grad(z1, z2, k1, k2)
    loss_s, g_s = pr.pcl_loss_and_grad(z1 * s1, z2 * s2, k1, k2)
    # z * s is rounded: the scaled batch is the same one only to an ulp of each entry.
    assert rel(loss_s, loss) <= LOSS_TOL + conditioning(k1, k2)
    # dL/dz scales as 1/s: the loss depends on directions only.
    assert rel(g_s.z1 * s1, g.z1) <= GRAD_TOL + conditioning(k1, k2)
    assert rel(g_s.z2 * s2, g.z2) <= GRAD_TOL + conditioning(k1, k2)
    assert rel(g_s.kappa1, g.kappa1) <= GRAD_TOL + conditioning(k1, k2)


@SETTINGS
@given(batches(), st.integers(0, 2**32 - 1))
def test_invariant_to_permuting_pairs(batch, seed):
    z1, z2, k1, k2 = batch
    perm = np.random.default_rng(seed).permutation(z1.shape[0])
    loss, g = pr.pcl_loss_and_grad(z1, z2, k1, k2)
    loss_p, g_p = pr.pcl_loss_and_grad(z1[perm], z2[perm], k1[perm], k2[perm])
    assert rel(loss_p, loss) <= 1e-13
    for name in g._fields:
        assert rel(getattr(g_p, name), getattr(g, name)[perm]) <= GRAD_TOL


@SETTINGS
@given(batches())
def test_invariant_to_swapping_views(batch):
    z1, z2, k1, k2 = batch
    loss, g = pr.pcl_loss_and_grad(z1, z2, k1, k2)
    loss_s, g_s = pr.pcl_loss_and_grad(z2, z1, k2, k1)
    assert rel(loss_s, loss) <= 1e-13
    assert rel(g_s.z1, g.z2) <= GRAD_TOL and rel(g_s.kappa2, g.kappa1) <= GRAD_TOL
    per_anchor = pr.pcl_loss(z1, z2, k1, k2, reduction="none")
    n = z1.shape[0]
    swapped = pr.pcl_loss(z2, z1, k2, k1, reduction="none")
    assert rel(np.concatenate([swapped[n:], swapped[:n]]), per_anchor) <= LOSS_TOL


@SETTINGS
@given(batches(max_n=8, max_d=24))
def test_reductions_and_weights_agree(batch):
    z1, z2, k1, k2 = batch
    n2 = 2 * z1.shape[0]
    per_anchor = pr.pcl_loss(z1, z2, k1, k2, reduction="none")
    assert per_anchor.shape == (n2,)
    assert np.all(per_anchor >= 0)
    assert rel(pr.pcl_loss(z1, z2, k1, k2, reduction="sum"), per_anchor.sum()) <= 1e-13
    assert rel(pr.pcl_loss(z1, z2, k1, k2), per_anchor.mean()) <= 1e-13
    w = np.random.default_rng(0).uniform(0, 2, size=n2)
    loss_w, g_w = pr.pcl_loss_and_grad(z1, z2, k1, k2, weights=w)
    assert rel(loss_w, np.sum(w * per_anchor)) <= LOSS_TOL
    loss_sum, g_sum = pr.pcl_loss_and_grad(z1, z2, k1, k2, reduction="sum")
    loss_ones, g_ones = pr.pcl_loss_and_grad(z1, z2, k1, k2, weights=np.ones(n2))
    assert rel(loss_ones, loss_sum) <= 1e-14
    assert rel(g_ones.z1, g_sum.z1) <= 1e-14


def _directional_check(loss_fn, args, grads, rng, h):
    worst = 0.0
    for i, g in enumerate(grads):
        v = rng.normal(size=g.shape)
        if i >= 2:
            v = v * args[i]  # relative steps keep kappa >= 0
        else:
            v = v * np.linalg.norm(args[i], axis=1, keepdims=True)  # relative to each row
        plus, minus = list(args), list(args)
        plus[i] = args[i] + h * v
        minus[i] = args[i] - h * v
        up, down = loss_fn(*plus), loss_fn(*minus)
        fd = (up - down) / (2 * h)
        exact = float(np.sum(g * v))
        scale = float(np.sum(np.abs(g * v))) + 1e-300
        # The difference of two rounded losses carries about eps |L| / h of its own: with
        # kappa near 0 the relative steps make the directional derivative itself that small.
        rounding = 16 * np.finfo(np.float64).eps * max(abs(up), abs(down)) / h
        worst = max(worst, max(0.0, abs(fd - exact) - rounding) / scale)
    return worst


@SETTINGS
@given(batches(max_n=6, max_d=20), st.integers(0, 1000))
def test_gradient_matches_central_differences(batch, seed):
    z1, z2, k1, k2 = batch
    # keep the curvature moderate so a central difference is informative
    k1, k2 = np.minimum(k1, 50.0), np.minimum(k2, 50.0)
    rng = np.random.default_rng(seed)
    loss, g = pr.pcl_loss_and_grad(z1, z2, k1, k2, reduction="sum")
    fn = lambda a, b, c, d: float(pr.pcl_loss(a, b, c, d, reduction="sum"))
    assert _directional_check(fn, [z1, z2, k1, k2], list(g), rng, 1e-6) <= 1e-5


@SETTINGS
@given(batches(max_n=10, max_d=64))
def test_float32_agrees_with_float64(batch):
    z1, z2, k1, k2 = batch
    k1, k2 = np.minimum(k1, 1e3), np.minimum(k2, 1e3)
    b32 = [a.astype(np.float32) for a in (z1, z2, k1, k2)]
    loss64, g64 = pr.pcl_loss_and_grad(*[a.astype(np.float64) for a in b32])
    loss32, g32 = pr.pcl_loss_and_grad(*b32)
    assert loss32.dtype == np.float32 and g32.z1.dtype == np.float32
    # the contract, section 6: the float32 loss bound (relative), the gradient bound of each block's
    # max-norm. The loss bound is taken against max(loss, eps32 * scale) since a float32 input cannot resolve a
    # loss far below its own rounding of the logits. And when the positives dominate, the
    # loss is about sum exp(gap): its relative error is the logits' absolute rounding, some
    # eps32 * kappa, which no float32 computation avoids (1e-4 at kappa = 1000, loss 0.024).
    eps32 = float(np.finfo(np.float32).eps)
    kappa_max = float(max(np.max(k1.astype(np.float32)), np.max(k2.astype(np.float32))))
    logit_scale = float(np.max(k1.astype(np.float32))) + 1.0
    rel_tol = LOSS_TOL32 + 4 * eps32 * kappa_max
    assert abs(float(loss32) - float(loss64)) <= rel_tol * max(float(loss64), 1e-2 * logit_scale * 1e-4)
    # Blocks whose entries fall into float32's subnormal range carry fewer digits: the
    # comparison scale is at least the smallest float32 that still has full precision.
    floor = float(np.finfo(np.float32).tiny / np.finfo(np.float32).eps)
    for name in g64._fields:
        got, want = getattr(g32, name).astype(np.float64), getattr(g64, name)
        assert np.max(np.abs(got - want)) <= GRAD_TOL32 * max(float(np.max(np.abs(want))), floor), name


@pytest.mark.parametrize("d", [2, 3, 5, 128, 4096])
@pytest.mark.parametrize("kappa", [0.0, 1e-8, 1.0, 1e3, 1e6])
@pytest.mark.parametrize("views", ["identical", "antipodal", "random"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_nan_in_extreme_regimes(d, kappa, views, dtype):
    rng = np.random.default_rng(d)
    n = 5
    z1 = rng.normal(size=(n, d)) * 10.0 ** rng.uniform(-6, 6, size=(n, 1))
    z2 = {"identical": z1, "antipodal": -z1, "random": rng.normal(size=(n, d))}[views]
    k = np.full(n, kappa)
    args = [a.astype(dtype) for a in (z1, z2, k, k)]
    loss, grads = pr.pcl_loss_and_grad(*args)
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert np.all(np.isfinite(pr.pcl_loss(*args, reduction="none")))


def test_large_batch_and_tiny_dimension():
    rng = np.random.default_rng(7)
    z1, z2 = rng.normal(size=(2, 4096, 2))
    k = rng.uniform(0, 100, size=(2, 4096))
    loss, grads = pr.pcl_loss_and_grad(z1, z2, k[0], k[1])
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)
