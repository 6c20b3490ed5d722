"""Derivative rules for the special functions under JAX: the exact identities, as ``custom_jvp``.

``d/dx log I_nu(x) = I_{nu+1}(x)/I_nu(x) + nu/x`` and ``d/dkappa log C_d(kappa) = -A_d(kappa)``:
each derivative is the Bessel ratio of :func:`probcon_ref.special.bessel_ratio`, accurate to
its own size, rather than JAX's differentiation of the series, the recurrence and Debye's
expansion, whose branches it would follow term by term.
"""

from __future__ import annotations

import functools

import jax

from .. import special

__all__ = ["log_iv", "log_vmf_normalizer"]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def log_iv(nu: float, x):
    """No equation of its own: :func:`probcon_ref.special.log_iv` with its derivative rule."""
    return special.log_iv(nu, x)


@log_iv.defjvp
def _log_iv_jvp(nu: float, primals, tangents):
    """``(log I_nu(x), (A + nu/x) t)``: at ``x = 0`` the slope is 0 for ``nu = 0``, ``+inf`` above.

    No equation of its own: the identity ``I_nu' = I_{nu+1} + (nu/x) I_nu`` (DLMF 10.29.2).
    """
    (x,), (t,) = primals, tangents
    slope = special.bessel_ratio(nu, x)
    if nu > 0:
        slope = slope + nu / x
    return log_iv(nu, x), (slope * t).astype(x.dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def log_vmf_normalizer(d: int, kappa):
    """No equation of its own: :func:`probcon_ref.special.log_vmf_normalizer` with its derivative rule."""
    return special.log_vmf_normalizer(d, kappa)


@log_vmf_normalizer.defjvp
def _log_vmf_normalizer_jvp(d: int, primals, tangents):
    """``(log C_d(kappa), -A_d(kappa) t)``.

    No equation of its own: with ``nu = d/2 - 1``, ``log C_d = nu log kappa - (d/2) log 2 pi - log I_nu``
    has the slope ``nu/kappa - (A_d + nu/kappa) = -A_d``.
    """
    (kappa,), (t,) = primals, tangents
    return log_vmf_normalizer(d, kappa), (-special.bessel_ratio(d / 2 - 1, kappa) * t).astype(kappa.dtype)
