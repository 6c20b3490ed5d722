"""NT-Xent from independent published packages, called in the project's convention.

Each function takes ``(z1, z2, temperature)`` (PyTorch tensors, view 1 and view 2 of N pairs)
and returns the mean over the 2N anchors of ``-log softmax`` of the positive among the other
2N - 1 embeddings, as :func:`probcon_ref.ntxent_loss` does.

* pytorch-metric-learning: ``SelfSupervisedLoss(NTXentLoss(temperature))(z1, z2)``. The
  wrapper stacks the views and labels pair ``i`` with ``i`` in both, so each of the 2N anchors
  has one positive (its other view) and the 2N - 2 embeddings of other pairs as negatives;
  the default ``MeanReducer`` averages the 2N positive-pair losses.
* info-nce-pytorch (package ``info_nce``): ``info_nce(query, positive_key, negative_keys,
  negative_mode="paired")`` is one direction with explicit negatives; the symmetric NT-Xent is
  the mean of the two directions, each anchor's negatives being the 2N - 2 embeddings of the
  other pairs. Its default call ``info_nce(z1, z2)`` is a different loss (one direction,
  candidates from the other view only).
* infonce (package ``infonce``): ``InfoNCE(temperature)(torch.cat([z1, z2]))`` is the SimCLR
  form directly.
"""

import torch


def pytorch_metric_learning(z1, z2, temperature):
    from pytorch_metric_learning.losses import NTXentLoss, SelfSupervisedLoss

    return SelfSupervisedLoss(NTXentLoss(temperature=temperature))(z1, z2)


def pytorch_metric_learning_default(z1, z2):
    """NTXentLoss with its default temperature (0.07)."""
    from pytorch_metric_learning.losses import NTXentLoss, SelfSupervisedLoss

    return SelfSupervisedLoss(NTXentLoss())(z1, z2)


def _other_pairs(n, device):
    """(N, N - 1) indices: for row i, every j != i."""
    idx = torch.arange(n, device=device)
    full = idx.repeat(n, 1)
    return full[full != idx[:, None]].reshape(n, n - 1)


def info_nce_pytorch(z1, z2, temperature):
    from info_nce import info_nce

    n = z1.shape[0]
    others = _other_pairs(n, z1.device)

    def one_direction(query, positive):
        negatives = torch.cat([query[others], positive[others]], dim=1)  # (N, 2N - 2, d)
        return info_nce(query, positive, negatives, temperature=temperature, negative_mode="paired")

    return (one_direction(z1, z2) + one_direction(z2, z1)) / 2


def info_nce_pytorch_default(z1, z2, temperature):
    """The package's default call: one direction, the other view's embeddings as candidates."""
    from info_nce import info_nce

    return info_nce(z1, z2, temperature=temperature)


def infonce(z1, z2, temperature):
    from infonce import InfoNCE

    return InfoNCE(temperature=temperature)(torch.cat([z1, z2]))
