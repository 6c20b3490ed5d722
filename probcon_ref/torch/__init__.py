"""PyTorch integration: the reference losses as differentiable functions and ``nn.Module`` s.

:func:`pcl_loss` and :func:`ntxent_loss` go through one ``torch.autograd.Function``
(:func:`probcon_ref.torch._autograd.analytic_loss`) whose backward is the vector-Jacobian product that
:func:`probcon_ref.pcl_loss_and_grad` computes by formula (the contract, section :ref:`4 <contract-gradient>`,
:eq:`eq-residual` - :eq:`eq-grad-z`), not autograd through the forward pass: the
reference's mathematics runs unchanged on the tensors, on their device. The distributed
losses of :mod:`probcon_ref.torch.distributed` use the same function.

* The cotangent is the incoming gradient: for a reduced loss the gradient blocks computed
  in the forward pass are scaled by it; for ``reduction="none"`` it becomes the per-anchor
  weights ``w_a`` of :eq:`eq-residual` and the VJP is computed in the backward pass.
* It is differentiable once (``once_differentiable``): asking for a second derivative
  (``create_graph=True``, for instance a gradient penalty through the loss) raises an error
  instead of returning a gradient that silently carries no graph.
* Under ``torch.autocast``, and for float16/bfloat16 inputs generally, the computation runs
  in float32 with autocast switched off inside; the loss is returned in the inputs'
  (promoted) dtype and each gradient in its own input's dtype. The float32 gradient is
  scaled by the incoming gradient before it is rounded, so a gradient scaler for mixed
  precision keeps the small gradients it is there to keep.
* A half-precision loss beyond its dtype's range is an ``OverflowError`` (checked only for
  half-precision outputs, one host read), never a silent inf; half-precision *gradients* keep
  PyTorch's rule, under which an overflow is an inf that a gradient scaler detects and skips.
* A non-finite incoming gradient (NaN or infinity, what a gradient scaler's overflow check
  looks for) propagates, whatever the reduction, as it does through PyTorch's own losses:
  the input gradients come out non-finite and nothing raises. For ``reduction="none"`` the
  non-finite entries are replaced by zero before they become the weights ``w_a`` (which
  :func:`probcon_ref.pcl_loss_and_grad` rightly refuses when a caller passes them), and
  every gradient is then made NaN.
* Options are checked when a module is constructed, not at its first call:
  ``reduction``, ``temperature`` and ``block_size`` (``None`` or a positive integer of any
  integer type; ``bool`` is refused).

:class:`PCLLoss` and :class:`NTXentLoss` follow the calling convention of lightly and
pytorch-metric-learning: ``loss = criterion(out0, out1, kappa0, kappa1)``.

:mod:`probcon_ref.torch.distributed` computes the
exact loss over all processes of a ``torch.distributed`` group.

Examples
--------
>>> import torch
>>> from probcon_ref.torch import PCLLoss
>>> g = torch.Generator().manual_seed(0)
>>> out0 = torch.randn(8, 16, generator=g, requires_grad=True)
>>> out1 = (out0 + 0.1 * torch.randn(8, 16, generator=g)).detach()
>>> kappa = torch.full((8,), 10.0, requires_grad=True)
>>> loss = PCLLoss()(out0, out1, kappa, kappa)
>>> loss.backward()
>>> out0.grad.shape, kappa.grad.shape
(torch.Size([8, 16]), torch.Size([8]))
"""

from __future__ import annotations

import functools

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without PyTorch
    raise ImportError("probcon_ref.torch needs PyTorch: pip install torch") from exc

from .. import loss as _loss
from .. import ntxent_loss as _ntxent_loss, ntxent_loss_and_grad as _ntxent_loss_and_grad
from .. import pcl_loss as _pcl_loss, pcl_loss_and_grad as _pcl_loss_and_grad
from .._arrays import check_positive_scalar
from ._autograd import AnalyticSpec, _check_reduction, _check_tensors, analytic_loss

__all__ = ["pcl_loss", "ntxent_loss", "PCLLoss", "NTXentLoss", "distributed"]

