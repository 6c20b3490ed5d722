"""A supervised contrastive loss in the form of SupContrast's ``SupConLoss`` (Khosla et al.,
2020), written here from its published definition; it is not on PyPI, so the peers page
validates this stand-in.

``SupConLoss(temperature, base_temperature)(features, labels=None)`` takes ``features`` of
shape (batch, views, dim), already normalised, and without labels treats the views of one
sample as its only positives: the unsupervised (SimCLR) mode. Each anchor's loss is minus
the mean over its positives of ``log softmax`` of the cosines over temperature, among every
other view, with the row maximum subtracted first; the mean over the anchors is multiplied
by ``temperature / base_temperature``, as the training code's loss is (0.07 by default).
"""

import torch


class SupConLoss(torch.nn.Module):
    def __init__(self, temperature=0.07, base_temperature=0.07):
        super().__init__()
        self.temperature = temperature
        self.base_temperature = base_temperature

    def forward(self, features, labels=None):
        batch, views = features.shape[:2]
        if labels is None:
            same = torch.eye(batch, dtype=features.dtype, device=features.device)
        else:
            labels = labels.reshape(-1, 1)
            same = (labels == labels.T).to(features.dtype)
        contrast = torch.cat(torch.unbind(features, dim=1), dim=0)  # (views * batch, dim)
        logits = contrast @ contrast.T / self.temperature
        logits = logits - logits.max(dim=1, keepdim=True).values.detach()
        not_self = 1 - torch.eye(views * batch, dtype=features.dtype, device=features.device)
        positives = same.repeat(views, views) * not_self
        log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(dim=1, keepdim=True))
        mean_log_prob_pos = (positives * log_prob).sum(dim=1) / positives.sum(dim=1)
        return -(self.temperature / self.base_temperature) * mean_log_prob_pos.mean()
