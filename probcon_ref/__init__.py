"""probcon_ref: the reference implementation of the probabilistic contrastive loss.

Li, Xu & Hooi, "Probabilistic Contrastive Loss for Self-Supervised Learning",
arXiv:2112.01642. One implementation, written against the Python array API standard,
runs on NumPy, PyTorch (CPU and CUDA), CuPy and any other conforming library.

The four functions below are the public face, as array-api-extra's delegation layer is:
each checks its arguments once (:mod:`probcon_ref._inputs`, one host synchronisation),
chooses once which elementwise steps run (:mod:`probcon_ref._dispatch`), and calls the
mathematics, :mod:`probcon_ref.loss` (the contract, section :ref:`3 <contract-loss>`) and :mod:`probcon_ref.gradient`
(section 4), with both as arguments. ``*_loss_and_grad(..., weights=w)`` is the
vector-Jacobian product of the per-anchor losses with the cotangent ``w``. Every function
takes extra candidates (a memory bank or a queue: ``extra_z``, and ``extra_kappa`` for the
PCL) that join every anchor's denominator and receive no gradient :eq:`eq-extra-loss`.
"""

from __future__ import annotations

from . import _dispatch, _inputs, gradient, loss, special
from .cupy import use_fused_kernels
from .loss import NTXentGrads, NTXentTemperatureGrads, PCLGrads

__version__ = "0.1.0"

__all__ = [
    "special",
    "pcl_loss",
    "pcl_loss_and_grad",
    "ntxent_loss",
    "ntxent_loss_and_grad",
    "PCLGrads",
    "NTXentGrads",
    "NTXentTemperatureGrads",
    "use_fused_kernels",
    "__version__",
]


def _split(a, n: int):
    return a[:n, ...], a[n:, ...]


def _pcl_concentrations(batch, steps):
    """The concentrations of every candidate: the views', then the extra candidates'."""
    kappa = loss.candidate_rows(batch.xp, batch.kappa, batch.extra_kappa)
    return loss.pcl_concentrations(batch.xp, kappa, batch.d, steps)


def _ntxent_concentrations(batch):
    count = 2 * batch.n + (0 if batch.extra_z is None else batch.extra_z.shape[0])
    return loss.ntxent_concentrations(batch.xp, batch.temperature, batch.z, count)


def _batch_gradient(batch, conc, mu, norm, out):
    """``(the batch's column sums, dL/dz)``; the extra candidates' columns take no part."""
    xp, views = batch.xp, 2 * batch.n
    sums = gradient.candidate_columns(out.sums, 0, views)
    g_mu = gradient.direction_grad(xp, sums, out.w_pos, conc.scale[:views], mu, out.pos)
    return sums, gradient.embedding_grad(xp, g_mu, mu, norm)


