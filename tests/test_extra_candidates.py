"""Extra candidates (a memory bank or queue) and the NT-Xent temperature derivative.

The contract, section 3 (extra candidates): M candidates that are no anchor join every
anchor's denominator, the positive stays in the batch, and the gradient is the batch's only.
Checked here against

* a dense float64 evaluation written plainly below (the logits matrix with the extra
  columns, the diagonal at -inf through ``where``, a max-shifted log-sum-exp);
* the 50-digit oracle (``probcon_ref.testing.oracle``), with the measures of
  ``tests/test_loss_reference.py`` (per-anchor and reduced losses relative, gradient blocks
  max-norm relative), and the oracle against its independent twin
  (``tests/reference/mp_reference.py``);
* ``torch.autograd`` of a naive float64 loss for the vector-Jacobian product, and central
  finite differences for ``dL/dtau``;

and for the input rules, the one host read, the block driver, JAX under ``jit`` and the
fused kernels' host build.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import special as sc

import probcon_ref as pr
from probcon_ref import _inputs
from probcon_ref.testing import oracle
from probcon_ref.testing.tolerances import TOLERANCES

LOSS_TOL, GRAD_TOL = TOLERANCES["float64"]
#: What the reference reaches against 50 digits on the moderate batches below (measured:
#: at most 2e-15 for losses and 5e-16 for gradient blocks), with room for other BLAS.
CLOSE = 2e-14
MP_REFERENCE = Path(__file__).resolve().parent / "reference" / "mp_reference.py"


def batch(seed: int = 0, n: int = 4, d: int = 6, m: int = 7, scale: float = 1.0):
    """A batch with agreeing views and a bank of M extra candidates: one a near duplicate of
    an anchor (a hard negative), one with concentration 0, raw norms over two decades."""
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d)) * rng.lognormal(0, 1, size=(n, 1))
    z2 = z1 + 0.3 * rng.normal(size=(n, d))
    k1, k2 = rng.lognormal(1, 1, size=(2, n)) * scale
    extra_z = rng.normal(size=(m, d)) * rng.lognormal(0, 1, size=(m, 1))
    extra_kappa = rng.lognormal(1, 1, size=m) * scale
    if m:
        extra_z[0] = 3 * z1[0] + 0.01 * rng.normal(size=d)
        extra_kappa[-1] = 0.0
    w = rng.uniform(-1, 2, size=2 * n)
    return {"z1": z1, "z2": z2, "kappa1": k1, "kappa2": k2, "extra_z": extra_z, "extra_kappa": extra_kappa,
            "weights": w}


def pcl_args(b):
    return b["z1"], b["z2"], b["kappa1"], b["kappa2"]


def extras(b):
    return {"extra_z": b["extra_z"], "extra_kappa": b["extra_kappa"]}


def rel(got, want) -> float:
    """Max-norm error over the max-norm of ``want`` (tests/test_loss_reference.py's measure)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = float(np.max(np.abs(want)))
    diff = float(np.max(np.abs(got - want)))
    return diff / scale if scale > 0 else diff


def per_anchor_rel(got, want) -> float:
    nz = want != 0
    assert np.all(got[~nz] == 0)
    return float(np.max(np.abs(got[nz] - want[nz]) / np.abs(want[nz]), initial=0.0))


# ---------------------------------------------------------------------------------------
# The dense evaluation, written plainly
# ---------------------------------------------------------------------------------------


def log_c(d: int, kappa):
    """log C_d(kappa) from SciPy's scaled Bessel function, its limit at 0 (moderate d and kappa)."""
    kappa = np.asarray(kappa, dtype=np.float64)
    nu = d / 2 - 1
    at_zero = math.lgamma(d / 2) - math.log(2) - d / 2 * math.log(math.pi)
    safe = np.where(kappa > 0, kappa, 1.0)
    value = nu * np.log(safe) - d / 2 * math.log(2 * math.pi) - (np.log(sc.ive(nu, safe)) + safe)
    return np.where(kappa > 0, value, at_zero)


def dense_losses(z1, z2, kappa=None, extra_z=None, extra_kappa=None, temperature=None):
    """Per-anchor losses from the full (2N x (2N + M)) logits matrix."""
    n, d = z1.shape
    z = np.concatenate([z1, z2])
    extra_z = np.zeros((0, d)) if extra_z is None else extra_z
    candidates = np.concatenate([z, extra_z])
    mu = z / np.linalg.norm(z, axis=1, keepdims=True)
    cand = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    cos = mu @ cand.T
    if temperature is None:
        conc = np.concatenate([kappa, np.zeros(0) if extra_kappa is None else extra_kappa])
        logits = log_c(d, conc)[None, :] + conc[None, :] * cos
    else:
        logits = cos / temperature
    logits = np.where(np.eye(2 * n, len(cand), dtype=bool), -np.inf, logits)
    top = np.max(logits, axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.sum(np.exp(logits - top), axis=1))
    pos = (np.arange(2 * n) + n) % (2 * n)
    return lse - logits[np.arange(2 * n), pos]


@pytest.mark.parametrize("seed, n, m", [(0, 4, 7), (1, 1, 3), (2, 6, 1), (3, 3, 40)])
def test_losses_equal_the_dense_evaluation(seed, n, m):
    b = batch(seed, n=n, m=m)
    kappa = np.concatenate([b["kappa1"], b["kappa2"]])
    want = dense_losses(*pcl_args(b)[:2], kappa, b["extra_z"], b["extra_kappa"])
    got = pr.pcl_loss(*pcl_args(b), **extras(b), reduction="none")
    assert per_anchor_rel(got, want) <= CLOSE
    assert float(pr.pcl_loss(*pcl_args(b), **extras(b))) == pytest.approx(np.mean(want), rel=CLOSE)
    want_nt = dense_losses(b["z1"], b["z2"], extra_z=b["extra_z"], temperature=0.3)
    got_nt = pr.ntxent_loss(b["z1"], b["z2"], temperature=0.3, extra_z=b["extra_z"], reduction="none")
    assert per_anchor_rel(got_nt, want_nt) <= CLOSE


def test_every_kappa_one_over_tau_is_ntxent_with_extra_candidates():
    """The exact special case of the contract, section 3, with a bank: every concentration 1/tau."""
    b = batch(4)
    k = np.full(4, 1 / 0.25)
    pcl = pr.pcl_loss(b["z1"], b["z2"], k, k, extra_z=b["extra_z"], extra_kappa=np.full(7, 1 / 0.25),
                      reduction="none")
    nt = pr.ntxent_loss(b["z1"], b["z2"], temperature=0.25, extra_z=b["extra_z"], reduction="none")
    np.testing.assert_allclose(pcl, nt, rtol=1e-13, atol=0)


def test_one_pair_with_extra_candidates_has_a_loss():
    """N = 1 leaves one batch candidate, the positive; the extra ones make the loss nonzero:
    with one extra candidate it is log(1 + exp(F_aj - F_ap)), a softplus."""
    rng = np.random.default_rng(5)
    z1, z2, bank = rng.normal(size=(3, 1, 4))
    k, lam = np.array([2.0]), np.array([3.0])
    got = pr.pcl_loss(z1, z2, k, k, extra_z=bank, extra_kappa=lam, reduction="none")
    assert np.all(got > 0)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    for a, (anchor, positive) in enumerate(((z1[0], z2[0]), (z2[0], z1[0]))):
        gap = (log_c(4, lam) + lam * unit(anchor) @ unit(bank[0])) - (log_c(4, k) + k * unit(anchor) @ unit(positive))
        assert got[a] == pytest.approx(float(np.log1p(np.exp(gap[0]))), rel=1e-14)
    assert pr.ntxent_loss(z1, z2, extra_z=bank) > 0
    assert pr.pcl_loss(z1, z2, k, k) == 0  # and without them, exactly 0


# ---------------------------------------------------------------------------------------
# M = 0 and None
# ---------------------------------------------------------------------------------------


def test_no_extra_candidates_is_exactly_the_plain_loss():
    """M = 0 is the loss without extra candidates, bit for bit: the input rules turn an empty
    bank into none (``Batch.extra_z is None``), so both calls run the same code on the same
    numbers."""
    b = batch(6)
    empty = {"extra_z": b["extra_z"][:0], "extra_kappa": b["extra_kappa"][:0]}
    assert _inputs.pcl_batch(*pcl_args(b), "mean", None, allow_none=True, **empty).extra_z is None
    for reduction in ("mean", "none"):
        np.testing.assert_array_equal(pr.pcl_loss(*pcl_args(b), reduction=reduction, **empty),
                                      pr.pcl_loss(*pcl_args(b), reduction=reduction))
    with_bank, without = (pr.pcl_loss_and_grad(*pcl_args(b), weights=b["weights"], **kw) for kw in (empty, {}))
    for got, want in zip((with_bank[0], *with_bank[1]), (without[0], *without[1])):
        np.testing.assert_array_equal(got, want)
    with_bank, without = (pr.ntxent_loss_and_grad(b["z1"], b["z2"], temperature=0.2, temperature_grad=True, **kw)
                          for kw in ({"extra_z": empty["extra_z"]}, {}))
    for got, want in zip((with_bank[0], *with_bank[1]), (without[0], *without[1])):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(pr.ntxent_loss(b["z1"], b["z2"], extra_z=empty["extra_z"], reduction="none"),
                                  pr.ntxent_loss(b["z1"], b["z2"], reduction="none"))


def test_gradients_keep_their_containers():
    b = batch(7)
    _, g = pr.pcl_loss_and_grad(*pcl_args(b), **extras(b))
    assert type(g) is pr.PCLGrads and [x.shape for x in g] == [(4, 6), (4, 6), (4,), (4,)]
    _, g = pr.ntxent_loss_and_grad(b["z1"], b["z2"], extra_z=b["extra_z"])
    assert type(g) is pr.NTXentGrads
    _, g = pr.ntxent_loss_and_grad(b["z1"], b["z2"], extra_z=b["extra_z"], temperature_grad=True)
    assert type(g) is pr.NTXentTemperatureGrads and g._fields == ("z1", "z2", "temperature")
    assert g.temperature.shape == () and g.temperature.dtype == np.float64
    _, g32 = pr.ntxent_loss_and_grad(b["z1"].astype(np.float32), b["z2"].astype(np.float32), temperature_grad=True)
    assert g32.temperature.dtype == np.float32 and g32.z1.dtype == np.float32


# ---------------------------------------------------------------------------------------
# Against 50 digits
# ---------------------------------------------------------------------------------------

ORACLE_CASES = [(0, 4, 6, 7, 1.0), (1, 3, 8, 10, 20.0), (2, 1, 3, 4, 1.0)]


@pytest.mark.parametrize("seed, n, d, m, scale", ORACLE_CASES)
def test_pcl_against_the_oracle(seed, n, d, m, scale):
    pytest.importorskip("mpmath")
    b = batch(seed, n=n, d=d, m=m, scale=scale)
    want = oracle.pcl(*pcl_args(b), weights=b["weights"], **extras(b))
    loss, g = pr.pcl_loss_and_grad(*pcl_args(b), weights=b["weights"], **extras(b))
    assert abs(float(loss) - want.loss) <= CLOSE * abs(want.loss)
    losses = pr.pcl_loss(*pcl_args(b), reduction="none", **extras(b))
    assert per_anchor_rel(losses, want.losses) <= CLOSE
    for name in ("z1", "z2", "kappa1", "kappa2"):
        assert rel(getattr(g, name), want.grads[name]) <= CLOSE, name


@pytest.mark.parametrize("seed, n, d, m, scale", ORACLE_CASES)
def test_ntxent_and_its_temperature_derivative_against_the_oracle(seed, n, d, m, scale):
    pytest.importorskip("mpmath")
    b = batch(seed, n=n, d=d, m=m)
    tau = 0.2 / scale
    want = oracle.ntxent(b["z1"], b["z2"], temperature=tau, weights=b["weights"], extra_z=b["extra_z"])
    loss, g = pr.ntxent_loss_and_grad(b["z1"], b["z2"], temperature=tau, weights=b["weights"],
                                      extra_z=b["extra_z"], temperature_grad=True)
    assert abs(float(loss) - want.loss) <= CLOSE * abs(want.loss)
    for name in ("z1", "z2", "temperature"):
        assert rel(getattr(g, name), want.grads[name]) <= CLOSE, name


def test_large_confidence_with_extra_candidates_against_the_oracle():
    """Concentrations in the thousands (float64 takes the compensated logits, decided from
    the extra candidates' concentrations too): the contract's bounds of section 6."""
    pytest.importorskip("mpmath")
    b = batch(8, n=3, d=16, m=5, scale=1000.0)
    b["kappa1"][:], b["kappa2"][:] = 5.0, 5.0  # only the bank is confident
    assert _inputs.pcl_batch(*pcl_args(b), "mean", None, allow_none=True, **extras(b)).compensated
    assert not _inputs.pcl_batch(*pcl_args(b), "mean", None, allow_none=True).compensated
    want = oracle.pcl(*pcl_args(b), **extras(b))
    loss, g = pr.pcl_loss_and_grad(*pcl_args(b), **extras(b))
    assert per_anchor_rel(pr.pcl_loss(*pcl_args(b), reduction="none", **extras(b)), want.losses) <= LOSS_TOL
    assert abs(float(loss) - want.loss) <= LOSS_TOL * abs(want.loss)
    for name in ("z1", "z2", "kappa1", "kappa2"):
        assert rel(getattr(g, name), want.grads[name]) <= GRAD_TOL, name
    want_nt = oracle.ntxent(b["z1"], b["z2"], temperature=1e-3, extra_z=b["extra_z"])
    _, g_nt = pr.ntxent_loss_and_grad(b["z1"], b["z2"], temperature=1e-3, extra_z=b["extra_z"],
                                      temperature_grad=True)
    for name in ("z1", "z2", "temperature"):
        assert rel(getattr(g_nt, name), want_nt.grads[name]) <= GRAD_TOL, name


def test_oracle_agrees_with_its_independent_twin_on_extra_candidates():
    pytest.importorskip("mpmath")
    spec = importlib.util.spec_from_file_location("_mp_reference_for_extra", MP_REFERENCE)
    twin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twin)
    b = batch(9, n=3, d=5, m=4)
    mine = oracle.pcl(*pcl_args(b), weights=b["weights"], **extras(b))
    theirs = twin.pcl_loss_and_grad(*pcl_args(b), b["weights"], None, b["extra_z"], b["extra_kappa"])
    # Both are mpmath evaluations; one ulp allows two 50-digit values to straddle a float64 tie.
    np.testing.assert_array_max_ulp(mine.losses, theirs[0], maxulp=1)
    for key, value in zip(("z1", "z2", "kappa1", "kappa2"), theirs[2:]):
        np.testing.assert_array_max_ulp(mine.grads[key], value, maxulp=1)
    mine = oracle.ntxent(b["z1"], b["z2"], temperature=0.3, weights=b["weights"], extra_z=b["extra_z"])
    theirs = twin.ntxent_loss_and_grad(b["z1"], b["z2"], 0.3, b["weights"], None, b["extra_z"])
    np.testing.assert_array_max_ulp(mine.losses, theirs[0], maxulp=1)
    for key, value in zip(("z1", "z2"), theirs[2:]):
        np.testing.assert_array_max_ulp(mine.grads[key], value, maxulp=1)
    tau_grad = twin.ntxent_temperature_grad(b["z1"], b["z2"], 0.3, b["weights"], b["extra_z"])
    np.testing.assert_array_max_ulp(mine.grads["temperature"], np.float64(tau_grad), maxulp=1)


