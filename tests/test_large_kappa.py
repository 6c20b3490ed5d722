"""The last digits at large kappa (the contract, section 6), against the 50-digit oracle.

Identical, nearly identical and duplicated views at concentrations up to 1e6 are where the
logits cancel (docs: derivation, "The logits themselves at large confidence"). Every
per-anchor loss is held to the loss bound of the contract, section 6, relative; where a change of one unit in the last place of
the inputs already moves a loss by more than that (its first-order sensitivity, measured
with the loss's own gradient), to twice that sensitivity instead, and the test says which
bound it applied. A logit is itself a float64 number: its peak, ``log C_d(kappa) - log C_d(0) +
kappa``, is about ``((d - 1)/2) log kappa`` (13,300 at d = 4096 and kappa = 1e6), and a loss that
hangs on the difference of two peaks cannot be more accurate than their rounding,
``2 eps max|peak|`` relative; that floor is the third bound. Each gradient block is held to the
gradient bound of the larger of its max-norm and its terms' scale.

A fixed set of batches runs in CI; ``PROBCON_SWEEP=COUNT`` runs COUNT more random ones
(``PROBCON_SWEEP_SEED`` chooses them).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import probcon_ref as pr
from accuracy_report import record
from probcon_ref.testing.tolerances import TOLERANCES
from probcon_ref.special import bessel_ratio, log_vmf_normalizer

oracle = pytest.importorskip("probcon_ref.testing.oracle")
pytest.importorskip("mpmath")

EPS = np.finfo(np.float64).eps
TINY = 4 * np.finfo(np.float64).smallest_subnormal
LOSS_TOL, GRAD_TOL = TOLERANCES["float64"]
KINDS = ("identical", "near", "duplicated", "generic")


def batch(rng, kind: str):
    """A small batch of ``kind``: views identical, within 1e-12..1e-4, with a duplicated item, or noisy."""
    n = int(rng.integers(2, 5))
    d = int(rng.choice([2, 3, 5, 8, 33, 129]))
    z1 = rng.standard_normal((n, d))
    if kind == "identical":
        z2 = z1.copy()
    elif kind == "near":
        z2 = z1 + 10.0 ** rng.uniform(-12, -4) * rng.standard_normal((n, d))
    elif kind == "duplicated":
        z1[1] = z1[0]
        z2 = z1.copy() if rng.random() < 0.5 else z1 + 10.0 ** rng.uniform(-12, -2) * rng.standard_normal((n, d))
    else:
        z2 = z1 + 0.5 * rng.standard_normal((n, d))
    k1, k2 = 10.0 ** rng.uniform(-1, 6, (2, n))
    if rng.random() < 0.3:
        k2 = k1.copy()
    return z1, z2, k1, k2


def sensitivity(z1, z2, k1, k2):
    """Per anchor, the first-order change of ``loss_a`` when every input moves by one ulp."""
    n = len(z1)
    out = np.empty(2 * n)
    for a in range(2 * n):
        w = np.zeros(2 * n)
        w[a] = 1.0
        _, g = pr.pcl_loss_and_grad(z1, z2, k1, k2, weights=w)
        out[a] = EPS * sum(np.sum(np.abs(gi * xi)) for gi, xi in zip(g, (z1, z2, k1, k2)))
    return out


def gradient_scales(z1, z2, k1, k2, losses):
    """The terms' scale of each gradient block (the contract, section 6), from the oracle's per-anchor losses."""
    z = np.concatenate([z1, z2])
    k = np.concatenate([k1, k2])
    n2, n = len(z), len(z1)
    mu = z / np.linalg.norm(z, axis=1, keepdims=True)
    c = mu @ mu.T
    logits = log_vmf_normalizer(z.shape[1], k)[None, :] + k[None, :] * c
    w = np.zeros((n2, n2))
    for a in range(n2):
        p = (a + n) % n2
        others = [b for b in range(n2) if b not in (a, p)]
        prob = np.exp(np.minimum(logits[a, others] - logits[a, p] - losses[a], 0.0))
        w[a, others] = prob / n2
        w[a, p] = -prob.sum() / n2
    g = w * k[None, :]
    scale_z = (np.abs(g).sum(1) + np.abs(g).sum(0)) / np.linalg.norm(z, axis=1)
    scale_k = (np.abs(w) * (np.abs(c) + bessel_ratio(z.shape[1] / 2 - 1, k)[None, :])).sum(0)
    return {"z1": scale_z[:n, None], "z2": scale_z[n:, None], "kappa1": scale_k[:n], "kappa2": scale_k[n:]}


def check_batch(z1, z2, k1, k2, where: str, **kw):
    ref = oracle.pcl(z1, z2, k1, k2)
    losses = pr.pcl_loss(z1, z2, k1, k2, reduction="none", **kw)
    err = np.abs(losses - ref.losses)
    flat = LOSS_TOL * np.abs(ref.losses) + TINY
    if np.all(err <= flat):
        bound = f"{LOSS_TOL:.0e} relative"
    else:  # held to the inputs' own rounding, or the logits', where that is larger than the flat bound
        sens = sensitivity(z1, z2, k1, k2)
        peaks = np.abs(log_vmf_normalizer(z1.shape[1], np.concatenate([k1, k2]))
                       - log_vmf_normalizer(z1.shape[1], np.zeros(1)) + np.concatenate([k1, k2]))
        represented = 2 * EPS * np.max(peaks) * np.abs(ref.losses)
        bound = "2x the 1-ulp sensitivity, or the peaks' own rounding"
        allowed = np.maximum(flat, np.maximum(2 * sens, represented))
        assert np.all(err <= allowed), (where, err / allowed)
    record("large-kappa per-anchor loss, relative", "float64", float(np.max(err / (np.abs(ref.losses) + TINY / LOSS_TOL))),
           LOSS_TOL, f"{where} ({bound})")
    _, grads = pr.pcl_loss_and_grad(z1, z2, k1, k2, **kw)
    scales = gradient_scales(z1, z2, k1, k2, ref.losses)
    for name, got in zip(("z1", "z2", "kappa1", "kappa2"), grads):
        want = ref.grads[name]
        denom = max(float(np.max(np.abs(want))), float(np.max(scales[name])))
        rel = float(np.max(np.abs(got - want))) / denom if denom > 0 else float(np.max(np.abs(got)))
        assert rel <= GRAD_TOL, (where, name, rel)
        record("large-kappa gradient block / terms' scale", "float64", rel, GRAD_TOL, f"{where} d{name}")


@pytest.mark.parametrize("d", [3, 129])
def test_identical_views_at_kappa_1e6(d):
    """The probe's reproducer: two orthogonal items, identical views, kappa 1e6 and 1."""
    z1 = np.eye(2, d)
    k = np.array([1e6, 1.0])
    ref = oracle.pcl(z1, z1.copy(), k, k)
    loss = float(pr.pcl_loss(z1, z1.copy(), k, k))
    assert abs(loss - ref.loss) <= LOSS_TOL * ref.loss, (loss, ref.loss)
    check_batch(z1, z1.copy(), k, k, f"eye(2, {d}), kappa 1e6")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", KINDS)