def pcl_loss(z1, z2, kappa1, kappa2, *, reduction: str = "mean", block_size: int | None = None, extra_z=None,
             extra_kappa=None):
    """The probabilistic contrastive loss :eq:`eq-loss`, :eq:`eq-pcl-logits`.

    Parameters
    ----------
    z1, z2 : array, shape (N, d)
        Raw embeddings of the two views (any non-zero norm; only directions matter).
    kappa1, kappa2 : array, shape (N,)
        Concentrations (confidences) ``>= 0`` of the views.
    reduction : {"mean", "sum", "none"}
        Mean or sum over the 2N anchors, or the per-anchor losses (view 1 first)
        :eq:`eq-reduction`.
    block_size : int, optional
        Anchors processed at a time; peak extra memory is O(block_size x (2N + M)). By
        default blocks hold about 2**24 matrix entries (one block up to 2N + M = 4096).
    extra_z : array, shape (M, d), optional
        Raw embeddings (any non-zero norm) of M extra candidates, such as a memory bank of
        earlier batches' views: they join every anchor's denominator as candidates that
        are no anchor, and are held constant :eq:`eq-extra-logits` :eq:`eq-extra-loss`.
        M = 0 is the loss without them.
    extra_kappa : array, shape (M,)
        Their concentrations ``>= 0``; required exactly when ``extra_z`` is given.

    Returns
    -------
    array
        A 0-d array (or shape (2N,) for ``"none"``), in the inputs' namespace, device and
        (promoted) dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref import pcl_loss, ntxent_loss
    >>> rng = np.random.default_rng(0)
    >>> z1, z2 = rng.normal(size=(2, 8, 16))
    >>> k = np.full(8, 2.0)  # kappa = 1/tau everywhere gives NT-Xent(tau)
    >>> bool(np.isclose(pcl_loss(z1, z2, k, k), ntxent_loss(z1, z2, temperature=0.5), rtol=1e-14))
    True
    >>> bank, bank_kappa = rng.normal(size=(32, 16)), np.full(32, 2.0)  # 32 extra candidates
    >>> float(pcl_loss(z1, z2, k, k, extra_z=bank, extra_kappa=bank_kappa)) > float(pcl_loss(z1, z2, k, k))
    True
    """
    block_size = loss.check_block_size(block_size)
    batch = _inputs.pcl_batch(z1, z2, kappa1, kappa2, reduction, None, allow_none=True, extra_z=extra_z,
                              extra_kappa=extra_kappa)
    steps = _dispatch.elementwise_steps(batch.xp)
    out = loss.contrast(batch.xp, batch, _pcl_concentrations(batch, steps), steps, with_grad=False,
                        block_size=block_size)[-1]
    return _inputs.finish(batch, out.losses)


def pcl_loss_and_grad(z1, z2, kappa1, kappa2, *, reduction: str = "mean", weights=None,
                      block_size: int | None = None, extra_z=None, extra_kappa=None):
    """The PCL and its analytic gradient :eq:`eq-residual` - :eq:`eq-grad-z`.

    With ``weights=w`` this is the vector-Jacobian product of the per-anchor losses with the
    cotangent ``w``: the loss ``sum_a w_a loss_a`` and its gradient, computed by formula. A
    framework's backward pass is this call with the incoming gradient as ``w``
    (:mod:`probcon_ref.torch`).

    Parameters
    ----------
    z1, z2, kappa1, kappa2 :
        As in :func:`pcl_loss`.
    reduction : {"mean", "sum"}
        Weight ``1/(2N)`` or 1 per anchor. Ignored when ``weights`` is given.
    weights : array, shape (2N,), optional
        The cotangent: per-anchor weights ``w_a``, finite; the loss is ``sum_a w_a loss_a``.
    block_size : int, optional
        As in :func:`pcl_loss`.
    extra_z, extra_kappa : array, optional
        Extra candidates, as in :func:`pcl_loss`. They are constants: the gradient is the
        batch's only :eq:`eq-extra-grad`.

    Returns
    -------
    loss : array
        0-d, the reduced loss.
    grads : PCLGrads
        ``(z1, z2, kappa1, kappa2)`` gradients, each in its input's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref import pcl_loss_and_grad
    >>> rng = np.random.default_rng(1)
    >>> z1, z2 = rng.normal(size=(2, 4, 3))
    >>> loss, g = pcl_loss_and_grad(z1, z2, np.ones(4), np.ones(4))
    >>> g.z1.shape, g.kappa2.shape
    ((4, 3), (4,))
    """
    block_size = loss.check_block_size(block_size)
    batch = _inputs.pcl_batch(z1, z2, kappa1, kappa2, reduction, weights, allow_none=False, extra_z=extra_z,
                              extra_kappa=extra_kappa)
    xp, n, steps = batch.xp, batch.n, _dispatch.elementwise_steps(batch.xp)
    conc = _pcl_concentrations(batch, steps)
    mu, norm, _, out = loss.contrast(xp, batch, conc, steps, with_grad=True, block_size=block_size)
    sums, g_z = _batch_gradient(batch, conc, mu, norm, out)
    mean_length = steps.mean_resultant_length(batch.d, batch.kappa)
    g_kappa = gradient.kappa_grad(xp, sums, out.w_pos, out.c_pos, mu, mean_length, out.pos)
    value, grads = _inputs.finish(batch, out.losses, (*_split(g_z, n), *_split(g_kappa, n)))
    return value, PCLGrads(*grads)


