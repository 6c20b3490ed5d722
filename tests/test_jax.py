"""JAX: the reference under ``jax.jit``, the input rules under tracing, and ``probcon_ref.jax``.

* jit-compiled, every public function agrees with NumPy float64 within the declared
  tolerances (the eager calls are in tests/test_backends.py, as for every backend);
* eager calls raise on every broken value rule; under jit the namespace, shape and dtype
  rules raise while tracing, the value rules are skipped, and :func:`probcon_ref.jax.checked`
  reports them through checkify;
* :func:`probcon_ref.jax.pcl_loss` and :func:`probcon_ref.jax.ntxent_loss` differentiate like
  ``jax.grad`` of a naive float64 JAX loss and like the 50-digit oracle, for every reduction
  and per-anchor cotangents, under jit, grad, vmap, and train a tiny model under jit;
* the special functions' derivative rules match mpmath;
* ``validate(framework="jax")`` and ``probcon-ref validate --framework jax`` pass a correct
  JAX loss (gradients through ``jax.grad``) and name a wrong one.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import probcon_ref as pr  # noqa: E402
import probcon_ref.jax as pj  # noqa: E402
from probcon_ref import special  # noqa: E402
from probcon_ref._inputs import compensate_above  # noqa: E402
from probcon_ref.jax._validate import jax_candidate  # noqa: E402
from probcon_ref.tools import backends as _backends  # noqa: E402

from conftest import DECLARED  # noqa: E402

_backends.ADAPTERS["jax"].module()  # float64 enabled, as for the consistency suite
jnp = jax.numpy
TOL = DECLARED["jax"]["tolerances"]
DTYPES = ("float64", "float32")


def batch(seed: int = 0, n: int = 6, d: int = 5, dtype: str = "float64", top: float = 30.0, zero: bool = True):
    """A small batch as NumPy arrays: agreeing views, kappa in [0, top], one kappa = 0 (``zero``)."""
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d))
    z2 = z1 + 0.5 * rng.normal(size=(n, d))
    k1, k2 = rng.uniform(0.0, top, size=(2, n))
    k1[0] = 0.0 if zero else k1[0]
    return [a.astype(dtype) for a in (z1, z2, k1, k2)]


def on_jax(arrays):
    return [jnp.asarray(a) for a in arrays]


def max_norm_error(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


# ---------------------------------------------------------------------------------------
# The reference under jax.jit
# ---------------------------------------------------------------------------------------

LOSS_CALLS = {
    "pcl_loss-mean": lambda z1, z2, k1, k2, w: [pr.pcl_loss(z1, z2, k1, k2)],
    "pcl_loss-none": lambda z1, z2, k1, k2, w: [pr.pcl_loss(z1, z2, k1, k2, reduction="none")],
    "pcl_loss_and_grad-weights": lambda z1, z2, k1, k2, w: [*jax.tree.leaves(
        pr.pcl_loss_and_grad(z1, z2, k1, k2, weights=w))],
    "pcl_loss_and_grad-block2": lambda z1, z2, k1, k2, w: [*jax.tree.leaves(
        pr.pcl_loss_and_grad(z1, z2, k1, k2, block_size=2))],
    "ntxent_loss-none": lambda z1, z2, k1, k2, w: [pr.ntxent_loss(z1, z2, temperature=0.2, reduction="none")],
    "ntxent_loss_and_grad-sum": lambda z1, z2, k1, k2, w: [*jax.tree.leaves(
        pr.ntxent_loss_and_grad(z1, z2, temperature=0.2, reduction="sum"))],
}


assert 30.0 < compensate_above(5) < 5e3  # float64 eagerly: the plain logits, then the compensated ones


@pytest.mark.parametrize("top", [30.0, 5e3])
@pytest.mark.parametrize("name", list(LOSS_CALLS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_jit_of_the_losses_matches_numpy_float64(dtype, name, top, within):
    arrays = batch(1, dtype=dtype, top=top)
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=12).astype(dtype)  # no cancellation in the sum
    want = LOSS_CALLS[name](*[a.astype(np.float64) for a in arrays], w.astype(np.float64))
    got = jax.jit(LOSS_CALLS[name])(*on_jax(arrays), jnp.asarray(w))
    for i, (g, v) in enumerate(zip(got, want)):
        assert g.dtype == jnp.dtype(dtype) and g.shape == v.shape
        kind = "loss" if i == 0 else "grad"
        within(f"jit {name} [{i}]", max_norm_error(g, v), TOL[dtype][kind])


ORDERS = (0.0, 2.5, 63.0, 1023.0)  # nu = 0, the series and the recurrence, Debye
X = np.concatenate([[0.0, 1e-6, 0.1, 1.0, 5.0], np.geomspace(10.0, 1e5, 6)])
RHO = np.array([0.0, 0.01, 0.3, 0.7, 0.95, 0.99])


def _special_error(name, nu, got, x64):
    if name == "log_iv":
        want = special.log_iv(nu, x64)
        finite = np.isfinite(want)
        assert np.array_equal(np.isfinite(got), finite) and np.all(got[~finite] == want[~finite])
        got, want, x64 = got[finite], want[finite], x64[finite]
        scale = np.maximum(np.maximum(1.0, np.abs(want)), nu + x64 * special.bessel_ratio(nu, x64))
        return float(np.max(np.abs(got - want) / scale)), "log_iv"
    if name == "log_vmf_normalizer":
        want = special.log_vmf_normalizer(int(2 * nu + 2), x64)
        return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))), "log_vmf"
    want = special.bessel_ratio(nu, x64) if name == "bessel_ratio" else special.inverse_bessel_ratio(nu, x64)
    floor = np.finfo(got.dtype).smallest_normal
    key = "ratio" if name == "bessel_ratio" else "inverse_ratio"
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), floor))), key


@pytest.mark.parametrize("name", ["log_iv", "bessel_ratio", "log_vmf_normalizer", "inverse_bessel_ratio"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_jit_of_the_special_functions_matches_numpy_float64(dtype, name, within):
    grid = RHO if name == "inverse_bessel_ratio" else X
    x = jnp.asarray(grid.astype(dtype))
    x64 = np.asarray(x).astype(np.float64)
    for nu in ORDERS:
        if name == "log_vmf_normalizer":
            fn = lambda v, nu=nu: special.log_vmf_normalizer(int(2 * nu + 2), v)  # noqa: E731
        else:
            fn = lambda v, nu=nu: getattr(special, name)(nu, v)  # noqa: E731
        got = jax.jit(fn)(x)
        assert got.dtype == x.dtype and got.shape == x.shape
        err, key = _special_error(name, nu, np.asarray(got).astype(np.float64), x64)
        within(f"jit {name}(nu={nu})", err, TOL[dtype][key])


# ---------------------------------------------------------------------------------------
# Input rules: eager calls raise; under tracing, values are skipped or checked by checkify
# ---------------------------------------------------------------------------------------


def _broken(kind: str):
    z1, z2, k1, k2 = batch(3)
    if kind == "nan":
        z1[1, 2] = np.nan
    elif kind == "zero-row":
        z2[3] = 0.0
    elif kind == "negative-kappa":
        k1[2] = -1.0
    elif kind == "huge-kappa":
        k2[1] = 1e307
    return on_jax((z1, z2, k1, k2))


BROKEN = {"nan": "z1 must be finite", "zero-row": "z2 has a zero-norm embedding",
          "negative-kappa": "kappa1 must be non-negative", "huge-kappa": "kappa2 must be at most"}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_eager_calls_keep_raising(kind):
    args = _broken(kind)
    for call in (lambda: pr.pcl_loss(*args), lambda: pr.pcl_loss_and_grad(*args), lambda: pj.pcl_loss(*args),
                 lambda: jax.grad(pj.pcl_loss, argnums=(0, 2))(*args)):
        with pytest.raises(ValueError, match=BROKEN[kind]):
            call()
    with pytest.raises(ValueError, match="x must be non-negative"):
        pj.log_iv(2.0, -jnp.ones(3))
    with pytest.raises(ValueError, match="rho must lie in"):
        special.inverse_bessel_ratio(2.0, jnp.asarray([0.5, 1.0]))


def test_value_rules_are_skipped_under_jit():
    """Traced, nothing can be read: no error, and a NaN input gives a NaN loss."""
    loss, grads = jax.jit(pr.pcl_loss_and_grad)(*_broken("nan"))
    assert math.isnan(float(loss)) and np.isnan(np.asarray(grads.z1)).any()
    assert np.isfinite(float(jax.jit(pj.pcl_loss)(*_broken("negative-kappa"))))
    assert not np.isfinite(np.asarray(jax.jit(lambda x: special.log_iv(1.0, x))(jnp.asarray([-1.0, 2.0])))[0])


def test_an_output_beyond_its_dtype_raises_eagerly_and_is_inf_under_jit():
    rho = jnp.asarray([0.1, 0.99], dtype=jnp.float16)  # A^{-1}(0.99) at order 1000 exceeds float16
    with pytest.raises(OverflowError, match="not representable in float16"):
        special.inverse_bessel_ratio(1000.0, rho)
    got = np.asarray(jax.jit(lambda r: special.inverse_bessel_ratio(1000.0, r))(rho))
    assert np.isfinite(got[0]) and got[1] == np.inf


def test_traced_float64_logits_come_from_the_compensated_product(monkeypatch):
    """Traced, kappa is unknown: float64 takes the compensated product, which is accurate for every kappa."""
    from probcon_ref import loss

    calls = []
    original = loss.compensated_block_logits
    monkeypatch.setattr(loss, "compensated_block_logits", lambda *a: calls.append(1) or original(*a))
    arrays = on_jax(batch(14, top=30.0))  # every kappa below compensate_above(5)
    eager = pr.pcl_loss(*arrays)
    assert not calls
    traced = jax.jit(pr.pcl_loss)(*arrays)
    assert calls and abs(float(traced) - float(eager)) <= 1e-14 * abs(float(eager))
    calls.clear()
    jax.jit(pr.pcl_loss)(*[a.astype(jnp.float32) for a in arrays])
    assert not calls  # float32 never compensates


def test_shape_dtype_and_namespace_rules_raise_while_tracing():
    z1, z2, k1, k2 = on_jax(batch(4))
    fn = jax.jit(pr.pcl_loss)
    with pytest.raises(TypeError, match="z1 must have a real floating dtype"):
        fn(z1.astype(jnp.int32), z2, k1, k2)
    with pytest.raises(ValueError, match="equal shapes"):
        fn(z1, z2[:, :3], k1, k2)
    with pytest.raises(ValueError, match="kappa2 must have shape"):
        fn(z1, z2, k1, k2[:3])
    numpy_z2 = np.asarray(z2)
    with pytest.raises(TypeError, match="one array library"):
        jax.jit(lambda a, k, l: pr.pcl_loss(a, numpy_z2, k, l))(z1, k1, k2)
    with pytest.raises(TypeError, match="temperature must be a concrete number"):
        jax.jit(lambda a, b, t: pr.ntxent_loss(a, b, temperature=t))(z1, z2, 0.5)
    with pytest.raises(TypeError, match="nu must be a concrete number"):
        jax.jit(special.log_iv)(jnp.asarray(2.0), jnp.ones(3))
    with pytest.raises(TypeError, match="d must be an integer"):
        jax.jit(special.log_vmf_normalizer)(jnp.asarray(3), jnp.ones(3))
    with pytest.raises(TypeError, match="block_size must be a positive integer"):
        jax.jit(lambda a, b, s: pr.ntxent_loss(a, b, block_size=s))(z1, z2, 2)
    with pytest.raises(ValueError, match="reduction must be one of"):
        jax.jit(lambda *a: pj.pcl_loss(*a, reduction="average"))(z1, z2, k1, k2)


@functools.lru_cache(maxsize=None)
def checked_step():
    """One jit-compiled, checked value-and-gradient, shared by the tests (one compilation)."""
    return jax.jit(pj.checked(jax.value_and_grad(pj.pcl_loss, argnums=(0, 1, 2, 3))))


@pytest.mark.parametrize("kind", list(BROKEN))
def test_checked_reports_the_broken_rule(kind):
    step = checked_step()
    error, _ = step(*_broken(kind))
    assert error.get() is not None and BROKEN[kind] in error.get()
    with pytest.raises(Exception, match=BROKEN[kind]):
        error.throw()
    error, (loss, _) = step(*on_jax(batch(3)))
    assert error.get() is None and np.isfinite(float(loss))


def test_checked_covers_the_cotangent_and_the_special_functions():
    none = jax.jit(pj.checked(lambda *a: jax.vjp(lambda *b: pj.pcl_loss(*b, reduction="none"), *a[:4])[1](a[4])))
    args = on_jax(batch(5))
    error, _ = none(*args, jnp.ones(12))
    assert error.get() is None
    error, _ = jax.jit(pj.checked(lambda x: pj.log_iv(3.0, x)))(jnp.asarray([1.0, -2.0]))
    assert "x must be non-negative" in error.get()
    error, _ = jax.jit(pj.checked(lambda r: pj.inverse_bessel_ratio(3.0, r)))(jnp.asarray([0.5, 1.5]))
    assert "rho must lie in [0, 1)" in error.get()


def test_checked_without_jit_reports_through_the_error_too():
    """checkify traces the function even without jax.jit: the rule comes back as the error."""
    error, _ = pj.checked(pj.pcl_loss)(*_broken("negative-kappa"))
    assert "kappa1 must be non-negative" in error.get()


# ---------------------------------------------------------------------------------------
# probcon_ref.jax: the analytic VJP against autodiff of a naive float64 loss, and the oracle
# ---------------------------------------------------------------------------------------


def naive_log_c(d: int, kappa):
    """log C_d(kappa) in closed form for d = 2 (JAX's i0e) and d = 3 (sinh), for JAX to differentiate."""
    if d == 2:
        return -math.log(2 * math.pi) - (jnp.log(jax.scipy.special.i0e(kappa)) + kappa)
    safe = jnp.where(kappa > 0, kappa, 1.0)
    log_c = jnp.log(safe) - math.log(2 * math.pi) - safe - jnp.log1p(-jnp.exp(-2 * safe))
    return jnp.where(kappa > 0, log_c, -math.log(4 * math.pi))


def naive_losses(z1, z2, kappa1=None, kappa2=None, temperature=None):
    """Per-anchor PCL (or NT-Xent) as the textbook writes it: logits, diagonal masked, logsumexp."""
    n, d = z1.shape
    z = jnp.concatenate([z1, z2])
    mu = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    if temperature is None:
        kappa = jnp.concatenate([kappa1, kappa2])
        logits = naive_log_c(d, kappa)[None, :] + kappa[None, :] * (mu @ mu.T)
    else:
        logits = mu @ mu.T / temperature
    logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
    pos = (jnp.arange(2 * n) + n) % (2 * n)
    return jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(2 * n), pos]


