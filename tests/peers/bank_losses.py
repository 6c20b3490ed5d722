"""PyTorch losses with extra candidates (a memory bank), in the calling convention of
``probcon-ref validate --extra-candidates``: ``pcl(z1, z2, kappa1, kappa2, extra_z, extra_kappa)``
and ``ntxent(z1, z2, temperature, extra_z)``.

``pcl`` and ``ntxent`` are correct, under plain autograd: the bank's directions join the
candidates after the batch's, the anchor's own entry is masked by index, and the loss comes
from the differences to the positive's logit (``broken_pcl._loss``, whose normaliser is
``broken_pcl.LogC``). Each of the others is correct but for one mistake that concerns the
bank alone, or one that ``broken_pcl`` holds without a bank.
"""

import math

import torch
import torch.nn.functional as F

from broken_pcl import LogC, _loss
from probcon_ref.special import log_vmf_normalizer


def _parts(z1, z2, extra_z, raw_bank=False):
    """N, the cosines (2N, 2N + M) of every anchor with every candidate, the mask of each
    anchor's own entry and the positives' columns."""
    n = z1.shape[0]
    mu = F.normalize(torch.cat([z1, z2]), dim=1)
    bank = extra_z if raw_bank else F.normalize(extra_z, dim=1)
    cos = mu @ torch.cat([mu, bank]).T
    eye = torch.zeros(cos.shape, dtype=torch.bool, device=cos.device)
    eye[:, : 2 * n] = torch.eye(2 * n, dtype=torch.bool, device=cos.device)
    targets = (torch.arange(2 * n, device=cos.device) + n) % (2 * n)
    return n, cos, eye, targets


def _pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa, raw_bank=False, bank_normaliser=True):
    n, cos, eye, targets = _parts(z1, z2, extra_z, raw_bank)
    kappa = torch.cat([kappa1, kappa2, extra_kappa])
    log_c = LogC.apply(z1.shape[1], kappa)
    if not bank_normaliser:
        log_c = torch.cat([log_c[: 2 * n], torch.zeros_like(log_c[2 * n:])])
    return log_c[None, :] + kappa[None, :] * cos, eye, targets


def pcl(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    return _loss(*_pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa))


def pcl_per_anchor(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    return _loss(*_pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa), reduction="none")


def pcl_ignores_bank(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """Takes the bank and leaves it out: the loss of the batch alone."""
    logits, eye, targets = _pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa)
    m = 2 * z1.shape[0]
    return _loss(logits[:, :m], eye[:, :m], targets)


def pcl_bank_without_normaliser(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """The bank's logits are kappa_j c_aj, without log C_d(kappa_j); the views' are right."""
    return _loss(*_pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa, bank_normaliser=False))


def pcl_raw_bank(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """Uses the bank's raw rows, not their directions."""
    return _loss(*_pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa, raw_bank=True))


def pcl_one_pair_is_zero(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """Returns 0 for a single pair, as the loss without a bank is."""
    loss = pcl(z1, z2, kappa1, kappa2, extra_z, extra_kappa)
    return loss * 0 if z1.shape[0] == 1 else loss


def pcl_self_included(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """Forgets to exclude the anchor itself from the candidates."""
    return _loss(*_pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa), mask=False)


def pcl_mean_over_pairs(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """Sums the 2N anchors' losses and divides by N: twice the mean."""
    return _loss(*_pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa), reduction="sum") / z1.shape[0]


def pcl_log_mean_exp(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """A log-mean-exp over the 2N - 1 + M candidates in place of the log-sum-exp."""
    logits, eye, targets = _pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa)
    return (_loss(logits, eye, targets, reduction="none") - math.log(logits.shape[1] - 1)).mean()


def pcl_detached_normaliser(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """log C_d of a detached copy of the concentrations: no gradient flows through it."""
    n, cos, eye, targets = _parts(z1, z2, extra_z)
    kappa = torch.cat([kappa1, kappa2, extra_kappa])
    return _loss(log_vmf_normalizer(z1.shape[1], kappa.detach())[None, :] + kappa[None, :] * cos, eye, targets)


def pcl_textbook(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """``F.cross_entropy`` of the logits, bank included: the textbook -F_ap + logsumexp_b F_ab."""
    logits, eye, targets = _pcl_logits(z1, z2, kappa1, kappa2, extra_z, extra_kappa)
    return F.cross_entropy(logits.masked_fill(eye, float("-inf")), targets)


def pcl_plus_one_for_one_pair(z1, z2, kappa1, kappa2, extra_z, extra_kappa):
    """Right but for a single pair, where it is 1 too large."""
    loss = pcl(z1, z2, kappa1, kappa2, extra_z, extra_kappa)
    return loss + 1 if z1.shape[0] == 1 else loss


def _ntxent(z1, z2, temperature, extra_z, raw_bank=False, bank=True):
    n, cos, eye, targets = _parts(z1, z2, extra_z, raw_bank)
    columns = cos.shape[1] if bank else 2 * n
    return _loss(cos[:, :columns] / temperature, eye[:, :columns], targets)


def ntxent(z1, z2, temperature, extra_z):
    return _ntxent(z1, z2, temperature, extra_z)


def ntxent_ignores_bank(z1, z2, temperature, extra_z):
    """Takes the bank and leaves it out."""
    return _ntxent(z1, z2, temperature, extra_z, bank=False)


def ntxent_raw_bank(z1, z2, temperature, extra_z):
    """Uses the bank's raw rows, not their directions."""
    return _ntxent(z1, z2, temperature, extra_z, raw_bank=True)
