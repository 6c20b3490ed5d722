"""The benchmark's JAX section: the integration under ``jax.jit``, against optax and autodiff.

Every JAX case is jit-compiled and timed as value-and-gradient, after a warm-up, waiting for
the results (``jax.block_until_ready``):

* :func:`probcon_ref.jax.pcl_loss` and :func:`probcon_ref.jax.ntxent_loss` (the analytic VJP)
  against optax's NT-Xent (``optax.losses.ntxent``, when optax is installed) and against
  NT-Xent written in ``jax.numpy`` and differentiated by JAX (:func:`autodiff_ntxent`,
  normalise, one similarity matrix, the diagonal masked, log-softmax at the positive);
* the special functions (``log_iv`` and ``bessel_ratio`` together) jit-compiled against the
  same code run eagerly, op by op;
* the time to trace and to compile each jit-compiled function, measured once, ahead of its
  first call (``jax.jit(f).lower(...)`` and ``.compile()``).

Rows come back as dictionaries with the fields of :class:`probcon_ref.tools.bench.Ratio`.
"""

from __future__ import annotations

import time

import numpy as np

from .measure import inputs, interleaved_medians

__all__ = ["unavailable", "autodiff_ntxent", "jax_section"]

TEMPERATURE = 0.5


def unavailable() -> str | None:
    """Why the section cannot run here (JAX or probcon_ref.jax missing), or None."""
    try:
        from .. import jax as _  # noqa: F401
    except ImportError as exc:
        return f"JAX is not installed ({exc}; pip install jax)"
    return None


def optax_missing() -> str | None:
    """Why the optax rows cannot run here, or None."""
    try:
        import optax  # noqa: F401
    except ImportError:
        return "optax is not installed (pip install optax)"
    return None


def autodiff_ntxent(z1, z2, temperature: float = TEMPERATURE):
    """NT-Xent in ``jax.numpy`` for JAX to differentiate: ``logsumexp`` over the candidates
    less the positive's logit, mean over the 2N anchors."""
    import jax
    import jax.numpy as jnp

    n = z1.shape[0]
    z = jnp.concatenate([z1, z2])
    mu = z / jnp.linalg.norm(z, axis=1, keepdims=True)
    sim = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, mu @ mu.T / temperature)
    pos = (jnp.arange(2 * n) + n) % (2 * n)
    return jnp.mean(jax.nn.logsumexp(sim, axis=1) - sim[jnp.arange(2 * n), pos])


def _optax_ntxent(n: int):
    import jax.numpy as jnp
    import optax

    labels = jnp.concatenate([jnp.arange(n), jnp.arange(n)])
    return lambda z1, z2: optax.losses.ntxent(jnp.concatenate([z1, z2]), labels, TEMPERATURE)


def _loss_functions(n: int, with_optax: bool) -> dict:
    from .. import jax as pj

    out = {"jax pcl_loss (analytic VJP)": (pj.pcl_loss, 4),
           "jax ntxent_loss (analytic VJP)": (lambda a, b: pj.ntxent_loss(a, b, temperature=TEMPERATURE), 2),
           "jax.numpy NT-Xent (autodiff)": (autodiff_ntxent, 2)}
    if with_optax:
        out["optax.losses.ntxent (autodiff)"] = (_optax_ntxent(n), 2)
    return out


def compile_seconds(fn, *args) -> tuple[float, float]:
    """``(trace, compile)`` seconds of ``jax.jit(fn)`` for ``args``, before any call of it."""
    import jax

    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    lowered.compile()
    return t1 - t0, time.perf_counter() - t1


def _timed(fn, args):
    import jax

    compiled = jax.jit(fn)
    return lambda: jax.block_until_ready(compiled(*args))


def loss_rows(n2: int, d: int, dtype: str, repeats: int, with_optax: bool) -> tuple[list[dict], dict]:
    """The analytic-VJP losses against the autodiff NT-Xents, value and gradient, jit-compiled."""
    import jax
    import jax.numpy as jnp

    arrays = [jnp.asarray(a) for a in inputs(n2, d, dtype)]
    cases, compile_s = {}, {}
    for name, (loss, count) in _loss_functions(n2 // 2, with_optax).items():
        step = jax.value_and_grad(loss, argnums=tuple(range(count)))
        compile_s[name] = compile_seconds(step, *arrays[:count])
        cases[name] = _timed(step, arrays[:count])
    # optax's NT-Xent forms a (2N x 2N x d) array: timed on its own, so that the memory it
    # takes and frees does not slow the cases that run after it
    slow = {k: cases.pop(k) for k in list(cases) if k.startswith("optax")}
    times = interleaved_medians(cases, repeats, budget_s=60.0)
    times.update(interleaved_medians(slow, repeats, budget_s=60.0) if slow else {})
    rows = []
    for ours in [k for k in times if k.startswith("jax ")]:
        for other in [k for k in times if "autodiff" in k]:
            rows.append(dict(section="jax", backend="jax-cpu", dtype=dtype, n2=n2, d=d, ours=ours,
                             ours_ms=times[ours] * 1e3, other=other, other_ms=times[other] * 1e3))
    return rows, compile_s


def special_rows(size: int, orders, dtypes, repeats: int) -> tuple[list[dict], dict]:
    """``log_iv`` + ``bessel_ratio`` jit-compiled against the same functions run eagerly."""
    import jax
    import jax.numpy as jnp

    from .. import jax as pj

    rows, compile_s = [], {}
    for dtype in dtypes:
        x = jnp.asarray(np.random.default_rng(0).uniform(0.0, 500.0, size=size).astype(dtype))
        for nu in orders:
            pair = lambda v, nu=nu: (pj.log_iv(nu, v), pj.bessel_ratio(nu, v))  # noqa: E731
            compile_s[f"log_iv+bessel_ratio nu={nu} {dtype}"] = compile_seconds(pair, x)
            t = interleaved_medians({"jit": _timed(pair, (x,)),
                                     "eager": lambda pair=pair: jax.block_until_ready(pair(x))}, repeats)
            rows.append(dict(section="jax-special", backend="jax-cpu", dtype=dtype, n2=size, d=int(nu),
                             ours=f"log_iv+bessel_ratio jit (nu = {nu:g})", ours_ms=t["jit"] * 1e3,
                             other="the same, eager", other_ms=t["eager"] * 1e3))
    return rows, compile_s


def jax_section(n2: int, d: int, repeats: int, special_size: int) -> dict:
    """Every row of the section, the compile times, and what was left out (with the reason)."""
    from . import backends

    backends.ADAPTERS["jax"].module()  # float64 enabled, for the float64 special rows
    skipped = []
    missing = optax_missing()
    if missing:
        skipped.append(f"the optax rows of the JAX section, {missing}")
    rows, compile_loss = loss_rows(n2, d, "float32", repeats, missing is None)
    special, compile_special = special_rows(special_size, (2.5, 63.0), ("float32", "float64"), repeats)
    return {"rows": rows + special, "compile_s": {**compile_loss, **compile_special}, "skipped": skipped}


def print_section(result: dict) -> None:
    for name, (trace, compiled) in result["compile_s"].items():
        print(f"  jit of {name}: trace {trace:.2f} s, compile {compiled:.2f} s", flush=True)


def to_markdown(result: dict) -> str:
    """The compile times as a Markdown table (the rows go into the benchmark's main table)."""
    lines = ["| jit-compiled function | trace (s) | compile (s) |", "| --- | ---: | ---: |"]
    for name, (trace, compiled) in result["compile_s"].items():
        lines.append(f"| {name} | {trace:.2f} | {compiled:.2f} |")
    return "\n".join(lines) + "\n"