def _vjps(fn, args, cotangent):
    value, pull = jax.vjp(fn, *args)
    return value, pull(cotangent)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["pcl", "ntxent"])
def test_the_vjp_matches_autodiff_of_a_naive_float64_loss(loss, reduction, d, within):
    # No kappa = 0 for d = 2: JAX's i0e(x) = exp(-|x|) I_0(x) has the derivative 0 at its kink
    # x = 0, not the one-sided -1 that kappa >= 0 needs, so the naive gradient is wrong there.
    args = on_jax(batch(6, n=5, d=d, top=20.0, zero=d == 3))
    if loss == "ntxent":
        args = args[:2]
        ours = lambda *a: pj.ntxent_loss(*a, temperature=0.3, reduction=reduction)  # noqa: E731
        per_anchor = lambda *a: naive_losses(*a, temperature=0.3)  # noqa: E731
    else:
        ours = lambda *a: pj.pcl_loss(*a, reduction=reduction)  # noqa: E731
        per_anchor = naive_losses
    naive = {"mean": lambda *a: jnp.mean(per_anchor(*a)), "sum": lambda *a: jnp.sum(per_anchor(*a)),
             "none": per_anchor}[reduction]
    cot = jnp.asarray(np.random.default_rng(7).normal(size=10)) if reduction == "none" else jnp.asarray(1.7)
    (v_ours, g_ours), (v_naive, g_naive) = jax.jit(lambda *a: (_vjps(ours, a, cot), _vjps(naive, a, cot)))(*args)
    within(f"{loss} {reduction} loss", max_norm_error(v_ours, v_naive), 1e-13)
    for name, g, w in zip(("z1", "z2", "kappa1", "kappa2"), g_ours, g_naive):
        assert g.dtype == w.dtype and g.shape == w.shape
        within(f"{loss} {reduction} grad {name}", max_norm_error(g, w), 1e-12)