# ---------------------------------------------------------------------------------------
# The vector-Jacobian product and dL/dtau, against autodiff and finite differences
# ---------------------------------------------------------------------------------------


def _torch_log_c(torch):
    class LogC(torch.autograd.Function):
        """log C_d(kappa) with its derivative -A_d(kappa), both from SciPy."""

        @staticmethod
        def forward(ctx, kappa, d):
            k = kappa.detach().numpy()
            ctx.save_for_backward(kappa)
            ctx.d = d
            return torch.as_tensor(log_c(d, k))

        @staticmethod
        def backward(ctx, grad):
            (kappa,) = ctx.saved_tensors
            k = kappa.detach().numpy()
            safe = np.where(k > 0, k, 1.0)
            ratio = np.where(k > 0, sc.ive(ctx.d / 2, safe) / sc.ive(ctx.d / 2 - 1, safe), 0.0)
            return -grad * torch.as_tensor(ratio), None

    return LogC.apply


def _naive_torch_loss(torch, z1, z2, kappa, extra_z, extra_kappa, weights, temperature=None):
    """sum_a w_a loss_a of a straightforward float64 PyTorch loss with a bank of extra candidates."""
    n, d = z1.shape
    z = torch.cat([z1, z2])
    mu = z / torch.linalg.norm(z, dim=1, keepdim=True)
    cand = torch.cat([mu, extra_z / torch.linalg.norm(extra_z, dim=1, keepdim=True)])
    cos = mu @ cand.T
    if temperature is None:
        conc = torch.cat([kappa, extra_kappa])
        logits = _torch_log_c(torch)(conc, d)[None, :] + conc[None, :] * cos
    else:
        logits = cos / temperature
    diagonal = torch.eye(2 * n, len(cand), dtype=torch.bool)
    logits = torch.where(diagonal, torch.tensor(-math.inf, dtype=logits.dtype), logits)
    pos = (torch.arange(2 * n) + n) % (2 * n)
    losses = torch.logsumexp(logits, dim=1) - logits[torch.arange(2 * n), pos]
    return torch.sum(weights * losses)


