"""PyTorch PCL implementations, each correct but for one deliberate mistake.

``correct`` is the straightforward implementation the others start from: cosines of the
normalised views, logits ``log C_d(kappa_b) + kappa_b c_ab``, the diagonal masked with -inf,
and the loss of each anchor from the differences to its positive's logit, as the contract, section 4
asks: ``loss_a = m_a + log1p(sum_{b != a, p(a)} exp(delta_ab - m_a) + expm1(-m_a))``, so that
autograd gives the positive its weight ``-w_a sum_{b != a, p(a)} P_ab`` too. (``F.cross_entropy``
is the textbook ``-F_ap + logsumexp_b F_ab``; ``textbook`` uses it.) The normaliser is a
custom autograd function: values from ``probcon_ref.special.log_vmf_normalizer``, derivative
``-A_d(kappa)`` from ``probcon_ref.special.bessel_ratio`` (so that only the deliberate
mistake differs from the reference).
"""

import math

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

from probcon_ref.special import bessel_ratio, log_vmf_normalizer


class LogC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, d, kappa):
        ctx.d = d
        ctx.save_for_backward(kappa)
        with torch.no_grad():
            return log_vmf_normalizer(d, kappa.detach())

    @staticmethod
    def backward(ctx, grad):
        (kappa,) = ctx.saved_tensors
        return None, -grad * bessel_ratio(ctx.d / 2 - 1, kappa.detach())


def _parts(z1, z2, kappa1, kappa2):
    n, d = z1.shape
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    kappa = torch.cat([kappa1, kappa2])
    cos = z @ z.T
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    targets = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return n, d, kappa, cos, eye, targets


def _loss(logits, eye, targets, mask=True, reduction="mean"):
    """``-log softmax`` of the positive, from the gaps ``delta_ab = F_ab - F_ap`` (stable)."""
    if mask:
        logits = logits.masked_fill(eye, float("-inf"))
    positive = torch.zeros_like(eye).scatter_(1, targets[:, None], True)
    gaps = (logits - logits.gather(1, targets[:, None])).masked_fill(positive, float("-inf"))
    m = torch.clamp(gaps.max(dim=1).values, min=0).detach()
    losses = m + torch.log1p(torch.exp(gaps - m[:, None]).sum(dim=1) + torch.expm1(-m))
    return {"mean": losses.mean, "sum": losses.sum, "none": lambda: losses}[reduction]()


def correct(z1, z2, kappa1, kappa2):
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    return _loss(LogC.apply(d, kappa)[None, :] + kappa[None, :] * cos, eye, targets)


def correct_per_anchor(z1, z2, kappa1, kappa2):
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    return _loss(LogC.apply(d, kappa)[None, :] + kappa[None, :] * cos, eye, targets, reduction="none")


def textbook(z1, z2, kappa1, kappa2):
    """The loss as ``F.cross_entropy``, that is ``-F_ap + logsumexp_b F_ab``, with autograd's
    gradient of it, whose positive's weight is ``w (P_ap - 1)``."""
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    logits = (LogC.apply(d, kappa)[None, :] + kappa[None, :] * cos).masked_fill(eye, float("-inf"))
    return F.cross_entropy(logits, targets)


def mean_over_pairs(z1, z2, kappa1, kappa2):
    """Sums the 2N anchors' losses and divides by N (the batch size): twice the mean."""
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    logits = LogC.apply(d, kappa)[None, :] + kappa[None, :] * cos
    return _loss(logits, eye, targets, reduction="sum") / n


def self_included(z1, z2, kappa1, kappa2):
    """Forgets to exclude the anchor itself from the candidates."""
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    return _loss(LogC.apply(d, kappa)[None, :] + kappa[None, :] * cos, eye, targets, mask=False)


def self_masked_by_value(z1, z2, kappa1, kappa2):
    """Recognises the anchor's own entry by its cosine of 1 instead of by its index."""
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    logits = LogC.apply(d, kappa)[None, :] + kappa[None, :] * cos
    return _loss(logits.masked_fill(cos > 1 - 1e-6, float("-inf")), eye, targets, mask=False)