def test_the_gradient_matches_the_50_digit_oracle(within):
    oracle = pytest.importorskip("probcon_ref.testing.oracle")
    pytest.importorskip("mpmath")
    arrays = batch(8, n=3, d=4, top=50.0)
    w = np.random.default_rng(9).uniform(-1.0, 2.0, size=6)
    want = oracle.pcl(*arrays, weights=w)
    losses, pull = jax.vjp(lambda *a: pj.pcl_loss(*a, reduction="none"), *on_jax(arrays))
    grads = jax.jit(pull)(jnp.asarray(w))
    within("oracle per-anchor losses", max_norm_error(losses, want.losses), 1e-12)
    for name, g in zip(("z1", "z2", "kappa1", "kappa2"), grads):
        within(f"oracle grad {name}", max_norm_error(g, want.grads[name]), 1e-10)
    want_ntx = oracle.ntxent(*arrays[:2], temperature=0.25, weights="sum")
    got = jax.grad(lambda a, b: pj.ntxent_loss(a, b, temperature=0.25, reduction="sum"), argnums=(0, 1))(
        *on_jax(arrays[:2]))
    for name, g in zip(("z1", "z2"), got):
        within(f"oracle ntxent grad {name}", max_norm_error(g, want_ntx.grads[name]), 1e-10)


