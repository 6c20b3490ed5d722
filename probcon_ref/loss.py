"""The probabilistic contrastive loss and NT-Xent, with their analytic gradients (SPEC sections 3-4).

Read top to bottom, this file follows the derivation: directions, cosines, logits, the
per-anchor loss computed from differences, the softmax, the residual weights ``W``, and the
chain rule back through the concentrations, the cosines and the normalisation of the raw
embeddings. Every function is written once against the array API standard; the input rules
of SPEC section 7 are enforced by :mod:`probcon_ref._inputs` before any of it runs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from . import _arrays, _inputs
from .special import log_vmf_normalizer_working, mean_resultant_length_working

__all__ = [
    "PCLGrads",
    "NTXentGrads",
    "pcl_loss",
    "pcl_loss_and_grad",
    "ntxent_loss",
    "ntxent_loss_and_grad",
]


class PCLGrads(NamedTuple):
    """Gradients of the reduced PCL with respect to each input, in that input's dtype."""

    z1: object
    z2: object
    kappa1: object
    kappa2: object


class NTXentGrads(NamedTuple):
    """Gradients of the reduced NT-Xent loss with respect to each view."""

    z1: object
    z2: object


# ---------------------------------------------------------------------------------------
# Forward: from raw embeddings to per-anchor losses
# ---------------------------------------------------------------------------------------


def unit_directions(xp, z):
    """``mu_a = z_a / ||z_a||`` and ``||z_a||`` :eq:`eq-direction`.

    Rows are first divided by their largest magnitude, so that norms from 1e-30 to 1e30
    neither underflow nor overflow when squared.
    """
    scale = xp.max(xp.abs(z), axis=1, keepdims=True)
    y = z / scale
    length = xp.sqrt(xp.sum(y * y, axis=1, keepdims=True))
    return y / length, scale * length


def cosines(xp, mu):
    """``c_ab = mu_a . mu_b`` for all pairs of views :eq:`eq-cosine`."""
    return mu @ xp.matrix_transpose(mu)


def positive_index(xp, n: int, like):
    """``p(a) = (a + N) mod 2N``, the index of each anchor's positive :eq:`eq-positive`."""
    a = xp.arange(2 * n, device=_arrays.device_of(like))
    return (a + n) % (2 * n)


def exclude_diagonal(xp, logits):
    """Set ``F_aa = -inf``: an anchor is never its own candidate :eq:`eq-loss`."""
    m = logits.shape[0]
    idx = xp.arange(m, device=_arrays.device_of(logits))
    diagonal = idx[:, None] == idx[None, :]
    return xp.where(diagonal, _arrays.const(xp, -math.inf, logits), logits)


def pcl_logits(xp, cos, kappa, d: int):
    """``F_ab = log C_d(kappa_b) + kappa_b c_ab``, diagonal excluded :eq:`eq-pcl-logits`."""
    log_c = log_vmf_normalizer_working(xp, d, kappa)
    return exclude_diagonal(xp, log_c[None, :] + kappa[None, :] * cos)


def ntxent_logits(xp, cos, temperature: float):
    """``F_ab = c_ab / tau``, diagonal excluded :eq:`eq-ntxent-logits`."""
    return exclude_diagonal(xp, cos / temperature)


def positive_logits(xp, logits, n: int):
    """``F_{a,p(a)}`` for every anchor, shape (2N, 1)."""
    p = positive_index(xp, n, logits)
    return xp.take_along_axis(logits, p[:, None], axis=1)


class AnchorTerms(NamedTuple):
    """What the forward pass keeps per anchor for the loss and the gradient.

    ``shifted[a, b] = exp(delta_ab - m_a)`` with ``delta_ab = F_ab - F_{a,p(a)}`` and
    ``m_a = max_b delta_ab``; ``is_max`` marks the (first) maximising candidate, whose
    shifted term is exactly 1; ``rest[a]`` is the sum of the other shifted terms.
    """

    m: object
    shifted: object
    is_max: object
    rest: object


