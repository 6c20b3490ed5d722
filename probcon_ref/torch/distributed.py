"""The exact PCL and NT-Xent over all processes of a ``torch.distributed`` group.

Each process holds its own pairs ``(z1, z2, kappa1, kappa2)``; the loss is the one of the
concatenated batch, every anchor against the candidates of every process:

1. each process normalises its views and all-gathers directions and concentrations;
2. it computes the losses of its local anchors against all candidates, block by block,
   with the same functions as the single-process reference
   (:func:`probcon_ref.loss.contrast_anchors`);
3. the column sums of the softmax weights, which hold the gradient with respect to *other*
   processes' views, are all-reduced, and each process keeps the rows of its own views.

Pairs never straddle processes, so each anchor's positive is local. The returned loss is
the global one (mean over all 2N anchors by default), identical on every process, and the
gradient with respect to the local inputs is its exact gradient. ``DistributedDataParallel``
averages parameter gradients over processes, so under DDP multiply the loss by the world
size to train on the gradient of the global loss.

Processes may hold different numbers of pairs. This module is PyTorch-specific glue; the
mathematics is the array-API reference.
"""

from __future__ import annotations

import array_api_compat
import torch
import torch.distributed as dist

from .. import _inputs
from ..loss import (
    Accumulated,
    contrast_anchors,
    direction_grad,
    elementwise_steps,
    embedding_grad,
    kappa_grad,
    ntxent_concentrations,
    pcl_concentrations,
    unit_directions,
)

__all__ = ["pcl_loss", "ntxent_loss", "pcl_loss_and_grad", "ntxent_loss_and_grad"]


def _all_gather_rows(t: torch.Tensor, counts: list[int], group) -> torch.Tensor:
    """Concatenate every process's rows of ``t`` (row counts may differ), in rank order."""
    width = max(counts)
    padded = torch.zeros((width, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([p[:c] for p, c in zip(parts, counts)], dim=0)


def _row_counts(local: int, device, group) -> list[int]:
    size = torch.tensor([local], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    return [int(s.item()) for s in sizes]


def _global_loss_and_grad(batch: _inputs.Batch, kappa_local, temperature, group, block_size):
    xp = batch.xp
    n = batch.n
    counts = _row_counts(2 * n, batch.z.device, group)
    total = sum(counts)
    rank = dist.get_rank(group)
    offset = sum(counts[:rank])

    mu, norm = unit_directions(xp, batch.z)
    if kappa_local is None:
        conc_local = ntxent_concentrations(xp, temperature, batch.z)
    else:
        conc_local = pcl_concentrations(xp, kappa_local, batch.d)
    mu_all = _all_gather_rows(mu, counts, group)
    scale_all = _all_gather_rows(conc_local.scale, counts, group)
    bias_all = None if conc_local.bias is None else _all_gather_rows(conc_local.bias, counts, group)
    conc_all = type(conc_local)(scale_all, bias_all)

    weights = batch.weights * (2 * n) / total if batch.reduction == "mean" else batch.weights
    out = contrast_anchors(xp, mu, offset, mu_all, conc_all, weights, with_grad=True, block_size=block_size)

    loss = torch.sum(weights * out.losses)
    dist.all_reduce(loss, group=group)
    col_part, col_sum = out.acc.col_part, out.acc.col_sum
    dist.all_reduce(col_part, group=group)
    dist.all_reduce(col_sum, group=group)
    acc = Accumulated(out.acc.row_part, col_part[offset:offset + 2 * n], col_sum[offset:offset + 2 * n])
    g_z = embedding_grad(xp, direction_grad(xp, acc, out.w_pos, conc_local, mu, n), mu, norm)
    g_kappa = None
    if kappa_local is not None:
        mean_length = elementwise_steps(xp).mean_resultant_length(batch.d, kappa_local)
        g_kappa = kappa_grad(xp, acc, out.w_pos, out.c_pos, mu, mean_length, n)
    return loss, g_z, g_kappa


def _check_group(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialised: call torch.distributed.init_process_group first")
    return group


def pcl_loss_and_grad(z1, z2, kappa1, kappa2, *, reduction: str = "mean", group=None, block_size=None):
    """Global PCL over the group and its gradient with respect to this process's inputs.

    Returns ``(loss, PCLGrads)`` like :func:`probcon_ref.pcl_loss_and_grad`; ``reduction``
    is ``"mean"`` (over all 2N anchors of all processes) or ``"sum"``.
    """
    from ..loss import PCLGrads

    _check_group(group)
    batch = _inputs.pcl_batch(z1, z2, kappa1, kappa2, reduction, None, allow_none=False)
    loss, g_z, g_k = _global_loss_and_grad(batch, batch.kappa, None, group, block_size)
    n = batch.n
    grads = _inputs.grads_to_input_dtypes(batch, (g_z[:n], g_z[n:], g_k[:n], g_k[n:]))
    return _inputs.finish_loss(batch, loss), PCLGrads(*grads)


def ntxent_loss_and_grad(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", group=None,
                         block_size=None):
    """Global NT-Xent over the group and its gradient with respect to this process's views."""
    from ..loss import NTXentGrads

    _check_group(group)
    batch = _inputs.ntxent_batch(z1, z2, temperature, reduction, None, allow_none=False)
    loss, g_z, _ = _global_loss_and_grad(batch, None, batch.temperature, group, block_size)
    n = batch.n
    return _inputs.finish_loss(batch, loss), NTXentGrads(*_inputs.grads_to_input_dtypes(batch, (g_z[:n], g_z[n:])))


class _GlobalLoss(torch.autograd.Function):
    """Forward: the global loss; backward: the analytic gradient, scaled by ``grad_output``."""

    @staticmethod
    def forward(ctx, compute, *inputs):
        with torch.no_grad():
            loss, grads = compute(*[t.detach() for t in inputs])
        ctx.save_for_backward(*grads)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        return (None, *(g * grad_output for g in ctx.saved_tensors))


def pcl_loss(z1, z2, kappa1, kappa2, *, reduction: str = "mean", group=None, block_size=None):
    """Differentiable global PCL (``torch.autograd``); see the module docstring for DDP."""
    def compute(a, b, c, d):
        return pcl_loss_and_grad(a, b, c, d, reduction=reduction, group=group, block_size=block_size)

    _require_torch(z1)
    return _GlobalLoss.apply(compute, z1, z2, kappa1, kappa2)


def ntxent_loss(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", group=None, block_size=None):
    """Differentiable global NT-Xent (``torch.autograd``)."""
    def compute(a, b):
        return ntxent_loss_and_grad(a, b, temperature=temperature, reduction=reduction, group=group,
                                    block_size=block_size)

    _require_torch(z1)
    return _GlobalLoss.apply(compute, z1, z2)


def _require_torch(z):
    if not array_api_compat.is_torch_array(z):
        raise TypeError(f"z1 must be a torch.Tensor for the distributed loss, got {type(z).__name__}")