def test_vmap_over_batches_equals_a_loop():
    stacks = [np.stack(parts) for parts in zip(*(batch(s, n=4, d=3) for s in range(3)))]
    grad = jax.grad(pj.pcl_loss, argnums=(0, 2))
    mapped = jax.jit(jax.vmap(grad))(*on_jax(stacks))
    for i in range(3):
        one = grad(*on_jax([s[i] for s in stacks]))
        for got, want in zip(mapped, one):
            assert max_norm_error(got[i], want) <= 1e-14


def test_half_precision_keeps_each_inputs_dtype():
    z1, z2, k1, k2 = (a.astype(jnp.bfloat16) for a in on_jax(batch(10, top=8.0)))
    k1 = k1.astype(jnp.float32)
    loss, grads = jax.jit(jax.value_and_grad(pj.pcl_loss, argnums=(0, 1, 2, 3)))(z1, z2, k1, k2)
    assert loss.dtype == jnp.float32  # promoted from bfloat16 and float32
    assert [g.dtype for g in grads] == [jnp.bfloat16, jnp.bfloat16, jnp.float32, jnp.bfloat16]
    want = pr.pcl_loss(*[np.asarray(a.astype(jnp.float32)).astype(np.float64) for a in (z1, z2, k1, k2)])
    assert abs(float(loss) - float(want)) <= 1e-5 * float(want)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_cotangent_propagates(bad):
    args = on_jax(batch(11))
    _, pull = jax.vjp(lambda *a: pj.pcl_loss(*a, reduction="none"), *args)
    cot = jnp.ones(12).at[3].set(bad)
    for g in pull(cot):  # eagerly, where a non-finite weight would be refused: NaN, no error
        assert np.all(np.isnan(np.asarray(g)))
    scaled = jax.grad(lambda *a: pj.pcl_loss(*a) * bad)(*args)
    assert not np.all(np.isfinite(np.asarray(scaled)))