@pytest.mark.parametrize("seed, n, m", [(10, 4, 7), (11, 1, 5), (12, 5, 30)])
def test_weighted_gradient_is_the_vjp_of_autograd(seed, n, m):
    torch = pytest.importorskip("torch")
    b = batch(seed, n=n, m=m)
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k != "weights") for k, v in b.items()}
    kappa = torch.cat([t["kappa1"], t["kappa2"]])
    total = _naive_torch_loss(torch, t["z1"], t["z2"], kappa, t["extra_z"], t["extra_kappa"], t["weights"])
    total.backward()
    loss, g = pr.pcl_loss_and_grad(*pcl_args(b), weights=b["weights"], **extras(b))
    assert float(loss) == pytest.approx(float(total.detach()), rel=1e-13)
    for name in ("z1", "z2", "kappa1", "kappa2"):
        assert rel(getattr(g, name), t[name].grad.numpy()) <= 1e-12, name
    # The bank does receive a gradient in autograd, which the loss (by its contract) does not return.
    assert float(torch.max(torch.abs(t["extra_z"].grad))) > 0

    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    zs = {k: torch.tensor(b[k], dtype=torch.float64, requires_grad=True) for k in ("z1", "z2", "extra_z")}
    total = _naive_torch_loss(torch, zs["z1"], zs["z2"], None, zs["extra_z"], None, t["weights"], temperature=tau)
    total.backward()
    loss, g = pr.ntxent_loss_and_grad(b["z1"], b["z2"], temperature=0.3, weights=b["weights"],
                                      extra_z=b["extra_z"], temperature_grad=True)
    assert float(loss) == pytest.approx(float(total.detach()), rel=1e-13)
    for name in ("z1", "z2"):
        assert rel(getattr(g, name), zs[name].grad.numpy()) <= 1e-12, name
    assert float(g.temperature) == pytest.approx(float(tau.grad), rel=1e-12)