def _grad_wanted(*tensors) -> bool:
    """Whether autograd will ask for a gradient: then the forward computes it in the same pass."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def pcl_loss(z1, z2, kappa1, kappa2, *, reduction: str = "mean", block_size: int | None = None):
    """The probabilistic contrastive loss, differentiable with its analytic gradient.

    Same mathematics, arguments and input rules as :func:`probcon_ref.pcl_loss`
    (:eq:`eq-loss`, :eq:`eq-pcl-logits`); gradients flow to every argument that requires
    them, computed by :func:`probcon_ref.pcl_loss_and_grad`. Differentiable once.

    Parameters
    ----------
    z1, z2 : torch.Tensor, shape (N, d)
        Raw embeddings of the two views, on one device.
    kappa1, kappa2 : torch.Tensor, shape (N,)
        Concentrations ``>= 0``, for instance ``softplus`` or ``exp`` of a confidence head.
    reduction : {"mean", "sum", "none"}
        Mean or sum over the 2N anchors, or the per-anchor losses (view 1 first).
    block_size : int, optional
        Anchors processed at a time, as in :func:`probcon_ref.pcl_loss` (bounds the memory).

    Returns
    -------
    torch.Tensor
        0-d (shape (2N,) for ``"none"``), on the inputs' device, in their promoted dtype.
    """
    _check_tensors(z1=z1, z2=z2, kappa1=kappa1, kappa2=kappa2)
    reduction = _check_reduction(reduction)
    block_size = _loss.check_block_size(block_size)
    spec = AnalyticSpec(functools.partial(_pcl_loss, block_size=block_size),
                        functools.partial(_pcl_loss_and_grad, block_size=block_size),
                        reduction, _grad_wanted(z1, z2, kappa1, kappa2))
    return analytic_loss(spec, z1, z2, kappa1, kappa2)


def ntxent_loss(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", block_size: int | None = None):
    """NT-Xent with its analytic gradient (:eq:`eq-ntxent-logits`); see :func:`pcl_loss`.

    The deterministic special case of the PCL with every ``kappa = 1/temperature``.
    """
    _check_tensors(z1=z1, z2=z2)
    temperature = check_positive_scalar(temperature, "temperature")
    reduction = _check_reduction(reduction)
    block_size = _loss.check_block_size(block_size)
    bound = {"temperature": temperature, "block_size": block_size}
    spec = AnalyticSpec(functools.partial(_ntxent_loss, **bound), functools.partial(_ntxent_loss_and_grad, **bound),
                        reduction, _grad_wanted(z1, z2))
    return analytic_loss(spec, z1, z2)


class PCLLoss(torch.nn.Module):
    """The probabilistic contrastive loss as a module: ``criterion(out0, out1, kappa0, kappa1)``.

    ``out0, out1`` are the embeddings of the two views, shape (N, d); ``kappa0, kappa1`` their
    confidences, shape (N,), ``>= 0``. See :func:`pcl_loss`.

    No equation of its own: it calls :func:`pcl_loss`, which cites the loss's equations.
    """

    def __init__(self, reduction: str = "mean", block_size: int | None = None):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.block_size = _loss.check_block_size(block_size)

    def forward(self, out0, out1, kappa0, kappa1):
        return pcl_loss(out0, out1, kappa0, kappa1, reduction=self.reduction, block_size=self.block_size)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, block_size={self.block_size}"


class NTXentLoss(torch.nn.Module):
    """NT-Xent as a module: ``criterion(out0, out1)``, default temperature 0.5 (as in lightly).

    No equation of its own: it calls :func:`ntxent_loss`, which cites the loss's equations.
    """

    def __init__(self, temperature: float = 0.5, reduction: str = "mean", block_size: int | None = None):
        super().__init__()
        self.temperature = check_positive_scalar(temperature, "temperature")
        self.reduction = _check_reduction(reduction)
        self.block_size = _loss.check_block_size(block_size)

    def forward(self, out0, out1):
        return ntxent_loss(out0, out1, temperature=self.temperature, reduction=self.reduction,
                           block_size=self.block_size)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}, block_size={self.block_size}"


from . import distributed  # noqa: E402  (after the modules, as the package's last name)