def test_arguments_are_checked():
    z1, z2, k1, k2 = batch(12)
    assert np.isfinite(float(pj.pcl_loss(z1, z2, k1, k2)))  # NumPy arrays are converted
    with pytest.raises(TypeError, match="z1 must be a JAX array"):
        pj.pcl_loss(z1.tolist(), z2, k1, k2)
    assert float(pj.log_iv(0.5, 1.0)) == pytest.approx(math.log(math.sqrt(2 / math.pi) * math.sinh(1.0)), rel=1e-14)
    with pytest.raises(TypeError, match="x must be a JAX array"):
        pj.bessel_ratio(0.5, True)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        pj.ntxent_loss(z1, z2, block_size=0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        pj.ntxent_loss(z1, z2, temperature=-1.0)


def test_a_tiny_model_trains_under_jit():
    """A linear encoder with a confidence head, plain gradient descent, every step jit-compiled."""
    rng = np.random.default_rng(13)
    x = rng.normal(size=(32, 8)).astype(np.float32)
    noise = rng.uniform(0.05, 1.0, size=(32, 1)).astype(np.float32)
    view1 = jnp.asarray(x + noise * rng.normal(size=x.shape).astype(np.float32))
    view2 = jnp.asarray(x + noise * rng.normal(size=x.shape).astype(np.float32))
    params = {"w": jnp.asarray(0.3 * rng.normal(size=(8, 6)).astype(np.float32)),
              "v": jnp.zeros(8, jnp.float32), "b": jnp.asarray(1.0, jnp.float32)}

    def loss_fn(p):
        kappa = lambda v: jax.nn.softplus(v @ p["v"] + p["b"]) * 10.0  # noqa: E731
        return pj.pcl_loss(view1 @ p["w"], view2 @ p["w"], kappa(view1), kappa(view2))

    @jax.jit
    def step(p):
        loss, g = jax.value_and_grad(loss_fn)(p)
        return jax.tree.map(lambda a, b: a - 0.2 * b, p, g), loss

    first = None
    for _ in range(150):
        params, loss = step(params)
        first = float(loss) if first is None else first
    final = float(loss_fn(params))
    assert np.isfinite(final) and final < 0.6 * first, (first, final)


# ---------------------------------------------------------------------------------------
# The special functions' derivative rules
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("nu", [0.0, 0.5, 2.5, 63.0])
def test_derivative_rules_match_mpmath(nu, within):
    mp = pytest.importorskip("mpmath")
    xs = [1e-3, 0.7, 4.0, 30.0, 500.0]
    slope = jax.jit(jax.vmap(jax.grad(lambda x: pj.log_iv(nu, x))))(jnp.asarray(xs))
    d = int(2 * nu + 2)
    dlogc = jax.jit(jax.vmap(jax.grad(lambda k: pj.log_vmf_normalizer(d, k))))(jnp.asarray(xs))
    with mp.workdps(40):
        for x, s, c in zip(xs, np.asarray(slope), np.asarray(dlogc)):
            want = mp.diff(lambda t: mp.log(mp.besseli(nu, t)), x)
            within(f"d log I_{nu}({x})", abs(s - float(want)) / abs(float(want)), 4e-15)
            ratio = mp.besseli(d / 2, x) / mp.besseli(d / 2 - 1, x)
            within(f"d log C_{d}({x})", abs(c + float(ratio)) / float(ratio), 4e-15)
    at_zero = jax.grad(lambda x: pj.log_iv(nu, x))(jnp.asarray(0.0))
    assert float(at_zero) == (0.0 if nu == 0 else math.inf)


# ---------------------------------------------------------------------------------------
# validate with a JAX loss: gradients through jax.grad
# ---------------------------------------------------------------------------------------


def self_included(z1, z2, kappa1, kappa2):
    """A JAX PCL that forgets to exclude the anchor itself (an exact normaliser for any d)."""
    n, d = z1.shape
    z = jnp.concatenate([z1, z2])
    mu = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    kappa = jnp.concatenate([kappa1, kappa2])
    logits = pj.log_vmf_normalizer(d, kappa)[None, :] + kappa[None, :] * (mu @ mu.T)
    pos = (jnp.arange(2 * n) + n) % (2 * n)
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(2 * n), pos])


