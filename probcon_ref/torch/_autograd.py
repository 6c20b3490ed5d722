"""The two PyTorch custom operators of the integration, their autograd rule, and their guards.

Every loss of :mod:`probcon_ref.torch` (single-process and distributed, PCL and NT-Xent) is
one call of the operator ``probcon_ref::analytic_loss``, registered with
``torch.library.custom_op``. To ``torch.compile`` it is one opaque node with a fake
implementation for shapes and dtypes: Dynamo never traces the array-API code, so a compiled
training step has no graph break in the loss, ``fullgraph=True`` works, and the input rules
still hold (they run inside the operator, on real tensors). Its autograd rule
(``register_autograd``) is the vector-Jacobian product computed by formula: for a reduced
loss the forward computes the gradient blocks in the same pass and the backward scales
them by the incoming gradient; for ``reduction="none"`` the backward calls the second
operator, ``probcon_ref::analytic_vjp``, with the incoming gradient as the weights ``w_a``.

Which loss an operator computes is a *kind*, a name registered with :func:`register_kind`
(the single-process losses here, the distributed ones in
:mod:`probcon_ref.torch.distributed`), so that the operators take only tensors, numbers and
strings. The guards, the same for every kind: autocast off inside, half precisions computed
in float32, the loss returned in ``out_dtype`` and checked against its range, each gradient
scaled by the cotangent before it is rounded to its input's dtype, non-finite cotangents
propagated, no second derivative, and error messages in the caller's argument names.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch

from .._inputs import REDUCTIONS

__all__ = ["Kind", "Options", "register_kind", "analytic_loss", "loss_dtype"]

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


def _working_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in _HALF else t.dtype


def loss_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype of the returned loss: the inputs' promoted dtype, and under ``torch.autocast``
    on their device at least float32, as PyTorch's own losses (``cross_entropy``) return it."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    device = tensors[0].device.type
    if dtype in _HALF and torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        return torch.float32
    return dtype


class Options(NamedTuple):
    """The non-tensor arguments of a loss, as the operators carry them (no equation: plumbing).

    ``temperature`` (NT-Xent with a fixed temperature), ``block_size``, ``group`` (the name
    of a ``torch.distributed`` group, "" for the default one) and ``log_kappa`` (the PCL's
    concentrations are given as their logarithms).
    """

    temperature: Optional[float]
    block_size: Optional[int]
    group: str
    log_kappa: bool


@dataclass(frozen=True)
class Kind:
    """One loss the operators compute (no equation: plumbing).

    ``loss_and_grad(inputs, extra, options, reduction=... | weights=...)`` returns the loss and
    the gradient with respect to each of ``inputs`` (a tuple), and with ``weights=w`` the
    vector-Jacobian product of the per-anchor losses with the cotangent ``w``; ``extra``
    are the extra candidates, constants. ``loss(inputs, extra, options, reduction)`` returns
    the loss alone, or is ``None`` when every call must compute the gradient too (the
    distributed losses, whose processes run the same collectives).
    """

    loss: Callable | None
    loss_and_grad: Callable


_KINDS: dict[str, Kind] = {}


def register_kind(name: str, kind: Kind) -> None:
    """Make ``name`` a loss the operators compute (no equation: plumbing)."""
    _KINDS[name] = kind


_REFERENCE_NAMES = ("z1", "z2", "kappa1", "kappa2")


@contextlib.contextmanager
def _named(names: str):
    """Errors raised inside in the caller's argument names: ``names`` is the comma-separated
    names of ``z1, z2, kappa1, kappa2`` as the caller wrote them ("" keeps the reference's)."""
    try:
        yield
    except (TypeError, ValueError, OverflowError) as exc:
        if not names:
            raise
        table = dict(zip(_REFERENCE_NAMES, names.split(",")))
        message = re.sub(r"\b(z1|z2|kappa1|kappa2)\b", lambda m: table.get(m.group(1), m.group(1)), str(exc))
        raise type(exc)(message) from exc


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


def _filled(extra, extra_rows) -> list:
    """The extra candidates in the working dtype; only their first ``extra_rows[0]`` rows when
    that count (a host tensor: reading it needs no device synchronisation) is given, none
    while it is 0. A candidate tensor without rows (a queue without concentrations) is left
    out."""
    extra = [_working(t) for t in extra if t.shape[0]]
    if extra_rows is None:
        return extra
    rows = int(extra_rows[0])
    return [t[:rows] for t in extra] if rows else []


def _computes_grad(kind: Kind, reduction: str, with_grad: bool) -> bool:
    """Whether the forward computes the gradient blocks (returned as extra outputs)."""
    return kind.loss is None or (with_grad and reduction != "none")


def _as_declared(grads, inputs) -> list:
    """The gradient blocks as the fake implementations declare them: each in its input's
    working dtype (a 0-d temperature's gradient comes from the reference in the loss's
    dtype), and each in storage of its own, since an operator's outputs may alias neither
    its inputs nor each other (the reference returns the two views' blocks as views of one
    array)."""
    taken = {t.untyped_storage().data_ptr() for t in inputs}
    out = []
    for g, t in zip(grads, inputs):
        g = g.to(_working_dtype(t))
        where = g.untyped_storage().data_ptr()
        out.append(g.clone() if where in taken else g)
        taken.add(where)
    return out


@torch.library.custom_op("probcon_ref::analytic_loss", mutates_args=())
def _loss_op(kind: str, inputs: list[torch.Tensor], extra: list[torch.Tensor], extra_rows: Optional[torch.Tensor],
             reduction: str, temperature: Optional[float], block_size: Optional[int], group: str, log_kappa: bool,
             names: str, with_grad: bool, out_dtype: torch.dtype) -> list[torch.Tensor]:
    """``[loss]``, or ``[loss, *gradient blocks]`` when the forward computes them."""
    k, options = _KINDS[kind], Options(temperature, block_size, group, log_kappa)
    work, extra = [_working(t) for t in inputs], _filled(extra, extra_rows)
    with _autocast_off(inputs[0].device), _named(names):
        if _computes_grad(k, reduction, with_grad):
            value, grads = k.loss_and_grad(work, extra, options, reduction=reduction)
        else:
            value, grads = k.loss(work, extra, options, reduction), ()
    out = value.to(out_dtype)
    if out_dtype in _HALF and not bool(torch.isfinite(out).all()):  # a host read for half outputs only
        raise OverflowError(f"the loss is not representable in {out_dtype}: its magnitude exceeds the "
                            f"largest {out_dtype} ({torch.finfo(out_dtype).max:.5g})")
    if not (with_grad and reduction != "none"):
        return [out]
    return [out, *_as_declared(grads, inputs)]


@_loss_op.register_fake
def _loss_shapes(kind, inputs, extra, extra_rows, reduction, temperature, block_size, group, log_kappa, names,
                 with_grad, out_dtype):
    loss = inputs[0].new_empty((2 * inputs[0].shape[0],) if reduction == "none" else (), dtype=out_dtype)
    if not (with_grad and reduction != "none"):
        return [loss]
    return [loss, *(t.new_empty(t.shape, dtype=_working_dtype(t)) for t in inputs)]


@torch.library.custom_op("probcon_ref::analytic_vjp", mutates_args=())
def _vjp_op(kind: str, inputs: list[torch.Tensor], extra: list[torch.Tensor], extra_rows: Optional[torch.Tensor],
            weights: torch.Tensor, temperature: Optional[float], block_size: Optional[int], group: str,
            log_kappa: bool, names: str) -> list[torch.Tensor]:
    """``sum_a w_a d loss_a / d input`` for each input, ``w`` = ``weights`` (finite)."""
    k, options = _KINDS[kind], Options(temperature, block_size, group, log_kappa)
    work, extra = [_working(t) for t in inputs], _filled(extra, extra_rows)
    with _autocast_off(inputs[0].device), _named(names):
        _, grads = k.loss_and_grad(work, extra, options, weights=weights.to(work[0].dtype))
    return _as_declared(grads, inputs)


@_vjp_op.register_fake
def _vjp_shapes(kind, inputs, extra, extra_rows, weights, temperature, block_size, group, log_kappa, names):
    return [t.new_empty(t.shape, dtype=_working_dtype(t)) for t in inputs]


def _setup_context(ctx, inputs, output):
    kind, tensors, extra, extra_rows, reduction, temperature, block_size, group, log_kappa, names, _, _ = inputs
    ctx.call = (kind, temperature, block_size, group, log_kappa, names)
    ctx.reduction, ctx.count, ctx.extra_count = reduction, len(tensors), len(extra)
    ctx.dtypes = tuple(t.dtype for t in tensors)
    ctx.counted = extra_rows is not None
    if reduction != "none":
        ctx.save_for_backward(*output[1:])
    elif ctx.counted:  # copies: a memory bank's push after the forward overwrites the queue
        ctx.save_for_backward(*tensors, *(t.clone() for t in extra), extra_rows.clone())
    else:
        ctx.save_for_backward(*tensors, *extra)


def _backward(ctx, grad_outputs):
    if torch.is_grad_enabled():
        raise RuntimeError(
            "probcon_ref.torch losses are differentiable once: their backward is the analytic "
            "gradient, so create_graph=True (double backward, gradient penalties through the "
            "loss) is not supported"
        )
    grad_output = grad_outputs[0]
    saved = ctx.saved_tensors
    with _autocast_off(grad_output.device):
        if ctx.reduction == "none":
            tensors, extra = list(saved[:ctx.count]), list(saved[ctx.count:ctx.count + ctx.extra_count])
            rows = saved[-1] if ctx.counted else None
            weights, poison = _finite_part(grad_output.to(_working_dtype(tensors[0])))
            kind, temperature, block_size, group, log_kappa, names = ctx.call
            grads = _vjp_op(kind, tensors, extra, rows, weights, temperature, block_size, group, log_kappa, names)
            grads = [(g + poison).to(dt) for g, dt in zip(grads, ctx.dtypes)]
        else:
            grads = [(g * grad_output.to(g.dtype)).to(dt) for g, dt in zip(saved, ctx.dtypes)]
    return None, grads, [None] * ctx.extra_count, None, None, None, None, None, None, None, None, None


torch.library.register_autograd("probcon_ref::analytic_loss", _backward, setup_context=_setup_context)


def analytic_loss(kind: str, inputs, extra=(), extra_rows=None, *, reduction: str, options: Options,
                  names: str = "", with_grad: bool):
    """The loss of ``kind`` on ``inputs`` (and the constant ``extra`` candidates, their first
    ``extra_rows[0]`` rows when that host tensor is given), differentiable once through its
    analytic gradient; ``with_grad``: whether autograd will ask for it."""
    out = _loss_op(kind, list(inputs), list(extra), extra_rows, reduction, options.temperature, options.block_size,
                   options.group, options.log_kappa, names, with_grad, loss_dtype(*inputs))
    return out[0]
