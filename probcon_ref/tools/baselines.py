"""What people run today instead of this package: the baselines the benchmarks compare with.

* :func:`autograd_ntxent` - NT-Xent as the common PyTorch libraries write it: normalise, one
  similarity matrix, the diagonal masked, cross-entropy against the positive's index, and
  autograd for the backward pass (the structure of lightly's ``NTXentLoss`` and
  pytorch-metric-learning's ``NTXentLoss``; written here from that description).
* :func:`autograd_ntxent_with_queue` - the same with a queue of past directions (a memory
  bank, as in MoCo and lightly's ``memory_bank_size``) as extra negatives of every anchor.
* :func:`naive_pcl` - a probabilistic contrastive loss written the way vMF losses usually are:
  the normaliser ``log C_d(kappa)`` from SciPy's exponentially scaled ``ive`` on the host,
  wrapped in an autograd function. It round-trips through the CPU by design (that is the
  point of the comparison) and underflows where ``ive`` does (the contract, section :ref:`5 <contract-special>`).

None of them is used by the reference; they exist to be measured against.
"""

from __future__ import annotations

import math


def autograd_ntxent(z1, z2, temperature: float = 0.5):
    """NT-Xent by autograd: ``cross_entropy(mask_diag(mu mu^T / tau), p(a))``, mean over 2N."""
    import torch
    import torch.nn.functional as F

    n = z1.shape[0]
    mu = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = mu @ mu.T / temperature
    eye = torch.eye(2 * n, dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(eye, float("-inf"))
    target = (torch.arange(2 * n, device=sim.device) + n) % (2 * n)
    return F.cross_entropy(sim, target)


def autograd_ntxent_with_queue(z1, z2, queue, temperature: float = 0.5):
    """NT-Xent by autograd with a queue: every anchor's candidates are the batch's 2N directions
    (itself masked) and the M rows of ``queue``, unit directions held constant.

    ``cross_entropy(mu [mu; queue]^T / tau with the self column at -inf, p(a))``, mean over
    the 2N anchors: the loss of :func:`probcon_ref.ntxent_loss` with ``extra_z=queue``.
    """
    import torch
    import torch.nn.functional as F

    n = z1.shape[0]
    mu = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    candidates = torch.cat([mu, queue.detach()], dim=0)
    logits = mu @ candidates.T / temperature
    self_column = torch.eye(2 * n, candidates.shape[0], dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_column, float("-inf"))
    target = (torch.arange(2 * n, device=logits.device) + n) % (2 * n)
    return F.cross_entropy(logits, target)


def _scipy_log_vmf_normalizer(d: int, kappa_np):
    """``log C_d(kappa)`` from ``scipy.special.ive`` (NumPy input only) and its derivative ``-A_d``."""
    import numpy as np
    from scipy.special import ive

    nu = d / 2 - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        ive_nu = ive(nu, kappa_np)
        log_c = nu * np.log(kappa_np) - (d / 2) * math.log(2 * math.pi) - (np.log(ive_nu) + kappa_np)
        ratio = ive(nu + 1, kappa_np) / ive_nu
    return log_c, ratio


def naive_pcl(z1, z2, kappa1, kappa2):
    """The PCL with a SciPy ``ive`` normaliser on the host and autograd for the rest."""
    import torch
    import torch.nn.functional as F

    class _LogNormalizer(torch.autograd.Function):
        @staticmethod
        def forward(ctx, kappa, d):
            log_c, ratio = _scipy_log_vmf_normalizer(d, kappa.detach().cpu().numpy())
            ctx.save_for_backward(torch.as_tensor(ratio, device=kappa.device, dtype=kappa.dtype))
            return torch.as_tensor(log_c, device=kappa.device, dtype=kappa.dtype)

        @staticmethod
        def backward(ctx, grad):
            (ratio,) = ctx.saved_tensors
            return -grad * ratio, None

    n, d = z1.shape
    mu = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    kappa = torch.cat([kappa1, kappa2])
    logits = _LogNormalizer.apply(kappa, d)[None, :] + kappa[None, :] * (mu @ mu.T)
    eye = torch.eye(2 * n, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(eye, float("-inf"))
    target = (torch.arange(2 * n, device=logits.device) + n) % (2 * n)
    return F.cross_entropy(logits, target)