def anchor_terms(xp, logits, n: int) -> AnchorTerms:
    """Differences to the positive, shifted by their maximum :eq:`eq-loss-stable`."""
    delta = logits - positive_logits(xp, logits, n)
    m = xp.max(delta, axis=1, keepdims=True)
    shifted = xp.exp(delta - m)
    cols = xp.arange(logits.shape[1], device=_arrays.device_of(logits))
    is_max = cols[None, :] == xp.argmax(delta, axis=1)[:, None]
    zero = _arrays.const(xp, 0.0, logits)
    rest = xp.sum(xp.where(is_max, zero, shifted), axis=1, keepdims=True)
    return AnchorTerms(m, shifted, is_max, rest)


def per_anchor_loss(xp, terms: AnchorTerms):
    """``loss_a = m_a + log1p(sum_{b != a, b != argmax} exp(delta_ab - m_a))`` :eq:`eq-loss-stable`.

    Equal to ``-F_{a,p(a)} + log sum_{b != a} exp(F_ab)`` :eq:`eq-loss`, without subtracting
    two nearly equal numbers when the positive dominates.
    """
    return (terms.m + xp.log1p(terms.rest))[:, 0]


# ---------------------------------------------------------------------------------------
# Backward: the analytic gradient
# ---------------------------------------------------------------------------------------


def softmax_over_candidates(xp, terms: AnchorTerms):
    """``P_ab = exp(F_ab) / sum_{b' != a} exp(F_ab')`` :eq:`eq-softmax`."""
    return terms.shifted / (1 + terms.rest)


def residual_weights(xp, probs, weights, n: int):
    """``W_ab = w_a (P_ab - Y_ab)``, with the positive's entry from the others :eq:`eq-residual`.

    ``W_{a,p(a)} = -w_a sum_{b not in {a, p(a)}} P_ab`` :eq:`eq-residual-positive`: this avoids
    ``P_ap - 1``, which cancels when the positive is confidently matched.
    """
    p = positive_index(xp, n, probs)
    cols = xp.arange(probs.shape[1], device=_arrays.device_of(probs))
    is_positive = cols[None, :] == p[:, None]
    zero = _arrays.const(xp, 0.0, probs)
    others = xp.where(is_positive, zero, probs)
    w = weights[:, None]
    return xp.where(is_positive, -w * xp.sum(others, axis=1, keepdims=True), w * others)


def pcl_cosine_grad(xp, resid, kappa):
    """``G_ab = dL/dc_ab = W_ab kappa_b`` :eq:`eq-grad-cos`."""
    return resid * kappa[None, :]


def ntxent_cosine_grad(xp, resid, temperature: float):
    """``G_ab = dL/dc_ab = W_ab / tau`` :eq:`eq-grad-cos`."""
    return resid / temperature


def kappa_grad(xp, resid, cos, mean_length):
    """``dL/dkappa_b = sum_{a != b} W_ab (c_ab - A_d(kappa_b))`` :eq:`eq-grad-kappa`.

    ``W_bb = 0``, so the diagonal adds nothing.
    """
    return xp.sum(resid * (cos - mean_length[None, :]), axis=0)


def direction_grad(xp, cos_grad, mu):
    """``dL/dmu_a = sum_b (G_ab + G_ba) mu_b`` :eq:`eq-grad-mu`."""
    return (cos_grad + xp.matrix_transpose(cos_grad)) @ mu


def embedding_grad(xp, mu_grad, mu, norm):
    """``dL/dz_a = (I - mu_a mu_a^T) dL/dmu_a / ||z_a||`` :eq:`eq-grad-z`."""
    radial = xp.sum(mu * mu_grad, axis=1, keepdims=True)
    return (mu_grad - radial * mu) / norm


# ---------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------


def _forward(xp, batch: _inputs.Batch, logits_of):
    mu, norm = unit_directions(xp, batch.z)
    cos = cosines(xp, mu)
    logits = logits_of(cos)
    terms = anchor_terms(xp, logits, batch.n)
    return mu, norm, cos, terms


def _split(xp, a, n: int):
    return a[:n, ...], a[n:, ...]


