"""The one ``torch.autograd.Function`` of the PyTorch integration, and its guards.

:func:`analytic_loss` runs a loss whose backward is its vector-Jacobian product, computed by
formula (:class:`AnalyticSpec`): the single-process losses of :mod:`probcon_ref.torch` and
the distributed ones of :mod:`probcon_ref.torch.distributed` both go through it, so both
get the same guards (autocast off, half precision computed in float32, the cotangent applied
before rounding, non-finite cotangents propagated, no second derivative).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch.autograd.function import once_differentiable

from .._inputs import REDUCTIONS

__all__ = ["AnalyticSpec", "analytic_loss"]

_HALF = (torch.float16, torch.bfloat16)


def _check_tensors(**tensors) -> None:
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _check_reduction(reduction) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _autocast_off(device: torch.device):
    """A context with autocast disabled on ``device`` (nothing to do where it has none)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _working(t: torch.Tensor) -> torch.Tensor:
    """Half precisions widened to float32; float32/float64 (and invalid dtypes) as they are."""
    return t.float() if t.dtype in _HALF else t


def _loss_dtype(*tensors: torch.Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _differentiable_once(backward):
    """``once_differentiable``, and an error when autograd is asked for a graph of the gradient.

    The gradient is computed by formula, so autograd cannot differentiate it again; with
    ``create_graph=True`` plain ``once_differentiable`` would return a gradient that silently
    carries no graph, so a second-order term (a gradient penalty) would vanish unnoticed.
    """
    inner = once_differentiable(backward)

    @functools.wraps(backward)
    def wrapper(ctx, *grad_outputs):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "probcon_ref.torch losses are differentiable once (once_differentiable): "
                "their backward is the analytic gradient, so create_graph=True (double "
                "backward, gradient penalties through the loss) is not supported"
            )
        return inner(ctx, *grad_outputs)

    return wrapper


def _scaled(grads, grad_output, needs, dtypes):
    """Each gradient times ``grad_output``, cast to its input's dtype; None where not needed."""
    out = []
    for g, need, dt in zip(grads, needs, dtypes):
        out.append((g * grad_output.to(g.dtype)).to(dt) if need else None)
    return tuple(out)


def _finite_part(grad_output):
    """``(weights, poison)``: ``grad_output`` with its non-finite entries set to zero, and a
    0-d tensor that is 0 when every entry is finite and NaN otherwise.

    Adding ``poison`` to the gradients computed with ``weights`` propagates a NaN or infinite
    upstream gradient, without a host synchronisation, and without ever passing the
    reference a non-finite weight (which it refuses as invalid input).
    """
    finite = torch.isfinite(grad_output)
    weights = torch.where(finite, grad_output, 0.0)
    poison = torch.where(finite, 0.0, grad_output).sum() * 0
    return weights, poison


@dataclass(frozen=True)
class AnalyticSpec:
    """What one call of an analytic loss computes, bound outside ``apply`` (PyTorch's documented
    ``setup_context`` style keeps non-tensor configuration out of the autograd graph).

    ``loss_and_grad(*inputs, reduction=...)`` returns the loss and its gradient blocks, and
    ``loss_and_grad(*inputs, weights=w)`` the vector-Jacobian product of the per-anchor losses
    with the cotangent ``w`` (:func:`probcon_ref.pcl_loss_and_grad` with its other arguments
    bound, or the distributed one); ``loss(*inputs, reduction=...)`` the loss alone, or
    ``None`` when every call must also compute the gradient (the distributed loss, whose
    processes run the same collectives). ``with_grad`` says whether autograd will ask for it.
    """

    loss: Callable | None
    loss_and_grad: Callable
    reduction: str
    with_grad: bool


class _AnalyticLoss(torch.autograd.Function):
    """Forward: a reference loss; backward: its vector-Jacobian product, by formula.

    One function for the single-process and the distributed losses, PCL and NT-Xent alike:
    autocast off, half precisions computed in float32, the loss returned in the inputs'
    (promoted) dtype and checked against its range, each gradient scaled by the cotangent
    before it is rounded to its input's dtype, and no second derivative. The forward's extra
    outputs are what the backward needs (the gradient blocks, or for ``reduction="none"`` the
    widened inputs), marked non-differentiable.
    """

    @staticmethod
    def forward(spec: AnalyticSpec, *inputs):
        out_dtype = _loss_dtype(*inputs)
        work = tuple(_working(t) for t in inputs)
        with _autocast_off(inputs[0].device):
            if spec.loss is None or (spec.with_grad and spec.reduction != "none"):
                value, saved = spec.loss_and_grad(*work, reduction=spec.reduction)
            elif spec.reduction == "none":
                value, saved = spec.loss(*work, reduction="none"), work
            else:
                value, saved = spec.loss(*work, reduction=spec.reduction), ()
        out = value.to(out_dtype)
        if out_dtype in _HALF and not bool(torch.isfinite(out).all()):  # a host read for half outputs only
            raise OverflowError(f"the loss is not representable in {out_dtype}: its magnitude exceeds the "
                                f"largest {out_dtype} ({torch.finfo(out_dtype).max:.5g})")
        return (out, *saved)

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, *tensors = inputs
        ctx.spec = spec
        ctx.dtypes = tuple(t.dtype for t in tensors)
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(*output[1:])

    @staticmethod
    @_differentiable_once
    def backward(ctx, grad_output, *_):
        needs = ctx.needs_input_grad[1:]
        with _autocast_off(grad_output.device):
            if ctx.spec.reduction == "none" and ctx.spec.loss is not None:
                work = ctx.saved_tensors
                weights, poison = _finite_part(grad_output.to(work[0].dtype))
                _, grads = ctx.spec.loss_and_grad(*work, weights=weights)
                grads = tuple((g + poison).to(dt) if need else None
                              for g, need, dt in zip(grads, needs, ctx.dtypes))
            else:
                grads = _scaled(ctx.saved_tensors, grad_output, needs, ctx.dtypes)
        return (None, *grads)


def analytic_loss(spec: AnalyticSpec, *inputs):
    """The loss of ``spec`` on ``inputs``, differentiable once through its analytic gradient."""
    return _AnalyticLoss.apply(spec, *inputs)[0]