@pytest.mark.parametrize("tau", [0.05, 0.5, 3.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "weights"])
def test_temperature_derivative_against_finite_differences(tau, reduction):
    b = batch(13, m=9)
    kw = {"weights": b["weights"]} if reduction == "weights" else {"reduction": reduction}
    _, g = pr.ntxent_loss_and_grad(b["z1"], b["z2"], temperature=tau, extra_z=b["extra_z"], temperature_grad=True,
                                   **kw)
    w = b["weights"] if reduction == "weights" else None

    def value(t):
        losses = pr.ntxent_loss(b["z1"], b["z2"], temperature=t, extra_z=b["extra_z"], reduction="none")
        return float(np.sum(w * losses)) if w is not None else float(np.mean(losses) if reduction == "mean"
                                                                       else np.sum(losses))

    h = 1e-5 * tau  # central differences: truncation ~h^2, rounding ~eps / h
    fd = (value(tau + h) - value(tau - h)) / (2 * h)
    assert float(g.temperature) == pytest.approx(fd, rel=1e-7)


def test_gradient_against_finite_differences_in_every_input():
    """The batch's gradient, entry by entry, against central differences of the loss."""
    b = batch(14, n=2, d=3, m=4)
    _, g = pr.pcl_loss_and_grad(*pcl_args(b), weights=b["weights"], **extras(b))

    def total(**change):
        args = {**{k: b[k] for k in ("z1", "z2", "kappa1", "kappa2")}, **change}
        losses = pr.pcl_loss(args["z1"], args["z2"], args["kappa1"], args["kappa2"], reduction="none", **extras(b))
        return float(np.sum(b["weights"] * losses))

    for name in ("z1", "z2", "kappa1", "kappa2"):
        x = b[name]
        fd = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            h = 1e-6 * max(1.0, abs(x[idx]))
            up, down = x.copy(), x.copy()
            up[idx] += h
            down[idx] -= h
            fd[idx] = (total(**{name: up}) - total(**{name: down})) / (2 * h)
        assert rel(getattr(g, name), fd) <= 1e-7, name


