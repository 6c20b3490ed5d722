"""probcon_ref: the reference implementation of the probabilistic contrastive loss.

Li, Xu & Hooi, "Probabilistic Contrastive Loss for Self-Supervised Learning",
arXiv:2112.01642. One implementation, written against the Python array API standard,
runs on NumPy, PyTorch (CPU and CUDA), CuPy and any other conforming library.

The four functions below are the public face, as array-api-extra's delegation layer is:
each checks its arguments once (:mod:`probcon_ref._inputs`, one host synchronisation),
chooses once which elementwise steps run (:mod:`probcon_ref._dispatch`), and calls the
mathematics, :mod:`probcon_ref.loss` (the contract, section :ref:`3 <contract-loss>`) and :mod:`probcon_ref.gradient`
(section 4), with both as arguments. ``*_loss_and_grad(..., weights=w)`` is the
vector-Jacobian product of the per-anchor losses with the cotangent ``w``.
"""

from __future__ import annotations

from . import _dispatch, _inputs, gradient, loss, special
from .cupy import use_fused_kernels
from .loss import NTXentGrads, PCLGrads

__version__ = "0.1.0"

__all__ = [
    "special",
    "pcl_loss",
    "pcl_loss_and_grad",
    "ntxent_loss",
    "ntxent_loss_and_grad",
    "PCLGrads",
    "NTXentGrads",
    "use_fused_kernels",
    "__version__",
]


def _split(a, n: int):
    return a[:n, ...], a[n:, ...]


def pcl_loss(z1, z2, kappa1, kappa2, *, reduction: str = "mean", block_size: int | None = None):
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
        Anchors processed at a time; peak extra memory is O(block_size x 2N). By default
        blocks hold about 2**24 matrix entries (one block up to 2N = 4096).

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
    """
    block_size = loss.check_block_size(block_size)
    batch = _inputs.pcl_batch(z1, z2, kappa1, kappa2, reduction, None, allow_none=True)
    xp, steps = batch.xp, _dispatch.elementwise_steps(batch.xp)
    conc = loss.pcl_concentrations(xp, batch.kappa, batch.d, steps)
    return _inputs.finish(batch, loss.contrast(xp, batch, conc, steps, with_grad=False, block_size=block_size)[2].losses)


def pcl_loss_and_grad(z1, z2, kappa1, kappa2, *, reduction: str = "mean", weights=None,
                      block_size: int | None = None):
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
    batch = _inputs.pcl_batch(z1, z2, kappa1, kappa2, reduction, weights, allow_none=False)
    xp, n, steps = batch.xp, batch.n, _dispatch.elementwise_steps(batch.xp)
    conc = loss.pcl_concentrations(xp, batch.kappa, batch.d, steps)
    mu, norm, out = loss.contrast(xp, batch, conc, steps, with_grad=True, block_size=block_size)
    mean_length = steps.mean_resultant_length(batch.d, batch.kappa)
    g_kappa = gradient.kappa_grad(xp, out.sums, out.w_pos, out.c_pos, mu, mean_length, out.pos)
    g_z = gradient.embedding_grad(xp, gradient.direction_grad(xp, out.sums, out.w_pos, conc.scale, mu, out.pos),
                                  mu, norm)
    value, grads = _inputs.finish(batch, out.losses, (*_split(g_z, n), *_split(g_kappa, n)))
    return value, PCLGrads(*grads)


def ntxent_loss(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", block_size: int | None = None):
    """NT-Xent (InfoNCE with cosine similarity and temperature ``tau``) :eq:`eq-ntxent-logits`.

    The deterministic special case of the PCL: every ``kappa = 1/tau``.

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref import ntxent_loss
    >>> z = np.eye(1, 3)
    >>> float(ntxent_loss(z, z, reduction="sum"))  # N = 1: one candidate, the positive
    0.0
    """
    block_size = loss.check_block_size(block_size)
    batch = _inputs.ntxent_batch(z1, z2, temperature, reduction, None, allow_none=True)
    xp, steps = batch.xp, _dispatch.elementwise_steps(batch.xp)
    conc = loss.ntxent_concentrations(xp, batch.temperature, batch.z)
    return _inputs.finish(batch, loss.contrast(xp, batch, conc, steps, with_grad=False, block_size=block_size)[2].losses)


def ntxent_loss_and_grad(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", weights=None,
                         block_size: int | None = None):
    """NT-Xent and its analytic gradient with respect to both views :eq:`eq-grad-cos`.

    Returns ``(loss, NTXentGrads(z1, z2))``; ``reduction``, ``weights`` and ``block_size``
    as in :func:`pcl_loss_and_grad`.
    """
    block_size = loss.check_block_size(block_size)
    batch = _inputs.ntxent_batch(z1, z2, temperature, reduction, weights, allow_none=False)
    xp, n, steps = batch.xp, batch.n, _dispatch.elementwise_steps(batch.xp)
    conc = loss.ntxent_concentrations(xp, batch.temperature, batch.z)
    mu, norm, out = loss.contrast(xp, batch, conc, steps, with_grad=True, block_size=block_size)
    g_z = gradient.embedding_grad(xp, gradient.direction_grad(xp, out.sums, out.w_pos, conc.scale, mu, out.pos),
                                  mu, norm)
    value, grads = _inputs.finish(batch, out.losses, _split(g_z, n))
    return value, NTXentGrads(*grads)
