"""A naive PyTorch PCL of the kind commonly written: the vMF normaliser comes from SciPy.

``log C_d(kappa) = nu log kappa - (d/2) log(2 pi) - (log ive(nu, kappa) + kappa)``, with
``scipy.special.ive`` evaluated on the host (``.detach().cpu().numpy()``) inside a custom
autograd function whose backward uses the Bessel recurrence, as hyperspherical VAE code
does (s-vae-pytorch's ``Ive``). The loss is ``F.cross_entropy`` over the logits with the
diagonal masked. It is correct wherever ``ive`` is representable; the contract, section 5 predicts
where it is not: ``ive`` underflows to 0 for large order and small kappa (and far earlier in
float32), and ``nu log kappa - log ive`` is NaN at kappa = 0.
"""

import math

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F


class Ive(torch.autograd.Function):
    """ive(nu, x) = I_nu(x) exp(-x), evaluated by SciPy on the CPU."""

    @staticmethod
    def forward(ctx, nu, x):
        ctx.nu = nu
        ctx.save_for_backward(x)
        out = scipy.special.ive(nu, x.detach().cpu().numpy())
        return torch.from_numpy(np.asarray(out)).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        nu = ctx.nu
        z = x.detach().cpu().numpy()
        # d/dx ive(nu, x) = ive(nu - 1, x) - ive(nu, x) (nu + x) / x
        dx = scipy.special.ive(nu - 1, z) - scipy.special.ive(nu, z) * (nu + z) / z
        return None, grad * torch.from_numpy(np.asarray(dx)).to(device=x.device, dtype=x.dtype)


def log_vmf_normalizer(d, kappa):
    nu = d / 2 - 1
    return nu * torch.log(kappa) - (d / 2) * math.log(2 * math.pi) - (torch.log(Ive.apply(nu, kappa)) + kappa)


def pcl_loss(z1, z2, kappa1, kappa2):
    n, d = z1.shape
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    kappa = torch.cat([kappa1, kappa2])
    logits = log_vmf_normalizer(d, kappa)[None, :] + kappa[None, :] * (z @ z.T)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, targets)