# ---------------------------------------------------------------------------------------
# Blocks, dtypes, devices
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 3, 4, 100])
def test_block_size_does_not_change_the_result(block_size):
    """Blocks of anchor rows change only the order in which the column sums are added (and
    the BLAS kernel a block's product takes), so the results agree to rounding, not bits."""
    b = batch(15, n=8, m=11)
    want = pr.pcl_loss_and_grad(*pcl_args(b), weights=b["weights"], **extras(b))
    got = pr.pcl_loss_and_grad(*pcl_args(b), weights=b["weights"], block_size=block_size, **extras(b))
    assert rel(got[0], want[0]) <= 1e-14
    for a, w in zip(got[1], want[1]):
        assert rel(a, w) <= 1e-14
    want = pr.ntxent_loss_and_grad(b["z1"], b["z2"], extra_z=b["extra_z"], temperature_grad=True)
    got = pr.ntxent_loss_and_grad(b["z1"], b["z2"], extra_z=b["extra_z"], temperature_grad=True,
                                  block_size=block_size)
    for a, w in zip((got[0], *got[1]), (want[0], *want[1])):
        assert rel(a, w) <= 1e-14


def test_extra_candidates_take_part_in_the_dtype_promotion():
    """As kappa's dtype does: float32 views with a float64 bank compute in float64; each
    gradient keeps its own input's dtype, the loss (and dL/dtau) the promoted one."""
    b = batch(16)
    z1, z2, k1, k2 = (a.astype(np.float32) for a in pcl_args(b))
    loss, g = pr.pcl_loss_and_grad(z1, z2, k1, k2, **extras(b))
    assert loss.dtype == np.float64 and all(x.dtype == np.float32 for x in g)
    want = pr.pcl_loss_and_grad(*(a.astype(np.float64) for a in (z1, z2, k1, k2)), **extras(b))
    assert rel(loss, want[0]) <= 1e-15  # the same float64 computation on the same numbers
    loss, g = pr.ntxent_loss_and_grad(z1, z2, extra_z=b["extra_z"], temperature_grad=True)
    assert loss.dtype == np.float64 and g.temperature.dtype == np.float64 and g.z1.dtype == np.float32
    half = pr.pcl_loss(*(a.astype(np.float16) for a in pcl_args(b)), extra_z=b["extra_z"].astype(np.float16),
                       extra_kappa=b["extra_kappa"].astype(np.float16))
    assert half.dtype == np.float16 and np.isfinite(half)


