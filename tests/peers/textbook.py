"""The two textbook forms that the contract, section 4 calls wrong, each in an otherwise correct
implementation (NumPy, in the inputs' dtype, returning ``(loss, grads)``).

* ``textbook_pcl``, ``textbook_ntxent``: the per-anchor loss as ``-F_ap + logsumexp_b F_ab``.
  Both terms are of the size of the logits, so their difference keeps only the logits'
  absolute rounding: a confidently matched positive whose loss is 1e-46 comes out as 0.
  The gradients are the reference's.
* ``positive_weight_pcl``, ``positive_weight_ntxent``: the loss is the reference's, the
  gradient uses ``W_ab = w_a (P_ab - Y_ab)`` with the positive's weight ``w_a (P_ap - 1)``,
  which cancels when ``P_ap`` is within rounding of 1 and ruins every gradient that flows
  through the positive.
* ``float64_output``: the reference evaluated in float64 whatever the inputs' dtype, so that
  float32 inputs get a float64 loss and float64 gradients.

Everything else (cosines of the normalised views, logits ``log C_d(kappa_b) + kappa_b c_ab``
or ``c_ab / tau``, the diagonal excluded with -inf, the chain rule of the contract, section 4) is
written plainly, as an independent implementation would.
"""

import numpy as np

import probcon_ref
from probcon_ref.special import bessel_ratio, log_vmf_normalizer


def _parts(z1, z2, scale, bias):
    """Directions, cosines, logits ``bias_b + scale_b c_ab`` (diagonal -inf) and positives."""
    n = z1.shape[0]
    z = np.concatenate([z1, z2])
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    mu = z / norm
    cos = mu @ mu.T
    logits = bias[None, :] + scale[None, :] * cos
    np.fill_diagonal(logits, -np.inf)
    pos = (np.arange(2 * n) + n) % (2 * n)
    return n, mu, norm, cos, logits, pos


def _pcl_scale_bias(z1, kappa1, kappa2):
    kappa = np.concatenate([kappa1, kappa2])
    return kappa, np.asarray(log_vmf_normalizer(z1.shape[1], kappa), dtype=z1.dtype)


def _ntxent_scale_bias(z1, temperature):
    scale = np.full(2 * z1.shape[0], 1.0 / temperature, dtype=z1.dtype)
    return scale, np.zeros_like(scale)


def _textbook_losses(logits, pos):
    """``-F_ap + logsumexp_b F_ab``, the log-sum-exp shifted by the row maximum."""
    rows = np.arange(logits.shape[0])
    m = np.max(logits, axis=1)
    lse = m + np.log(np.sum(np.exp(logits - m[:, None]), axis=1))
    return lse - logits[rows, pos]


def textbook_pcl(z1, z2, kappa1, kappa2):
    """PCL with the loss of every anchor computed as ``-F_ap + logsumexp_b F_ab``."""
    scale, bias = _pcl_scale_bias(z1, kappa1, kappa2)
    _, _, _, _, logits, pos = _parts(z1, z2, scale, bias)
    _, grads = probcon_ref.pcl_loss_and_grad(z1, z2, kappa1, kappa2)
    return np.mean(_textbook_losses(logits, pos)), grads


def textbook_ntxent(z1, z2, temperature):
    """NT-Xent with the loss of every anchor computed as ``-F_ap + logsumexp_b F_ab``."""
    scale, bias = _ntxent_scale_bias(z1, temperature)
    _, _, _, _, logits, pos = _parts(z1, z2, scale, bias)
    _, grads = probcon_ref.ntxent_loss_and_grad(z1, z2, temperature=temperature)
    return np.mean(_textbook_losses(logits, pos)), grads


def _gradient(z1, z2, scale, bias):
    """The gradient of the mean loss by the contract, section 4, with ``W_ap = w (P_ap - 1)``."""
    n, mu, norm, cos, logits, pos = _parts(z1, z2, scale, bias)
    e = np.exp(logits - np.max(logits, axis=1, keepdims=True))
    p = e / np.sum(e, axis=1, keepdims=True)
    y = np.zeros_like(p)
    y[np.arange(2 * n), pos] = 1
    w = (p - y) / (2 * n)  # the positive's entry: w (P_ap - 1)
    g = w * scale[None, :]
    g_mu = (g + g.T) @ mu
    g_z = (g_mu - np.sum(g_mu * mu, axis=1, keepdims=True) * mu) / norm
    return n, w, cos, g_z


def positive_weight_pcl(z1, z2, kappa1, kappa2):
    """PCL whose gradient takes the positive's weight as ``w (P_ap - 1)``."""
    loss = probcon_ref.pcl_loss(z1, z2, kappa1, kappa2)
    scale, bias = _pcl_scale_bias(z1, kappa1, kappa2)
    n, w, cos, g_z = _gradient(z1, z2, scale, bias)
    length = np.asarray(bessel_ratio(z1.shape[1] / 2 - 1, scale), dtype=z1.dtype)
    g_kappa = np.sum(w * (cos - length[None, :]), axis=0)
    return loss, (g_z[:n], g_z[n:], g_kappa[:n], g_kappa[n:])


def positive_weight_ntxent(z1, z2, temperature):
    """NT-Xent whose gradient takes the positive's weight as ``w (P_ap - 1)``."""
    loss = probcon_ref.ntxent_loss(z1, z2, temperature=temperature)
    scale, bias = _ntxent_scale_bias(z1, temperature)
    n, _, _, g_z = _gradient(z1, z2, scale, bias)
    return loss, (g_z[:n], g_z[n:])


def float64_output(z1, z2, kappa1, kappa2):
    """The reference, evaluated in float64 whatever the inputs' dtype."""
    return probcon_ref.pcl_loss_and_grad(*(np.asarray(a, dtype=np.float64) for a in (z1, z2, kappa1, kappa2)))
