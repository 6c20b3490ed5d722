"""PyTorch PCL and NT-Xent implementations, each correct but for one mistake of the kinds
people make when they write the loss from its definition.

Every function is the straightforward implementation of ``broken_pcl.correct`` (cosines of
the normalised views, logits ``F_ab``, the diagonal masked with -inf, each anchor's loss from
the differences to its positive's logit, autograd for the gradients) with one change to the
logits, the loss or the gradients, written from the mathematics of the mistake:

* the normaliser's dimension: ``log C`` with the power of kappa, the Bessel order, or both,
  taken for another dimension (``nu = d/2`` instead of ``d/2 - 1``, or the dimension off by
  one, ``d - 1``);
* the anchor's concentration or normaliser in place of the candidate's;
* a temperature applied on top of kappa (three ways), the two views' kappas multiplied;
* the loss times a constant;
* gradients returned with respect to the unit directions (NumPy, returned gradients), the
  normalisation's projection missing (the norm detached);
* ``exp`` of the logits without the row maximum subtracted (float32 overflow).

The normalisers are custom autograd functions whose values come from
``probcon_ref.special`` and whose derivative is the exact derivative of the value, so that
only the deliberate mistake differs from the reference.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

import probcon_ref
from probcon_ref.special import bessel_ratio, log_iv, log_vmf_normalizer

_LOG_2PI = math.log(2 * math.pi)


class _LogNormaliser(torch.autograd.Function):
    """``power log(k) - (d/2) log(2 pi) - log I_order(k)``; derivative ``(power - order)/k - A_order(k)``."""

    @staticmethod
    def forward(ctx, d, power, order, kappa):
        ctx.power, ctx.order = power, order
        ctx.save_for_backward(kappa)
        with torch.no_grad():
            k = kappa.detach()
            if power == order:  # log C of dimension 2 order + 2, shifted to keep the constant (d/2) log 2 pi
                return log_vmf_normalizer(int(round(2 * order + 2)), k) + (order + 1 - d / 2) * _LOG_2PI
            return power * torch.log(k) - (d / 2) * _LOG_2PI - log_iv(order, k)

    @staticmethod
    def backward(ctx, grad):
        (kappa,) = ctx.saved_tensors
        k = kappa.detach()
        slope = -bessel_ratio(ctx.order, k)
        if ctx.power != ctx.order:
            slope = slope + (ctx.power - ctx.order) / k
        return None, None, None, grad * slope


def log_c(d, kappa, power=None, order=None):
    """``log C_d(kappa)``, or with another power of kappa and another Bessel order."""
    nu = d / 2 - 1
    return _LogNormaliser.apply(d, nu if power is None else power, nu if order is None else order, kappa)


def _parts(z1, z2, kappa1, kappa2):
    n, d = z1.shape
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    kappa = torch.cat([kappa1, kappa2])
    return n, d, kappa, z @ z.T


def _loss(logits, n, reduction="mean"):
    """``-log softmax`` of the positive among the other 2N - 1, from the gaps to the positive."""
    eye = torch.eye(2 * n, dtype=torch.bool, device=logits.device)
    targets = (torch.arange(2 * n, device=logits.device) + n) % (2 * n)
    logits = logits.masked_fill(eye, float("-inf"))
    positive = torch.zeros_like(eye).scatter_(1, targets[:, None], True)
    gaps = (logits - logits.gather(1, targets[:, None])).masked_fill(positive, float("-inf"))
    m = torch.clamp(gaps.max(dim=1).values, min=0).detach()
    losses = m + torch.log1p(torch.exp(gaps - m[:, None]).sum(dim=1) + torch.expm1(-m))
    return losses.mean() if reduction == "mean" else losses


def _pcl(z1, z2, kappa1, kappa2, logits_of):
    n, d, kappa, cos = _parts(z1, z2, kappa1, kappa2)
    return _loss(logits_of(d, kappa, cos), n)


# --- the normaliser's dimension ---------------------------------------------------------

def normaliser_nu_plus_one(z1, z2, kappa1, kappa2):
    """nu = d/2 throughout: log C of dimension d + 2 (power and order both d/2)."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k, d / 2, d / 2)[None, :] + k[None, :] * c)


def normaliser_power_plus_one(z1, z2, kappa1, kappa2):
    """The power of kappa is d/2, the Bessel order d/2 - 1."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k, power=d / 2)[None, :] + k[None, :] * c)


def normaliser_order_plus_one(z1, z2, kappa1, kappa2):
    """The Bessel order is d/2, the power d/2 - 1."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k, order=d / 2)[None, :] + k[None, :] * c)


def normaliser_dimension_minus_one(z1, z2, kappa1, kappa2):
    """The sphere's dimension d - 1 taken for the ambient one: log C_{d-1} (nu = (d - 3)/2)."""
    def logits(d, k, c):
        nu = max((d - 1) / 2 - 1, 0.0)  # d = 2 has no d - 1 normaliser; order 0 there
        return log_c(d, k, nu, nu)[None, :] + k[None, :] * c
    return _pcl(z1, z2, kappa1, kappa2, logits)


def normaliser_power_minus_half(z1, z2, kappa1, kappa2):
    """The power of kappa is (d - 1)/2 - 1, the order right."""
    return _pcl(z1, z2, kappa1, kappa2,
                lambda d, k, c: log_c(d, k, power=(d - 1) / 2 - 1)[None, :] + k[None, :] * c)


# --- the anchor's in place of the candidate's ------------------------------------------

def anchor_kappa_and_normaliser(z1, z2, kappa1, kappa2):
    """F_ab = log C_d(kappa_a) + kappa_a c_ab: the anchor's density, not the candidate's."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k)[:, None] + k[:, None] * c)


def anchor_kappa_only(z1, z2, kappa1, kappa2):
    """F_ab = log C_d(kappa_b) + kappa_a c_ab: the candidate's normaliser, the anchor's concentration."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k)[None, :] + k[:, None] * c)


