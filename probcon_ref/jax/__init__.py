"""JAX integration: the reference losses with their analytic gradient as the VJP, under ``jax.jit``.

JAX implements the array API standard natively, so the reference's mathematics runs on
``jax.numpy`` arrays unchanged, eagerly or traced. This package adds what JAX needs to
differentiate it by formula rather than through the forward pass:

* :func:`pcl_loss` and :func:`ntxent_loss` are ``jax.custom_vjp`` functions
  (:func:`probcon_ref.jax._vjp.analytic_loss`) whose backward is the vector-Jacobian
  product that :func:`probcon_ref.pcl_loss_and_grad` computes with ``weights`` as the
  cotangent (:eq:`eq-residual` - :eq:`eq-grad-z`). They work inside ``jax.jit``,
  ``jax.grad``, ``jax.value_and_grad`` and ``jax.vmap``, for every reduction;
  ``reduction="none"`` takes per-anchor cotangents.
* :func:`log_iv`, :func:`bessel_ratio`, :func:`log_vmf_normalizer` and
  :func:`inverse_bessel_ratio` are the reference's special functions, for any order, under
  ``jax.jit``; :func:`log_iv` and :func:`log_vmf_normalizer` carry the exact derivative rules
  ``d/dx log I_nu = I_{nu+1}/I_nu + nu/x`` and ``d/dkappa log C_d = -A_d``.
* Input rules (the contract, section :ref:`7 <contract-inputs>`). Eagerly, every rule raises as it does for the other
  libraries. Under tracing (``jax.jit``, ``jax.vmap``) the namespace, shape and dtype rules
  raise when the function is traced, but the values do not exist yet: the value rules
  (finite inputs, non-zero rows, kappa's range, finite cotangents) are skipped, and a
  value that breaks one gives NaN or infinity instead of an error. :func:`checked` turns
  them into ``jax.experimental.checkify`` checks that run with the compiled function.
* Order ``nu``, dimension ``d``, ``temperature``, ``reduction`` and ``block_size`` are
  static: Python numbers, fixed when the function is traced.
* XLA flushes subnormal numbers to zero on the CPU: a loss or gradient entry below the
  smallest normal number of its dtype comes back as 0.
* float64 needs ``jax.config.update("jax_enable_x64", True)``, as everywhere in JAX;
  float16 and bfloat16 are computed in float32 and returned in their own dtype.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> from probcon_ref.jax import pcl_loss
>>> z1, z2 = jax.random.normal(jax.random.key(0), (2, 8, 16))
>>> kappa = jnp.full(8, 10.0)
>>> step = jax.jit(jax.value_and_grad(pcl_loss, argnums=(0, 1, 2, 3)))
>>> loss, grads = step(z1, z2, kappa, kappa)
>>> grads[0].shape, grads[2].shape
((8, 16), (8,))
"""

from __future__ import annotations

try:
    import jax
except ImportError as exc:  # pragma: no cover - exercised only without JAX
    raise ImportError("probcon_ref.jax needs JAX: pip install jax") from exc

import numpy as np
from jax.experimental import checkify

from .. import _inputs, _rules, special
from .. import loss as _loss
from .. import ntxent_loss as _ntxent_loss, ntxent_loss_and_grad as _ntxent_loss_and_grad
from .. import pcl_loss as _pcl_loss, pcl_loss_and_grad as _pcl_loss_and_grad
from .._arrays import check_positive_scalar
from . import _special
from ._vjp import AnalyticSpec, analytic_loss

__all__ = ["pcl_loss", "ntxent_loss", "log_iv", "bessel_ratio", "log_vmf_normalizer", "inverse_bessel_ratio",
           "checked", "value_checks"]


def _jax_arrays(**named):
    """Each argument as a JAX array: NumPy arrays and Python numbers are converted, as JAX's
    own functions do; anything else that is not a ``jax.Array`` is a ``TypeError`` naming it."""
    out = []
    for name, a in named.items():
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            a = jax.numpy.asarray(float(a))
        elif isinstance(a, np.ndarray) and not isinstance(a, np.ma.MaskedArray):
            a = jax.numpy.asarray(a)
        if not isinstance(a, jax.Array):
            raise TypeError(f"{name} must be a JAX array (jax.Array), a NumPy array or a number, "
                            f"got {type(a).__name__}")
        out.append(a)
    return out


def _reduction(reduction) -> str:
    if reduction not in _inputs.REDUCTIONS:
        raise ValueError(f"reduction must be one of {_inputs.REDUCTIONS}, got {reduction!r}")
    return reduction


def _constants(**named):
    """The given extra candidates as JAX arrays behind ``jax.lax.stop_gradient`` (the loss holds
    them constant), and their names, for :class:`~probcon_ref.jax._vjp.AnalyticSpec`."""
    given = {name: a for name, a in named.items() if a is not None}
    return [jax.lax.stop_gradient(a) for a in _jax_arrays(**given)], tuple(given)


