"""Loss and gradients against a 50-digit evaluation of the contract, sections 3 and 4 (the contract, section 6).

Reference data: ``tests/data/loss_ref.npz`` from ``tests/reference/make_reference.py``; the
inputs are float64 numbers taken as exact. Bounds: those of the contract, section 6 (from
``probcon_ref.testing.tolerances``):

* reduced loss (mean, sum, weighted) and every per-anchor loss: the loss bound, relative,
  also for losses down to 1e-300;
* each gradient block: the gradient bound, max-norm error of the block's max-norm.

The data also store ``cond_a``, how much the rounding of the logits ``F_ab`` is amplified
in ``loss_a``: ``eps cond_a`` estimates what a float64 evaluation can promise in general.
It exceeds the loss bound in the d = 4096 cases with kappa in the thousands; the reference
stays within it there because its logits never carry the ``(d/2) log d`` terms of ``log C_d``
(they use ``log C_d(kappa) - log C_d(0)``) and come out of a single matrix product.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import probcon_ref as pr
from accuracy_report import record
from probcon_ref.testing.tolerances import TOLERANCES

LOSS_TOL, GRAD_TOL = TOLERANCES["float64"]
LOSS_TOL32, GRAD_TOL32 = TOLERANCES["float32"]

REF = np.load(os.path.join(os.path.dirname(__file__), "data", "loss_ref.npz"))
CASES = [str(c) for c in REF["cases"]]


def field(case, name):
    return REF[f"{case}__{name}"]


def has(case, name):
    return f"{case}__{name}" in REF.files


def _rel(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = float(np.max(np.abs(want)))
    diff = float(np.max(np.abs(got - want)))
    return diff / scale if scale > 0 else diff


def _call(case, **kw):
    z1, z2 = field(case, "z1"), field(case, "z2")
    if str(field(case, "kind")) == "pcl":
        args = (z1, z2, field(case, "kappa1"), field(case, "kappa2"))
        return pr.pcl_loss, pr.pcl_loss_and_grad, args, {}, ("z1", "z2", "kappa1", "kappa2")
    tau = float(field(case, "tau"))
    return pr.ntxent_loss, pr.ntxent_loss_and_grad, (z1, z2), {"temperature": tau}, ("z1", "z2")


@pytest.mark.parametrize("case", CASES)
def test_per_anchor_losses(case):
    loss_fn, _, args, kw, _ = _call(case)
    got = loss_fn(*args, reduction="none", **kw)
    want = field(case, "loss_none")
    # An exact zero (N = 1, or a loss below float64's smallest number) must come out as 0.
    assert np.all(got[want == 0] == 0)
    nz = want != 0
    worst = float(np.max(np.abs(got[nz] - want[nz]) / np.abs(want[nz]), initial=0.0))
    record("per-anchor loss, relative", "float64", worst, LOSS_TOL, case)
    assert worst <= LOSS_TOL


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reduced_loss_and_gradients(case, reduction):
    loss_fn, grad_fn, args, kw, names = _call(case)
    want_loss = float(field(case, f"loss_{reduction}"))
    loss = loss_fn(*args, reduction=reduction, **kw)
    loss_g, grads = grad_fn(*args, reduction=reduction, **kw)
    assert float(loss) == float(loss_g)
    err = abs(float(loss) - want_loss) / abs(want_loss) if want_loss else abs(float(loss))
    record("reduced loss, relative", "float64", err, LOSS_TOL, f"{case} ({reduction})")
    assert err <= LOSS_TOL
    for name in names:
        e = _rel(getattr(grads, name), field(case, f"grad_{name}_{reduction}"))
        record("gradient block, max-norm relative", "float64", e, GRAD_TOL, f"{case} d{name}")
        assert e <= GRAD_TOL, name


@pytest.mark.parametrize("case", [c for c in CASES if has(c, "weights")])
def test_per_anchor_weights(case):
    _, grad_fn, args, kw, names = _call(case)
    loss, grads = grad_fn(*args, weights=field(case, "weights"), **kw)
    want = float(field(case, "loss_weighted"))
    assert abs(float(loss) - want) <= LOSS_TOL * abs(want)
    for name in names:
        assert _rel(getattr(grads, name), field(case, f"grad_{name}_weighted")) <= GRAD_TOL


@pytest.mark.parametrize("case", [c for c in CASES if str(REF[f"{c}__kind"]) == "pcl"])
def test_float32_inputs_track_float64(case):
    """The contract, section 6: float32 within its loss and gradient bounds of float64."""
    _, grad_fn, args, kw, names = _call(case)
    args32 = [a.astype(np.float32) for a in args]
    kappa_max = max(float(np.max(a)) for a in args32[2:])
    if kappa_max > 1e4:
        pytest.skip("kappa > 1e4: float32 cannot resolve the logits kappa * c to its loss bound "
                    "(rounding of c alone is 6e-8 * kappa)")
    loss64, g64 = grad_fn(*[a.astype(np.float64) for a in args32], **kw)
    loss32, g32 = grad_fn(*args32, **kw)
    assert loss32.dtype == np.float32
    if float(loss64) < np.finfo(np.float32).tiny:
        # below float32's range: the float32 loss underflows too, cleanly, with finite gradients
        assert float(loss32) < np.finfo(np.float32).tiny
        assert all(np.all(np.isfinite(getattr(g32, n))) for n in names)
        return
    err = abs(float(loss32) - float(loss64)) / max(abs(float(loss64)), 1e-30)
    if float(loss64) < 1e-3:
        # a float32 loss this small is set by the float32 rounding of the cosines
        err = abs(float(loss32) - float(loss64)) / 1e-3
    record("float32 loss vs float64, relative", "float32", err, LOSS_TOL32, case)
    assert err <= LOSS_TOL32
    for name in names:
        e = _rel(getattr(g32, name), getattr(g64, name))
        record("float32 gradient block vs float64", "float32", e, GRAD_TOL32, f"{case} d{name}")
        assert e <= GRAD_TOL32, name