def test_validate_passes_a_correct_jax_loss_and_names_a_wrong_one():
    """``framework="jax"``, on a few cases of the battery (eager JAX compiles every operation
    for each new shape): the gradients come from ``jax.grad`` and the report says so."""
    from probcon_ref.testing import validate

    right = validate(pj.pcl_loss, framework="jax", cases=["random", "kappa-zero", "confident"],
                     target="probcon_ref.jax.pcl_loss")
    assert right.passed, right.to_text()
    assert {r.gradients for r in right.results} == {"autograd"}
    assert "framework jax" in right.to_text() and "gradients: autograd" in right.to_text()
    wrong = validate(self_included, framework="jax", cases=["random"], dtypes="float64")
    assert not wrong.passed and wrong.signatures == ["self-included"], wrong.to_text()
    assert wrong.target == "self_included"  # the wrapper keeps the function's name
    ntx = validate(lambda a, b, t: pj.ntxent_loss(a, b, temperature=t), loss="ntxent", framework="jax",
                   cases=["random"], dtypes="float64")
    assert ntx.passed, ntx.to_text()
    per_anchor = validate(functools.partial(pj.pcl_loss, reduction="none"), framework="jax",
                          reduction="none", cases=["random"], dtypes="float32")
    assert per_anchor.passed and per_anchor.results[0].gradients == "autograd", per_anchor.to_text()


