"""A JAX loss in the calling convention of :func:`probcon_ref.testing.validate`.

``validate`` hands the callable arrays and takes back the loss, or the loss and its
gradients (PyTorch's are taken from autograd, through the returned tensor). JAX has no
gradient attached to an array: it differentiates functions. :func:`jax_candidate` wraps the
user's JAX loss into a callable that takes the battery's NumPy arrays, calls the loss on JAX
arrays of the same dtype (float64 ones inside ``jax.enable_x64``), and returns the loss and, when
the loss returns none of its own, the gradients of its sum through ``jax.grad``, as NumPy
arrays in the dtypes JAX produced.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["jax_candidate", "GRADIENT_SOURCES"]

#: ``gradients`` values and what the wrapped callable does with them: take the gradients the
#: loss returns (``"returned"``), compute them through ``jax.grad`` (``"autograd"``), either
#: (``"auto"``: returned ones when there are, else ``jax.grad``) or none (``"none"``).
GRADIENT_SOURCES = ("auto", "autograd", "returned", "none")


def _host(value):
    """A NumPy copy in the dtype JAX produced (no equation: plumbing)."""
    return np.asarray(jax.device_get(value))


def _returns_gradients(out) -> bool:
    return isinstance(out, (tuple, list)) and len(out) == 2 and not np.isscalar(out[1]) \
        and not hasattr(out[1], "dtype")


def _loss_of(out):
    return out[0] if _returns_gradients(out) else out


def jax_candidate(fn: Callable, *, loss: str = "pcl", gradients: str = "auto") -> Callable:
    """``fn``, a JAX loss, as a callable for ``validate``: NumPy arrays in, NumPy arrays out.

    No equation: plumbing. The wrapper is called as ``fn`` is: ``(z1, z2, kappa1, kappa2)``
    for ``loss="pcl"``, ``(z1, z2, temperature)`` or ``(z1, z2)`` for ``"ntxent"``, then the
    extra candidates if ``validate`` passes them; the first four (or two) arguments are
    differentiated. The others are constants: a NumPy array among them (``extra_z``,
    ``extra_kappa``) is handed to ``fn`` as a JAX array of its dtype and never differentiated.
    It returns ``loss`` or ``(loss, grads)``, the
    gradients of ``sum(loss)`` in the order of the arguments (what PyTorch's autograd gives
    ``validate`` for a per-anchor loss too). After each call its attribute
    ``gradient_source`` says where the gradients came from: ``"returned"`` (by ``fn``),
    ``"jax.grad"`` or ``"none"``.
    """
    if gradients not in GRADIENT_SOURCES:
        raise ValueError(f"gradients must be one of {GRADIENT_SOURCES}, got {gradients!r}")
    count = {"pcl": 4, "ntxent": 2}[loss]

    def candidate(*args):
        arrays, rest = args[:count], args[count:]
        wide = any(np.asarray(a).dtype == np.float64 for a in arrays)
        with jax.enable_x64(True) if wide else contextlib.nullcontext():
            inputs = [jnp.asarray(a) for a in arrays]
            rest = [jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in rest]
            out = fn(*inputs, *rest)
            if _returns_gradients(out) and gradients in ("auto", "returned"):
                candidate.gradient_source = "returned"
                value, grads = out
                return _host(value), [_host(g) for g in grads]
            if gradients in ("none", "returned"):
                candidate.gradient_source = "none"
                return _host(_loss_of(out))
            total = lambda *xs: jnp.sum(_loss_of(fn(*xs, *rest)))  # noqa: E731
            grads = jax.grad(total, argnums=tuple(range(count)))(*inputs)
            candidate.gradient_source = "jax.grad"
            return _host(_loss_of(out)), [_host(g) for g in grads]

    candidate.__qualname__ = getattr(fn, "__qualname__", "candidate")
    candidate.gradient_source = "none"
    return candidate