def test_one_host_read_per_call_with_extra_candidates():
    """The extra candidates' rules join the batch's in the one host synchronisation."""
    xs = pytest.importorskip("array_api_strict")
    cls = type(xs.asarray(1.0))
    count = {"n": 0}
    b = {k: xs.asarray(v) for k, v in batch(17).items()}
    with pytest.MonkeyPatch.context() as mp:
        for name in ("__bool__", "__int__", "__float__", "__index__", "__complex__"):
            original = getattr(cls, name)

            def counted(self, _original=original):
                count["n"] += 1
                return _original(self)

            mp.setattr(cls, name, counted)
        calls = [
            lambda: pr.pcl_loss(*pcl_args(b), **extras(b)),
            lambda: pr.pcl_loss_and_grad(*pcl_args(b), weights=b["weights"], **extras(b)),
            lambda: pr.pcl_loss_and_grad(*pcl_args(b), extra_z=b["extra_z"], extra_kappa=b["extra_kappa"] * 1e4),
            lambda: pr.ntxent_loss(b["z1"], b["z2"], extra_z=b["extra_z"]),
            lambda: pr.ntxent_loss_and_grad(b["z1"], b["z2"], extra_z=b["extra_z"], temperature_grad=True),
        ]
        for call in calls:
            count["n"] = 0
            call()
            assert count["n"] == 1, count["n"]


# ---------------------------------------------------------------------------------------
# Input rules, naming extra_z and extra_kappa
# ---------------------------------------------------------------------------------------


def _with(a, idx, value):
    a = a.copy()
    a[idx] = value
    return a


BAD_EXTRAS = [
    ({"extra_z": "z"}, TypeError, "extra_z must be an array"),
    ({"extra_z": np.ones(6), "extra_kappa": np.ones(6)}, ValueError, "extra_z must be 2-D with shape (M, d) = (M, 6)"),
    ({"extra_z": np.ones((3, 5)), "extra_kappa": np.ones(3)}, ValueError, "extra_z must be 2-D with shape (M, d)"),
    ({"extra_z": np.ones((3, 6), dtype=np.int64), "extra_kappa": np.ones(3)}, TypeError,
     "extra_z must have a real floating dtype"),
    ({"extra_z": _with(np.ones((3, 6)), (1, 2), np.nan), "extra_kappa": np.ones(3)}, ValueError,
     "extra_z must be finite"),
    ({"extra_z": _with(np.ones((3, 6)), 2, 0.0), "extra_kappa": np.ones(3)}, ValueError,
     "extra_z has a zero-norm embedding (row 2)"),
    ({"extra_z": np.ones((3, 6))}, ValueError, "extra_kappa is required with extra_z"),
    ({"extra_kappa": np.ones(3)}, ValueError, "extra_kappa was given without extra_z"),
    ({"extra_z": np.ones((3, 6)), "extra_kappa": np.ones(2)}, ValueError, "extra_kappa must have shape (M,) = (3,)"),
    ({"extra_z": np.ones((3, 6)), "extra_kappa": np.ones((3, 1))}, ValueError, "extra_kappa must have shape (M,)"),
    ({"extra_z": np.ones((3, 6)), "extra_kappa": np.ones(3, dtype=np.int32)}, TypeError,
     "extra_kappa must have a real floating dtype"),
    ({"extra_z": np.ones((3, 6)), "extra_kappa": _with(np.ones(3), 0, -1.0)}, ValueError,
     "extra_kappa must be non-negative"),
    ({"extra_z": np.ones((3, 6)), "extra_kappa": _with(np.ones(3), 1, np.inf)}, ValueError,
     "extra_kappa must be finite"),
    ({"extra_z": np.ones((3, 6)), "extra_kappa": _with(np.ones(3), 1, 1e307)}, ValueError,
     "extra_kappa must be at most"),
    ({"extra_z": np.ma.masked_array(np.ones((3, 6))), "extra_kappa": np.ones(3)}, TypeError,
     "extra_z is a masked array"),
]