def pcl_loss(z1, z2, kappa1, kappa2, *, reduction: str = "mean", block_size: int | None = None, extra_z=None,
             extra_kappa=None):
    """The probabilistic contrastive loss, differentiable in JAX with its analytic gradient.

    Same mathematics, arguments and input rules as :func:`probcon_ref.pcl_loss`
    (:eq:`eq-loss`, :eq:`eq-pcl-logits`); its VJP is :func:`probcon_ref.pcl_loss_and_grad`
    with the cotangent as ``weights``.

    Parameters
    ----------
    z1, z2 : jax.Array, shape (N, d)
        Raw embeddings of the two views.
    kappa1, kappa2 : jax.Array, shape (N,)
        Concentrations ``>= 0``, for instance ``softplus`` of a confidence head.
    reduction : {"mean", "sum", "none"}
        Mean or sum over the 2N anchors, or the per-anchor losses (view 1 first).
    block_size : int, optional
        Anchors processed at a time, as in :func:`probcon_ref.pcl_loss`.
    extra_z, extra_kappa : jax.Array, optional
        Extra candidates (a memory bank), as in :func:`probcon_ref.pcl_loss`
        (:eq:`eq-extra-loss`): constants, behind ``jax.lax.stop_gradient``, so that no
        gradient flows to them.

    Returns
    -------
    jax.Array
        0-d (shape (2N,) for ``"none"``), in the inputs' promoted dtype.
    """
    args = _jax_arrays(z1=z1, z2=z2, kappa1=kappa1, kappa2=kappa2)
    constants, names = _constants(extra_z=extra_z, extra_kappa=extra_kappa)
    spec = AnalyticSpec(_pcl_loss, _pcl_loss_and_grad, _reduction(reduction),
                        (("block_size", _loss.check_block_size(block_size)),), names)
    return analytic_loss(spec, *args, *constants)


def ntxent_loss(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", block_size: int | None = None,
                extra_z=None):
    """NT-Xent with its analytic gradient as the VJP (:eq:`eq-ntxent-logits`); see :func:`pcl_loss`.

    The deterministic special case of the PCL with every ``kappa = 1/temperature``; the
    temperature is a Python number. ``extra_z``: extra candidates, constants, as in
    :func:`pcl_loss`.
    """
    args = _jax_arrays(z1=z1, z2=z2)
    constants, names = _constants(extra_z=extra_z)
    options = (("temperature", check_positive_scalar(temperature, "temperature")),
               ("block_size", _loss.check_block_size(block_size)))
    spec = AnalyticSpec(_ntxent_loss, _ntxent_loss_and_grad, _reduction(reduction), options, names)
    return analytic_loss(spec, *args, *constants)


def log_iv(nu, x):
    """``log I_nu(x)`` for any order ``nu >= 0``, under ``jax.jit``, with its exact derivative in ``x``.

    :func:`probcon_ref.special.log_iv` (:eq:`eq-debye`, :eq:`eq-bessel-series`,
    :eq:`eq-ratio-recurrence`); differentiating gives ``I_{nu+1}(x)/I_nu(x) + nu/x``, from
    :func:`probcon_ref.special.bessel_ratio`. ``nu`` is a Python number.
    """
    (x,) = _jax_arrays(x=x)
    return _special.log_iv(_inputs.order(nu), x)


def bessel_ratio(nu, x):
    """``I_{nu+1}(x) / I_nu(x)`` under ``jax.jit``: :func:`probcon_ref.special.bessel_ratio` (:eq:`eq-debye-ratio`).

    It has no derivative rule of its own: JAX differentiates the code.
    """
    (x,) = _jax_arrays(x=x)
    return special.bessel_ratio(nu, x)


def log_vmf_normalizer(d, kappa):
    """``log C_d(kappa)`` under ``jax.jit``, with the derivative ``-A_d(kappa)`` (:eq:`eq-vmf-normalizer`).

    :func:`probcon_ref.special.log_vmf_normalizer`; ``d`` is a Python integer.
    """
    (kappa,) = _jax_arrays(kappa=kappa)
    return _special.log_vmf_normalizer(_inputs.dimension(d), kappa)


def inverse_bessel_ratio(nu, rho, *, iterations: int | None = None):
    """The ``x`` with ``I_{nu+1}(x)/I_nu(x) = rho`` under ``jax.jit`` (:eq:`eq-optimal-kappa`).

    :func:`probcon_ref.special.inverse_bessel_ratio`; no derivative rule of its own.
    """
    (rho,) = _jax_arrays(rho=rho)
    return special.inverse_bessel_ratio(nu, rho, iterations=iterations)


def _check(holds, message: str) -> None:
    checkify.check(holds, message.replace("{", "{{").replace("}", "}}"))


def value_checks():
    """Within this block, value rules met under tracing become ``checkify.check`` calls.

    No equation: input rules. For use inside a function that ``jax.experimental.checkify.checkify``
    transforms (:func:`checked` does both); the block must be entered while that function is
    traced, that is, inside it.
    """
    return _rules.traced_rules(_check)


def checked(fn):
    """``fn`` with the value rules of the contract, section :ref:`7 <contract-inputs>` as ``jax.experimental.checkify`` checks.

    No equation: input rules. Returns ``checkify.checkify`` of ``fn`` run inside
    :func:`value_checks`: a function that returns ``(error, out)``, to be jit-compiled like
    ``fn``; ``error.throw()`` raises the first broken rule's message (and ``error.get()``
    returns it), after the computation. checkify traces ``fn`` even where it is not
    jit-compiled, so the rules are reported through ``error`` there too.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from probcon_ref.jax import checked, pcl_loss
    >>> z = jnp.ones((4, 3))
    >>> error, loss = jax.jit(checked(pcl_loss))(z, z, jnp.ones(4), -jnp.ones(4))
    >>> print(error.get())
    kappa2 must be non-negative; it contains a negative value or NaN (`check` failed)
    """

    def run(*args, **kwargs):
        with value_checks():
            return fn(*args, **kwargs)

    return checkify.checkify(run)