def ntxent_loss(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", block_size: int | None = None,
                extra_z=None):
    """NT-Xent (InfoNCE with cosine similarity and temperature ``tau``) :eq:`eq-ntxent-logits`.

    The deterministic special case of the PCL: every ``kappa = 1/tau``. ``extra_z`` (shape
    (M, d), optional) are extra candidates, as in :func:`pcl_loss`, at the same temperature
    :eq:`eq-extra-logits`.

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref import ntxent_loss
    >>> z = np.eye(1, 3)
    >>> float(ntxent_loss(z, z, reduction="sum"))  # N = 1: one candidate, the positive
    0.0
    >>> float(ntxent_loss(z, z, extra_z=np.eye(1, 3, k=1), reduction="sum")) > 0  # unless there are extra ones
    True
    """
    block_size = loss.check_block_size(block_size)
    batch = _inputs.ntxent_batch(z1, z2, temperature, reduction, None, allow_none=True, extra_z=extra_z)
    steps = _dispatch.elementwise_steps(batch.xp)
    out = loss.contrast(batch.xp, batch, _ntxent_concentrations(batch), steps, with_grad=False,
                        block_size=block_size)[-1]
    return _inputs.finish(batch, out.losses)


def ntxent_loss_and_grad(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", weights=None,
                         block_size: int | None = None, extra_z=None, temperature_grad: bool = False):
    """NT-Xent and its analytic gradient with respect to both views :eq:`eq-grad-cos`, and to the
    temperature when asked :eq:`eq-grad-temperature`.

    Returns ``(loss, NTXentGrads(z1, z2))``, or with ``temperature_grad=True``
    ``(loss, NTXentTemperatureGrads(z1, z2, temperature))``, where ``temperature`` is
    ``dL/dtau``, 0-d, in the loss's dtype: what a learnable temperature needs. ``reduction``,
    ``weights`` (the cotangent, which weights ``dL/dtau`` too) and ``block_size`` as in
    :func:`pcl_loss_and_grad`, ``extra_z`` as in :func:`ntxent_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref import ntxent_loss, ntxent_loss_and_grad
    >>> rng = np.random.default_rng(2)
    >>> z1, z2 = rng.normal(size=(2, 6, 5))
    >>> loss, g = ntxent_loss_and_grad(z1, z2, temperature=0.2, temperature_grad=True)
    >>> step = 1e-6  # a central difference in tau agrees with g.temperature
    >>> fd = (ntxent_loss(z1, z2, temperature=0.2 + step) - ntxent_loss(z1, z2, temperature=0.2 - step)) / (2 * step)
    >>> bool(np.isclose(g.temperature, fd, rtol=1e-6))
    True
    """
    block_size = loss.check_block_size(block_size)
    batch = _inputs.ntxent_batch(z1, z2, temperature, reduction, weights, allow_none=False, extra_z=extra_z,
                                 temperature_grad=temperature_grad)
    xp, n, steps = batch.xp, batch.n, _dispatch.elementwise_steps(batch.xp)
    conc = _ntxent_concentrations(batch)
    mu, norm, candidates, out = loss.contrast(xp, batch, conc, steps, with_grad=True, block_size=block_size)
    g_z = _batch_gradient(batch, conc, mu, norm, out)[1]
    if not temperature_grad:
        value, grads = _inputs.finish(batch, out.losses, _split(g_z, n))
        return value, NTXentGrads(*grads)
    g_tau = gradient.temperature_grad(xp, out.sums, out.w_pos, out.c_pos, candidates, batch.temperature)
    value, grads = _inputs.finish(batch, out.losses, (*_split(g_z, n), g_tau))
    return value, NTXentTemperatureGrads(*grads)