@pytest.mark.parametrize("fn", [pr.pcl_loss, pr.pcl_loss_and_grad])
@pytest.mark.parametrize("extra, exc, words", BAD_EXTRAS)
def test_pcl_rules_name_the_extra_arguments(fn, extra, exc, words):
    with pytest.raises(exc) as info:
        fn(*pcl_args(batch(18)), **extra)
    assert words in str(info.value)


#: The rules of extra_z, for NT-Xent (which takes no extra_kappa).
NTXENT_BAD = [({"extra_z": extra["extra_z"]}, exc, words) for extra, exc, words in BAD_EXTRAS
              if words.startswith("extra_z")]


@pytest.mark.parametrize("fn", [pr.ntxent_loss, pr.ntxent_loss_and_grad])
@pytest.mark.parametrize("extra, exc, words", NTXENT_BAD)
def test_ntxent_rules_name_extra_z(fn, extra, exc, words):
    b = batch(18)
    with pytest.raises(exc) as info:
        fn(b["z1"], b["z2"], **extra)
    assert words in str(info.value)


def test_ntxent_takes_no_extra_kappa_and_checks_temperature_grad():
    b = batch(19)
    with pytest.raises(TypeError, match="extra_kappa"):
        pr.ntxent_loss(b["z1"], b["z2"], extra_z=b["extra_z"], extra_kappa=b["extra_kappa"])
    with pytest.raises(TypeError, match="temperature_grad must be True or False"):
        pr.ntxent_loss_and_grad(b["z1"], b["z2"], temperature_grad=1)


def test_the_range_of_concentrations_counts_the_extra_candidates():
    """Every gradient sum runs over 2N + M candidates: the largest concentration accepted is
    max / (8 (2N + M)), which is max / (16 N) without extra candidates, and at that edge
    every output is finite."""
    b = batch(20, n=3, m=5)
    top = float(np.finfo(np.float64).max) / (8 * (2 * 3 + 5))
    with pytest.raises(ValueError, match=r"extra_kappa must be at most .* / \(8 \(2N \+ M\)\), N = 3, M = 5"):
        pr.pcl_loss(*pcl_args(b), extra_z=b["extra_z"], extra_kappa=np.full(5, 1.01 * top))
    with pytest.raises(ValueError, match=r"kappa1 must be at most .*, N = 3, M = 5"):
        pr.pcl_loss(b["z1"], b["z2"], np.full(3, 1.01 * top), b["kappa2"], **extras(b))
    with pytest.raises(ValueError, match=r"temperature must be at least .* for N = 3, M = 5"):
        pr.ntxent_loss(b["z1"], b["z2"], temperature=0.99 / top, extra_z=b["extra_z"])
    same = np.tile(np.eye(1, 6), (3, 1))  # identical rows, exact in every product: every candidate ties
    loss, g = pr.pcl_loss_and_grad(same, same, np.full(3, top), np.full(3, top), extra_z=np.tile(same[:1], (5, 1)),
                                   extra_kappa=np.full(5, top))
    assert float(loss) == pytest.approx(math.log(2 * 3 - 1 + 5), rel=1e-12)
    assert all(np.all(np.isfinite(x)) for x in g)


def test_the_overflow_bound_counts_the_extra_concentrations():
    """Whether the outputs are checked for overflow depends on the largest concentration of
    every candidate: a confident bank makes a tiny-norm float32 batch's gradient large."""
    b = batch(21)
    small = [a.astype(np.float32) for a in pcl_args(b)]
    small[0] = small[0] * np.float32(1e-30)
    bank = {"extra_z": b["extra_z"].astype(np.float32), "extra_kappa": np.full(7, 1e30, dtype=np.float32)}
    assert not _inputs.pcl_batch(*small, "mean", None, allow_none=True).check_outputs
    assert _inputs.pcl_batch(*small, "mean", None, allow_none=True, **bank).check_outputs


