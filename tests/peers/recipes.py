"""The adapters of the peers page (docs/peers.md): what a user writes to validate a published
loss with ``probcon-ref validate FILE.py:FUNCTION --loss ntxent --framework torch``.

Each takes the two views and the temperature, as ``validate`` calls an NT-Xent, and returns
the peer's loss as a PyTorch tensor (``validate`` takes the gradients by autograd).
"""

import torch
import torch.nn.functional as F


def pml_ntxent(z1, z2, temperature):
    """pytorch-metric-learning: NTXentLoss through SelfSupervisedLoss, which labels pair i
    with i in both views."""
    from pytorch_metric_learning.losses import NTXentLoss, SelfSupervisedLoss

    return SelfSupervisedLoss(NTXentLoss(temperature=temperature))(z1, z2)


def pml_supcon(z1, z2, temperature):
    """pytorch-metric-learning's SupConLoss in unsupervised mode: the two views of pair i
    share the label i, so each anchor's one positive is its other view."""
    from pytorch_metric_learning.losses import SupConLoss

    labels = torch.arange(z1.shape[0], device=z1.device).repeat(2)
    return SupConLoss(temperature=temperature)(torch.cat([z1, z2]), labels)


def pml_supcon_mean(z1, z2, temperature):
    """The same with the mean over all 2N anchors (its default reducer averages the non-zero ones)."""
    from pytorch_metric_learning.losses import SupConLoss
    from pytorch_metric_learning.reducers import MeanReducer

    labels = torch.arange(z1.shape[0], device=z1.device).repeat(2)
    return SupConLoss(temperature=temperature, reducer=MeanReducer())(torch.cat([z1, z2]), labels)


def lightly_ntxent(z1, z2, temperature):
    """lightly: NTXentLoss takes the two views' outputs."""
    from lightly.loss import NTXentLoss

    return NTXentLoss(temperature=temperature)(z1, z2)


def supcon_as_trained(z1, z2, temperature):
    """A SupContrast-style SupConLoss without labels, as its training script builds it:
    features (batch, views, dim), normalised; the loss carries temperature / 0.07."""
    from supcon_style import SupConLoss  # a module beside this file

    features = torch.stack([F.normalize(z1, dim=1), F.normalize(z2, dim=1)], dim=1)
    return SupConLoss(temperature=temperature)(features)


def supcon_unscaled(z1, z2, temperature):
    """The same, with its scale temperature / base_temperature taken out."""
    return supcon_as_trained(z1, z2, temperature) * (0.07 / temperature)