def anchor_normaliser_only(z1, z2, kappa1, kappa2):
    """F_ab = log C_d(kappa_a) + kappa_b c_ab: the anchor's normaliser (which cancels)."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k)[:, None] + k[None, :] * c)


# --- a temperature on top of kappa, products of kappas ---------------------------------

TAU = 0.1


def temperature_on_logits(z1, z2, kappa1, kappa2):
    """F_ab = (log C_d(kappa_b) + kappa_b c_ab) / tau, tau = 0.1."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: (log_c(d, k)[None, :] + k[None, :] * c) / TAU)


def temperature_on_cosine(z1, z2, kappa1, kappa2):
    """F_ab = log C_d(kappa_b) + kappa_b c_ab / tau, tau = 0.1."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k)[None, :] + k[None, :] * c / TAU)


def temperature_on_kappa(z1, z2, kappa1, kappa2):
    """The concentration kappa_b / tau, normaliser included, tau = 0.07."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k / 0.07)[None, :] + (k / 0.07)[None, :] * c)


def kappa_product(z1, z2, kappa1, kappa2):
    """F_ab = log C_d(kappa_b) + kappa_a kappa_b c_ab."""
    return _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k)[None, :] + (k[:, None] * k[None, :]) * c)


def kappa_product_normalised(z1, z2, kappa1, kappa2):
    """F_ab = log C_d(kappa_a kappa_b) + kappa_a kappa_b c_ab."""
    def logits(d, k, c):
        kk = k[:, None] * k[None, :]
        return log_c(d, kk.reshape(-1)).reshape(kk.shape) + kk * c
    return _pcl(z1, z2, kappa1, kappa2, logits)


# --- the loss scaled -------------------------------------------------------------------

def loss_scaled(z1, z2, kappa1, kappa2):
    """The right loss times 1.7."""
    return 1.7 * _pcl(z1, z2, kappa1, kappa2, lambda d, k, c: log_c(d, k)[None, :] + k[None, :] * c)


def ntxent_supcon_scale(z1, z2, temperature):
    """NT-Xent times temperature / 0.07, as SupCon's loss with its base temperature."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    return (temperature / 0.07) * _loss(z @ z.T / temperature, n)


# --- the gradients ---------------------------------------------------------------------

def no_projection(z1, z2, kappa1, kappa2):
    """The norm is detached in z / ||z||: autograd gives dL/dmu / ||z||, not projected."""
    n, d = z1.shape
    z = torch.cat([z1, z2])
    mu = z / torch.linalg.vector_norm(z, dim=1, keepdim=True).detach()
    kappa = torch.cat([kappa1, kappa2])
    return _loss(log_c(d, kappa)[None, :] + kappa[None, :] * (mu @ mu.T), n)


def direction_gradient(z1, z2, kappa1, kappa2):
    """NumPy, returns (loss, grads): the z gradients are dL/dmu, the gradients with respect to
    the unit directions, neither projected nor divided by ||z||."""
    loss, g = probcon_ref.pcl_loss_and_grad(z1, z2, kappa1, kappa2)
    n, d = z1.shape
    z = np.concatenate([z1, z2])
    mu = z / np.linalg.norm(z, axis=1, keepdims=True)
    kappa = np.concatenate([kappa1, kappa2])
    f = np.asarray(log_vmf_normalizer(d, kappa))[None, :] + kappa[None, :] * (mu @ mu.T)
    np.fill_diagonal(f, -np.inf)
    p = np.exp(f - f.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows, pos = np.arange(2 * n), (np.arange(2 * n) + n) % (2 * n)
    w = p / (2 * n)
    w[rows, pos] = 0.0
    w[rows, pos] = -np.sum(w, axis=1)
    big_g = w * kappa[None, :]
    g_mu = (big_g + big_g.T) @ mu
    return loss, (g_mu[:n].astype(z1.dtype), g_mu[n:].astype(z1.dtype), g.kappa1, g.kappa2)


# --- exp without the max shift ---------------------------------------------------------

def ntxent_unshifted(z1, z2, temperature):
    """NT-Xent from exp(c/tau) as it is (solo-learn's form): overflows float32 below tau ~ 0.0113."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = torch.exp(z @ z.T / temperature)
    idx = torch.arange(2 * n, device=z.device)
    pos_mask = torch.zeros_like(sim, dtype=torch.bool)
    pos_mask[idx, (idx + n) % (2 * n)] = True
    neg_mask = ~pos_mask & ~torch.eye(2 * n, dtype=torch.bool, device=z.device)
    pos = torch.sum(sim * pos_mask, 1)
    neg = torch.sum(sim * neg_mask, 1)
    return -torch.mean(torch.log(pos / (pos + neg)))


# --- a mistake no signature knows -------------------------------------------------------

def squared_cosine(z1, z2, kappa1, kappa2):
    """F_ab = log C_d(kappa_b) + kappa_b c_ab + (kappa_b / 4) c_ab^2: wrong nearly everywhere,
    in no regime in particular."""
    return _pcl(z1, z2, kappa1, kappa2,
                lambda d, k, c: log_c(d, k)[None, :] + k[None, :] * c + 0.25 * k[None, :] * c * c)


def ntxent_unshifted_fixed(z1, z2):
    """``ntxent_unshifted`` at a fixed temperature 0.01."""
    return ntxent_unshifted(z1, z2, 0.01)


def ntxent_supcon_scale_fixed(z1, z2):
    """``ntxent_supcon_scale`` at a fixed temperature 0.5."""
    return ntxent_supcon_scale(z1, z2, 0.5)