def test_sweep_fixed_examples(kind, seed):
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    check_batch(*batch(rng, kind), f"{kind} seed {seed}")


@pytest.mark.skipif(not os.environ.get("PROBCON_SWEEP"), reason="set PROBCON_SWEEP=COUNT for the long sweep")
def test_sweep_long():
    rng = np.random.default_rng(int(os.environ.get("PROBCON_SWEEP_SEED", "0")))
    for i in range(int(os.environ["PROBCON_SWEEP"])):
        kind = KINDS[i % len(KINDS)]
        check_batch(*batch(rng, kind), f"{kind} #{i}")


def test_duplicated_items_take_the_compensated_path():
    """Two copies of one item with identical views: four logits per row equal to the positive's."""
    rng = np.random.default_rng(7)
    z1 = rng.standard_normal((3, 16))
    z1[1] = z1[0]
    k = np.array([1e6, 1e6, 3e5])
    check_batch(z1, z1.copy(), k, k.copy(), "duplicated item, kappa 1e6")


def test_reviewed_reproducers():
    """Structured rows at d = 4096 (the product rounds c by ~88 eps) with a duplicated item at
    kappa 225; and a duplicated item with distinct large kappas at d = 4096 (the peaks' floor)."""
    d = 4096
    v = np.array([1.0] + [2.0**-7] * (d - 1))
    rng = np.random.default_rng(12)
    g = rng.standard_normal((3, d))
    k = np.full(3, 225.0)
    check_batch(np.stack([v, v, g[0]]), np.stack([v, g[1], g[2]]), k, k.copy(), "structured rows, d 4096")
    e1, e2 = np.eye(2, d)
    check_batch(np.stack([e1, e1]), np.stack([e1, e2]), np.array([1e6, 995114.8]), np.array([1e6, 1.0]),
                "duplicate, distinct kappas, d 4096")


def test_ntxent_small_temperature_with_duplicates():
    rng = np.random.default_rng(8)
    z1 = rng.standard_normal((3, 8))
    z1[2] = z1[0]
    z2 = z1 + 1e-9 * rng.standard_normal((3, 8))
    tau = 1e-5
    ref = oracle.ntxent(z1, z2, temperature=tau)
    got = pr.ntxent_loss(z1, z2, temperature=tau, reduction="none")
    assert np.all(np.abs(got - ref.losses) <= LOSS_TOL * np.abs(ref.losses) + TINY)


@pytest.mark.parametrize("kind", KINDS)
def test_block_sizes_agree_to_rounding(kind):
    """Blocked and unblocked passes: the per-anchor losses agree to a few eps of themselves."""
    rng = np.random.default_rng([11, KINDS.index(kind)])
    z1, z2, k1, k2 = batch(rng, kind)
    whole = pr.pcl_loss(z1, z2, k1, k2, reduction="none")
    for size in (1, 3):
        part = pr.pcl_loss(z1, z2, k1, k2, reduction="none", block_size=size)
        assert np.all(np.abs(part - whole) <= 16 * EPS * np.abs(whole) + TINY), (size, part, whole)


def test_plain_and_compensated_logits_agree_where_both_are_exact():
    """Below the threshold the compensated product changes nothing but the last bits."""
    from probcon_ref import _inputs, loss

    rng = np.random.default_rng(3)
    z1, z2 = rng.standard_normal((2, 5, 7))
    k = rng.uniform(1, 50, 10)
    assert k.max() < _inputs.compensate_above(7)
    mu = loss.unit_directions(np, np.concatenate([z1, z2]))[0]
    conc = loss.pcl_concentrations(np, k, 7, loss.ElementwiseSteps(np))
    plain = loss.block_logits(np, *loss.logit_factors(np, mu, mu, conc))
    split = loss.split_directions(np, mu)
    compensated = loss.compensated_block_logits(np, split, split, conc)
    np.testing.assert_allclose(compensated, plain, rtol=0, atol=64 * EPS * np.max(np.abs(plain)))