def no_normaliser(z1, z2, kappa1, kappa2):
    """Drops log C_d(kappa_b) from the logits."""
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    return _loss(kappa[None, :] * cos, eye, targets)


def constant_in_positive_only(z1, z2, kappa1, kappa2):
    """Uses the full log C_d in the positive's logit but drops its constant -(d/2) log(2 pi)
    from the denominator's logits."""
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    full = LogC.apply(d, kappa)[None, :] + kappa[None, :] * cos
    cheap = (full + (d / 2) * math.log(2 * math.pi)).masked_fill(eye, float("-inf"))
    positive = full.gather(1, targets[:, None])[:, 0]
    return torch.logsumexp(cheap - positive[:, None], dim=1).mean()


def detached_normaliser(z1, z2, kappa1, kappa2):
    """Computes log C_d on a detached copy of kappa: no gradient flows through it."""
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    log_c = log_vmf_normalizer(d, kappa.detach())
    return _loss(log_c[None, :] + kappa[None, :] * cos, eye, targets)


def takes_log_kappa(z1, z2, log_kappa1, log_kappa2):
    """Correct, for the convention that the concentrations are passed as their logarithms."""
    return correct(z1, z2, torch.exp(log_kappa1), torch.exp(log_kappa2))


class Iv(torch.autograd.Function):
    """I_nu(x) by SciPy on the CPU (unscaled); derivative I_{nu+1}(x) + (nu / x) I_nu(x)."""

    @staticmethod
    def forward(ctx, nu, x):
        ctx.nu = nu
        ctx.save_for_backward(x)
        return torch.from_numpy(np.asarray(scipy.special.iv(nu, x.detach().cpu().numpy()))).to(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        z = x.detach().cpu().numpy()
        dx = scipy.special.iv(ctx.nu + 1, z) + ctx.nu / z * scipy.special.iv(ctx.nu, z)
        return None, grad * torch.from_numpy(np.asarray(dx)).to(x)


def unscaled_iv(z1, z2, kappa1, kappa2):
    """log C_d from log(scipy.special.iv(nu, kappa)): I_nu overflows above kappa ~ 710."""
    n, d, kappa, cos, eye, targets = _parts(z1, z2, kappa1, kappa2)
    nu = d / 2 - 1
    log_c = nu * torch.log(kappa) - (d / 2) * math.log(2 * math.pi) - torch.log(Iv.apply(nu, kappa))
    return _loss(log_c[None, :] + kappa[None, :] * cos, eye, targets)


def numpy_one_sided_gradient(z1, z2, kappa1, kappa2):
    """NumPy, returns (loss, grads); its z gradient keeps only sum_b G_ab mu_b (not G_ba)."""
    import probcon_ref

    loss, g = probcon_ref.pcl_loss_and_grad(z1, z2, kappa1, kappa2)
    n, d = z1.shape
    z = np.concatenate([z1, z2])
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    mu = z / norm
    kappa = np.concatenate([kappa1, kappa2])
    cos = mu @ mu.T
    f = np.asarray(log_vmf_normalizer(d, kappa))[None, :] + kappa[None, :] * cos
    np.fill_diagonal(f, -np.inf)
    p = np.exp(f - f.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows, pos = np.arange(2 * n), (np.arange(2 * n) + n) % (2 * n)
    w = p / (2 * n)
    w[rows, pos] = 0.0
    w[rows, pos] = -np.sum(w, axis=1)  # -w_a times the negatives' P, summed (the contract, section 4)
    big_g = w * kappa[None, :]
    g_mu = big_g @ mu
    g_z = (g_mu - np.sum(g_mu * mu, axis=1, keepdims=True) * mu) / norm
    return loss, (g_z[:n].astype(z1.dtype), g_z[n:].astype(z1.dtype), g.kappa1, g.kappa2)