def pcl_loss(z1, z2, kappa1, kappa2, *, reduction: str = "mean"):
    """The probabilistic contrastive loss :eq:`eq-loss`, :eq:`eq-pcl-logits`.

    Parameters
    ----------
    z1, z2 : array, shape (N, d)
        Raw embeddings of the two views (any non-zero norm; only directions matter).
    kappa1, kappa2 : array, shape (N,)
        Concentrations (confidences) ``>= 0`` of the views.
    reduction : {"mean", "sum", "none"}
        Mean or sum over the 2N anchors, or the per-anchor losses (view 1 first).

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
    batch = _inputs.pcl_batch(z1, z2, kappa1, kappa2, reduction, None, allow_none=True)
    xp = batch.xp
    _, _, _, terms = _forward(xp, batch, lambda cos: pcl_logits(xp, cos, batch.kappa, batch.d))
    return _inputs.finish_loss(batch, per_anchor_loss(xp, terms))


def pcl_loss_and_grad(z1, z2, kappa1, kappa2, *, reduction: str = "mean", weights=None):
    """The PCL and its analytic gradient :eq:`eq-residual` - :eq:`eq-grad-z`.

    Parameters
    ----------
    z1, z2, kappa1, kappa2 :
        As in :func:`pcl_loss`.
    reduction : {"mean", "sum"}
        Weight ``1/(2N)`` or 1 per anchor. Ignored when ``weights`` is given.
    weights : array, shape (2N,), optional
        Per-anchor weights ``w_a``: the loss is ``sum_a w_a loss_a``.

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
    batch = _inputs.pcl_batch(z1, z2, kappa1, kappa2, reduction, weights, allow_none=False)
    xp = batch.xp
    mu, norm, cos, terms = _forward(xp, batch, lambda c: pcl_logits(xp, c, batch.kappa, batch.d))
    resid = residual_weights(xp, softmax_over_candidates(xp, terms), batch.weights, batch.n)
    mean_length = mean_resultant_length_working(xp, batch.d, batch.kappa)
    g_kappa = kappa_grad(xp, resid, cos, mean_length)
    g_z = embedding_grad(xp, direction_grad(xp, pcl_cosine_grad(xp, resid, batch.kappa), mu), mu, norm)
    loss = per_anchor_loss(xp, terms)
    g_z1, g_z2 = _split(xp, g_z, batch.n)
    g_k1, g_k2 = _split(xp, g_kappa, batch.n)
    grads = PCLGrads(*_inputs.grads_to_input_dtypes(batch, (g_z1, g_z2, g_k1, g_k2)))
    return _inputs.finish_loss(batch, loss), grads


def ntxent_loss(z1, z2, *, temperature: float = 0.5, reduction: str = "mean"):
    """NT-Xent (InfoNCE with cosine similarity and temperature ``tau``) :eq:`eq-ntxent-logits`.

    The deterministic special case of the PCL: every ``kappa = 1/tau``.

    Examples
    --------
    >>> import numpy as np
    >>> from probcon_ref import ntxent_loss
    >>> z = np.eye(2, 3)
    >>> float(ntxent_loss(z, z, reduction="sum"))  # N = 1: one candidate, the positive
    0.0
    """
    batch = _inputs.ntxent_batch(z1, z2, temperature, reduction, None, allow_none=True)
    xp = batch.xp
    _, _, _, terms = _forward(xp, batch, lambda cos: ntxent_logits(xp, cos, batch.temperature))
    return _inputs.finish_loss(batch, per_anchor_loss(xp, terms))


def ntxent_loss_and_grad(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", weights=None):
    """NT-Xent and its analytic gradient with respect to both views :eq:`eq-grad-cos`.

    Returns ``(loss, NTXentGrads(z1, z2))``; ``reduction`` and ``weights`` as in
    :func:`pcl_loss_and_grad`.
    """
    batch = _inputs.ntxent_batch(z1, z2, temperature, reduction, weights, allow_none=False)
    xp = batch.xp
    mu, norm, _, terms = _forward(xp, batch, lambda c: ntxent_logits(xp, c, batch.temperature))
    resid = residual_weights(xp, softmax_over_candidates(xp, terms), batch.weights, batch.n)
    g_z = embedding_grad(xp, direction_grad(xp, ntxent_cosine_grad(xp, resid, batch.temperature), mu), mu, norm)
    loss = per_anchor_loss(xp, terms)
    grads = NTXentGrads(*_inputs.grads_to_input_dtypes(batch, _split(xp, g_z, batch.n)))
    return _inputs.finish_loss(batch, loss), grads