def test_mixed_namespaces_name_the_extra_candidates():
    torch = pytest.importorskip("torch")
    b = batch(22)
    with pytest.raises(TypeError, match="one array library.*extra_z from"):
        pr.pcl_loss(*pcl_args(b), extra_z=torch.as_tensor(b["extra_z"]), extra_kappa=b["extra_kappa"])
    with pytest.raises(TypeError, match="one array library.*extra_kappa from"):
        pr.pcl_loss(*pcl_args(b), extra_z=b["extra_z"], extra_kappa=torch.as_tensor(b["extra_kappa"]))
    t = {k: torch.as_tensor(v) for k, v in b.items()}  # all in PyTorch: accepted, outputs in PyTorch
    loss, g = pr.pcl_loss_and_grad(*pcl_args(t), **extras(t))
    assert isinstance(loss, torch.Tensor) and isinstance(g.z1, torch.Tensor)
    assert float(loss) == pytest.approx(float(pr.pcl_loss(*pcl_args(b), **extras(b))), rel=1e-14)


# ---------------------------------------------------------------------------------------
# JAX: under jit, and the integration's custom VJP
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jax64():
    jax = pytest.importorskip("jax")
    from probcon_ref.tools import backends as _backends

    _backends.ADAPTERS["jax"].module()  # float64 enabled, as for the consistency suite
    return jax


def test_jit_equals_eager_with_extra_candidates(jax64):
    """Traced, the concentrations are unknown and float64 takes the compensated logits; eager
    takes the plain ones at these concentrations: equal to rounding, not to the bit."""
    jnp = jax64.numpy
    b = {k: jnp.asarray(v) for k, v in batch(23).items()}
    fn = lambda z1, z2, k1, k2, ez, ek, w: pr.pcl_loss_and_grad(z1, z2, k1, k2, weights=w, extra_z=ez,  # noqa: E731
                                                                extra_kappa=ek)
    args = (*pcl_args(b), b["extra_z"], b["extra_kappa"], b["weights"])
    eager, traced = fn(*args), jax64.jit(fn)(*args)
    for a, w in zip(jax64.tree.leaves(traced), jax64.tree.leaves(eager)):
        assert rel(a, w) <= 1e-14
    nt = lambda z1, z2, ez: pr.ntxent_loss_and_grad(z1, z2, extra_z=ez, temperature_grad=True)  # noqa: E731
    for a, w in zip(jax64.tree.leaves(jax64.jit(nt)(b["z1"], b["z2"], b["extra_z"])),
                    jax64.tree.leaves(nt(b["z1"], b["z2"], b["extra_z"]))):
        assert rel(a, w) <= 1e-14


def test_jax_integration_holds_extra_candidates_constant(jax64):
    import probcon_ref.jax as pj

    jnp = jax64.numpy
    b = batch(24)
    x = {k: jnp.asarray(v) for k, v in b.items()}

    def total(z1, z2, k1, k2, ez, ek):
        return jnp.sum(x["weights"] * pj.pcl_loss(z1, z2, k1, k2, extra_z=ez, extra_kappa=ek, reduction="none"))

    value, grads = jax64.jit(jax64.value_and_grad(total, argnums=tuple(range(6))))(
        *pcl_args(x), x["extra_z"], x["extra_kappa"])
    loss, want = pr.pcl_loss_and_grad(*pcl_args(b), weights=b["weights"], **extras(b))
    assert float(value) == pytest.approx(float(loss), rel=1e-14)
    for got, w in zip(grads[:4], want):
        assert rel(got, w) <= 1e-14
    assert not np.any(np.asarray(grads[4])) and not np.any(np.asarray(grads[5]))  # constants: exactly zero
    mean = jax64.grad(lambda z1: pj.ntxent_loss(z1, x["z2"], temperature=0.2, extra_z=x["extra_z"]))(x["z1"])
    assert rel(mean, pr.ntxent_loss_and_grad(b["z1"], b["z2"], temperature=0.2, extra_z=b["extra_z"])[1].z1) <= 1e-14


def test_jax_checks_report_the_extra_candidates_rules_under_jit(jax64):
    import probcon_ref.jax as pj

    jnp = jax64.numpy
    b = {k: jnp.asarray(v) for k, v in batch(25).items()}
    run = jax64.jit(pj.checked(lambda *a: pj.pcl_loss(*a[:4], extra_z=a[4], extra_kappa=a[5])))
    error, _ = run(*pcl_args(b), b["extra_z"], -b["extra_kappa"])
    assert "extra_kappa must be non-negative" in error.get()
    error, _ = run(*pcl_args(b), b["extra_z"].at[1].set(0.0), b["extra_kappa"])
    assert "extra_z has a zero-norm embedding" in error.get()
    error, value = run(*pcl_args(b), b["extra_z"], b["extra_kappa"])
    assert error.get() is None and np.isfinite(float(value))
    with pytest.raises(ValueError, match="extra_kappa is required with extra_z"):
        jax64.jit(lambda *a: pr.pcl_loss(*a, extra_z=b["extra_z"]))(*pcl_args(b))  # a shape rule: raised while tracing
