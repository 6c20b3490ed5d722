"""``probcon-ref check``: the loss and its gradient on every backend present, compared.

On one batch (built in, or sized by the options) it runs :func:`probcon_ref.pcl_loss_and_grad`
and :func:`probcon_ref.ntxent_loss_and_grad` on every backend x device x dtype this machine
has, compares each with the NumPy float64 result (the contract, section :ref:`6 <contract-accuracy>` tolerances), checks the
float64 gradient against central finite differences, and prints one row per case. On JAX
both run twice: eagerly, and compiled by ``jax.jit`` (rows ``pcl-jit``, ``ntxent-jit``; the
time is that of a compiled call, the compilation done in the warm-up).
Exit status 1 on any failure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import ntxent_loss, ntxent_loss_and_grad, pcl_loss, pcl_loss_and_grad
from ..testing import regimes
from ..testing.tolerances import TOLERANCES
from .backends import Target, available_targets, unavailable_targets

# TOLERANCES: the contract, section 6, (loss, gradient block) by dtype: float64 against the float64
# reference is exact to rounding, float32 is held to its distance from float64.
FD_TOLERANCE = 1e-6
#: The regimes of the built-in batch (probcon_ref.testing.regimes).
BATCH_REGIMES = regimes.keys("random", "kappa-zero")


@dataclass
class Row:
    loss: str
    target: Target
    loss_error: float
    grad_error: float
    seconds: float
    ok: bool


def default_batch(n: int = 64, d: int = 32, seed: int = 0):
    """A reproducible batch with varied norms, agreeing views and a wide range of kappa, one
    of them 0: the regimes :data:`BATCH_REGIMES`."""
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d)) * rng.lognormal(0.0, 2.0, size=(n, 1))
    z2 = z1 + 0.5 * rng.normal(size=(n, d)) * np.abs(z1).mean(axis=1, keepdims=True)
    kappa1 = rng.lognormal(2.0, 1.5, size=n)
    kappa2 = rng.lognormal(2.0, 1.5, size=n)
    kappa1[0] = 0.0
    return z1, z2, kappa1, kappa2


def relative_error(got, want) -> float:
    """Max-norm error of ``got`` relative to the max-norm of ``want``."""
    scale = max(float(np.max(np.abs(want))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want))) / scale


def directional_fd_error(loss_fn, args, grads, seed: int = 1, h: float = 1e-5) -> float:
    """Worst relative mismatch between ``<grad, v>`` and a central difference along random ``v``."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i, g in enumerate(grads):
        v = rng.normal(size=g.shape)
        if i >= 2:  # kappa: relative steps, none where kappa = 0 (the boundary of kappa >= 0)
            v = v * args[i]
        plus = list(args)
        minus = list(args)
        plus[i] = args[i] + h * v
        minus[i] = args[i] - h * v
        fd = (float(loss_fn(*plus)) - float(loss_fn(*minus))) / (2 * h)
        exact = float(np.sum(g * v))
        worst = max(worst, abs(fd - exact) / max(abs(exact), 1e-300))
    return worst


def _cases(batch):
    z1, z2, k1, k2 = batch
    return {
        "pcl": (pcl_loss_and_grad, (z1, z2, k1, k2)),
        "ntxent": (lambda a, b: ntxent_loss_and_grad(a, b, temperature=0.2), (z1, z2)),
    }


def run_checks(batch, repeats: int = 3) -> tuple[list[Row], dict[str, float]]:
    """Every case on every target, and the float64 finite-difference check."""
    cases = _cases(batch)
    reference = {}
    for name, (fn, args) in cases.items():
        loss, grads = fn(*args)
        reference[name] = (float(loss), [np.asarray(g) for g in grads])
    fd = {
        "pcl": directional_fd_error(pcl_loss, list(batch), reference["pcl"][1]),
        "ntxent": directional_fd_error(
            lambda a, b: ntxent_loss(a, b, temperature=0.2), list(batch[:2]), reference["ntxent"][1]
        ),
    }
    rows = []
    for target in available_targets():
        for name, (fn, args) in cases.items():
            rows.append(_run_one(name, fn, args, target, reference[name], repeats))
        if target.backend == "jax":
            import jax

            for name, (fn, args) in cases.items():
                rows.append(_run_one(f"{name}-jit", jax.jit(fn), args, target, reference[name], repeats))
    return rows, fd


def _run_one(name, fn, args, target: Target, ref, repeats: int) -> Row:
    inputs = [target.from_numpy(a) for a in args]
    target.ready(fn(*inputs))  # warm-up
    target.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss, grads = target.ready(fn(*inputs))
        target.synchronize()
        best = min(best, time.perf_counter() - t0)
    ref_loss, ref_grads = ref
    loss_err = abs(float(target.to_numpy(loss)) - ref_loss) / max(abs(ref_loss), 1e-300)
    grad_err = max(relative_error(target.to_numpy(g), r) for g, r in zip(grads, ref_grads))
    tol_loss, tol_grad = TOLERANCES[target.dtype]
    ok = loss_err <= tol_loss and grad_err <= tol_grad
    return Row(name, target, loss_err, grad_err, best, ok)


def format_table(rows: list[Row]) -> str:
    head = f"{'loss':<10} {'backend':<17} {'device':<6} {'dtype':<8} {'loss err':>10} {'grad err':>10} {'time':>10}  result"
    lines = [head, "-" * len(head)]
    for r in rows:
        t = r.target
        lines.append(
            f"{r.loss:<10} {t.backend:<17} {t.device:<6} {t.dtype:<8} {r.loss_error:10.2e} "
            f"{r.grad_error:10.2e} {r.seconds * 1e3:8.2f}ms  {'pass' if r.ok else 'FAIL'}"
        )
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--batch-size", type=int, default=64, help="pairs N in the batch (default 64)")
    parser.add_argument("--dim", type=int, default=32, help="embedding dimension d (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the batch (default 0)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per case (best is shown)")


def run(args) -> int:
    batch = default_batch(args.batch_size, args.dim, args.seed)
    rows, fd = run_checks(batch, args.repeats)
    print(f"probcon-ref check: N = {args.batch_size}, d = {args.dim}, seed = {args.seed} "
          f"(regimes: {', '.join(BATCH_REGIMES)})")
    print(format_table(rows))
    for name, reason in unavailable_targets():
        print(f"not run here: {name} ({reason})")
    fd_ok = all(v <= FD_TOLERANCE for v in fd.values())
    for name, err in fd.items():
        print(f"finite differences ({name}, numpy float64): worst relative error {err:.2e} "
              f"(tolerance {FD_TOLERANCE:.0e})")
    failed = [r for r in rows if not r.ok]
    ok = not failed and fd_ok
    print(f"{len(rows) - len(failed)} of {len(rows)} cases pass; finite differences "
          f"{'pass' if fd_ok else 'FAIL'}: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1