def test_the_gradients_option_with_jax():
    """"returned" checks the gradients ``fn`` returns, "autograd" takes ``jax.grad`` even then,
    "none" checks the loss only; a JAX loss returning no gradients fails "returned"."""
    from probcon_ref.testing import validate

    def own(*args):
        return pr.pcl_loss_and_grad(*args)  # NumPy's gradients, returned; no rule for jax.grad

    returned = validate(own, framework="jax", gradients="returned", cases=["random"], dtypes="float64")
    assert returned.passed and returned.results[0].gradients == "returned", returned.to_text()
    by_grad = validate(pj.pcl_loss, framework="jax", gradients="autograd", cases=["random"], dtypes="float64")
    assert by_grad.passed and by_grad.results[0].gradients == "autograd", by_grad.to_text()
    loss_only = validate(pj.pcl_loss, framework="jax", gradients="none", cases=["random"], dtypes="float64")
    assert loss_only.passed and loss_only.results[0].gradients == "none"
    assert set(loss_only.results[0].errors) == {"loss"}
    missing = validate(pj.pcl_loss, framework="jax", gradients="returned", cases=["random"], dtypes="float64")
    assert missing.results[0].status == "error" and "returned no gradients" in missing.results[0].message


def test_the_wrapper_gives_numpy_arrays_in_jax_dtypes():
    candidate = jax_candidate(pj.pcl_loss)
    loss, grads = candidate(*batch(15))
    assert candidate.gradient_source == "jax.grad" and loss.dtype == np.float64 and len(grads) == 4
    assert all(isinstance(g, np.ndarray) and g.dtype == np.float64 for g in grads)
    loss32, grads32 = candidate(*batch(15, dtype="float32"))
    assert loss32.dtype == np.float32 and {g.dtype for g in grads32} == {np.dtype(np.float32)}
    own = jax_candidate(lambda *a: pr.pcl_loss_and_grad(*a), gradients="autograd")
    _, grads_by_jax = own(*batch(15))  # its own gradients ignored: jax.grad of its loss (no custom rule)
    assert own.gradient_source == "jax.grad"
    for a, b in zip(grads, grads_by_jax):
        assert max_norm_error(a, b) <= 1e-12


def test_the_floor_is_in_smallest_normals_for_jax():
    """XLA flushes subnormals (the test below): the confident float32 case, whose loss is
    subnormal in float32, is held to a floor of smallest normals for JAX, and the report's
    head says so; for NumPy the floor stays in subnormals."""
    from probcon_ref.testing import Convention, battery
    from probcon_ref.testing.measure import reference
    from probcon_ref.testing.runner import rounded_inputs

    case = next(c for c in battery("pcl") if c.name == "confident")
    floors = {}
    for fw in ("numpy", "jax"):
        conv = Convention(framework=fw)
        _, x = rounded_inputs(case, conv, "float32")
        floors[fw] = reference(x, case, conv, "float32").loss_floor
    tiny = np.finfo(np.float32)
    assert floors["jax"] / floors["numpy"] == pytest.approx(float(tiny.smallest_normal / tiny.smallest_subnormal))


def test_cli_validates_a_jax_file(tmp_path):
    import subprocess
    import sys

    (tmp_path / "mine.py").write_text(
        "import probcon_ref.jax as pj\n"
        "def right(z1, z2, k1, k2):\n"
        "    return pj.pcl_loss(z1, z2, k1, k2)\n"
        "def mean_positive(z1, z2, k1, k2):\n"
        "    return 2 * pj.pcl_loss(z1, z2, k1, k2)\n")
    for name, code, word in (("right", 0, "PASS"), ("mean_positive", 1, "FAIL")):
        proc = subprocess.run([sys.executable, "-m", "probcon_ref", "validate", f"mine.py:{name}", "--framework", "jax",
                               "--case", "random", "--dtype", "float64"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert proc.stdout.rstrip().endswith(word) and "gradients: autograd" in proc.stdout


def test_framework_jax_without_jax_names_what_is_missing(monkeypatch):
    import sys

    from probcon_ref.testing import validate

    monkeypatch.setitem(sys.modules, "probcon_ref.jax._validate", None)
    with pytest.raises(ImportError, match="framework='jax' needs JAX installed"):
        validate(pj.pcl_loss, framework="jax", cases=["random"])


def test_xla_flushes_subnormal_results_to_zero():
    """XLA on the CPU computes with subnormal numbers flushed to zero: where the loss itself is
    subnormal (the battery's "confident" case in float32) JAX returns 0, NumPy the subnormal."""
    from probcon_ref.testing import battery

    case = next(c for c in battery("pcl") if c.name == "confident")
    x = [case.inputs[k].astype(np.float32) for k in ("z1", "z2", "kappa1", "kappa2")]
    numpy_loss = float(pr.pcl_loss(*x))
    assert 0 < numpy_loss < np.finfo(np.float32).smallest_normal
    assert float(jax.jit(pr.pcl_loss)(*on_jax(x))) == 0.0
