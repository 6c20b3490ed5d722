"""PyTorch integration: the reference losses as differentiable functions and ``nn.Module`` s.

:func:`pcl_loss` and :func:`ntxent_loss` are one PyTorch custom operator
(:func:`probcon_ref.torch._autograd.analytic_loss`, registered with
``torch.library.custom_op``) whose backward is the vector-Jacobian product that
:func:`probcon_ref.pcl_loss_and_grad` computes by formula (the contract, section :ref:`4 <contract-gradient>`,
:eq:`eq-residual` - :eq:`eq-grad-z`), not autograd through the forward pass: the
reference's mathematics runs unchanged on the tensors, on their device. To
``torch.compile`` the loss is one opaque node, so a compiled step has no graph break in it
and compiles with ``fullgraph=True``. The distributed losses of
:mod:`probcon_ref.torch.distributed` use the same operator.

* The cotangent is the incoming gradient: for a reduced loss the gradient blocks computed
  in the forward pass are scaled by it; for ``reduction="none"`` it becomes the per-anchor
  weights ``w_a`` of :eq:`eq-residual` and the VJP is computed in the backward pass.
* It is differentiable once (``once_differentiable``): asking for a second derivative
  (``create_graph=True``, for instance a gradient penalty through the loss) raises an error
  instead of returning a gradient that silently carries no graph.
* Under ``torch.autocast``, and for float16/bfloat16 inputs generally, the computation runs
  in float32 with autocast switched off inside. Under autocast the loss is returned in
  float32, as PyTorch's own losses are; outside it, in the inputs' (promoted) dtype. Each
  gradient comes back in its own input's dtype. The float32 gradient is
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
* Options are checked when a module is constructed, not at its first call: every one of
  them (``block_size`` is ``None`` or a positive integer of any integer type; ``bool`` is
  refused).

:class:`PCLLoss` and :class:`NTXentLoss` follow the calling convention of lightly and
pytorch-metric-learning: ``loss = criterion(out0, out1, kappa0, kappa1)``, and their error
messages name those arguments. They offer a memory bank (:class:`MemoryBank`: past views as
extra candidates), ``gather_distributed=True`` (the exact loss over the processes, its
gradient scaled for ``DistributedDataParallel``), a learnable temperature and log-kappa
inputs.

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

import math

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without PyTorch
    raise ImportError("probcon_ref.torch needs PyTorch: pip install torch") from exc

from .. import loss as _loss
from .. import ntxent_loss as _ntxent_loss, ntxent_loss_and_grad as _ntxent_loss_and_grad
from .. import pcl_loss as _pcl_loss, pcl_loss_and_grad as _pcl_loss_and_grad
from .._arrays import check_positive_scalar
from ._autograd import Kind, Options, _check_reduction, _check_tensors, analytic_loss, register_kind
from ._bank import MemoryBank, check_bank_size

__all__ = ["pcl_loss", "ntxent_loss", "PCLLoss", "NTXentLoss", "MemoryBank", "distributed"]


def _block_size(block_size):
    """``block_size`` checked by the reference's rule; a plain int or None passes straight
    through, so that dynamo, tracing a compiled step, has no array-API helper to trace."""
    if block_size is None or (type(block_size) is int and block_size > 0):
        return block_size
    return _loss.check_block_size(block_size)


def _grad_wanted(*tensors) -> bool:
    """Whether autograd will ask for a gradient: then the forward computes it in the same pass."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# ---------------------------------------------------------------------------------------
# The two kinds of the single-process operator: the reference, called on the tensors
# ---------------------------------------------------------------------------------------


def _pcl_arguments(inputs, extra, options: Options):
    """``(z1, z2, kappa1, kappa2)`` and the keywords of the reference: log-kappa exponentiated,
    the extra candidates (directions and concentrations) passed on."""
    z1, z2, k1, k2 = inputs
    if options.log_kappa:
        k1, k2 = torch.exp(k1), torch.exp(k2)
    keywords = {"block_size": options.block_size}
    if extra:
        keywords.update(extra_z=extra[0], extra_kappa=extra[1])
    return (z1, z2, k1, k2), keywords


def _pcl_kind_loss(inputs, extra, options: Options, reduction: str):
    args, keywords = _pcl_arguments(inputs, extra, options)
    return _pcl_loss(*args, reduction=reduction, **keywords)


def _pcl_kind_loss_and_grad(inputs, extra, options: Options, **how):
    """With ``kappa = exp(s)`` given as ``s``: ``dL/ds = kappa dL/dkappa``, the chain rule
    applied to the analytic gradient :eq:`eq-grad-kappa`."""
    args, keywords = _pcl_arguments(inputs, extra, options)
    value, g = _pcl_loss_and_grad(*args, **how, **keywords)
    if options.log_kappa:
        return value, (g.z1, g.z2, g.kappa1 * args[2], g.kappa2 * args[3])
    return value, tuple(g)


def _ntxent_arguments(inputs, extra, options: Options):
    """``(z1, z2)`` and the reference's keywords: the temperature, fixed (a number) or learnable
    (a third input, 0-d), and the extra candidates."""
    keywords = {"block_size": options.block_size,
                "temperature": inputs[2] if len(inputs) == 3 else options.temperature}
    if extra:
        keywords["extra_z"] = extra[0]
    return tuple(inputs[:2]), keywords


def _ntxent_kind_loss(inputs, extra, options: Options, reduction: str):
    args, keywords = _ntxent_arguments(inputs, extra, options)
    return _ntxent_loss(*args, reduction=reduction, **keywords)


def _ntxent_kind_loss_and_grad(inputs, extra, options: Options, **how):
    """A learnable temperature's derivative is the reference's ``dL/dtau`` (``temperature_grad``)."""
    args, keywords = _ntxent_arguments(inputs, extra, options)
    value, g = _ntxent_loss_and_grad(*args, **how, temperature_grad=len(inputs) == 3, **keywords)
    return value, tuple(g)


register_kind("pcl", Kind(_pcl_kind_loss, _pcl_kind_loss_and_grad))
register_kind("ntxent", Kind(_ntxent_kind_loss, _ntxent_kind_loss_and_grad))


# ---------------------------------------------------------------------------------------
# The functions
# ---------------------------------------------------------------------------------------


def _extra_candidates(extra_z, extra_kappa, names=("extra_z", "extra_kappa")) -> tuple:
    """The extra candidates as the operator takes them: detached constants (nothing flows to
    them, the contract, section :ref:`3.1 <contract-loss>`), ``()`` when there are none."""
    if extra_z is None:
        if extra_kappa is not None:
            raise ValueError(f"{names[1]} is given without {names[0]}")
        return ()
    _check_tensors(**{names[0]: extra_z})
    if extra_kappa is None:
        return (extra_z.detach(),)
    _check_tensors(**{names[1]: extra_kappa})
    return extra_z.detach(), extra_kappa.detach()


def pcl_loss(z1, z2, kappa1, kappa2, *, reduction: str = "mean", block_size: int | None = None,
             kappa_is_log: bool = False, extra_z=None, extra_kappa=None, _extra_rows=None, _names: str = ""):
    """The probabilistic contrastive loss, differentiable with its analytic gradient.

    Same mathematics, arguments and input rules as :func:`probcon_ref.pcl_loss`
    (:eq:`eq-loss`, :eq:`eq-pcl-logits`); gradients flow to every argument that requires
    them, computed by :func:`probcon_ref.pcl_loss_and_grad`. Differentiable once.

    Parameters
    ----------
    z1, z2 : torch.Tensor, shape (N, d)
        Raw embeddings of the two views, on one device.
    kappa1, kappa2 : torch.Tensor, shape (N,)
        Concentrations ``>= 0``, for instance ``softplus`` or ``exp`` of a confidence head;
        with ``kappa_is_log=True`` their logarithms (any real number; the gradient is
        ``kappa dL/dkappa``, applied to the analytic one).
    reduction : {"mean", "sum", "none"}
        Mean or sum over the 2N anchors, or the per-anchor losses (view 1 first).
    block_size : int, optional
        Anchors processed at a time, as in :func:`probcon_ref.pcl_loss` (bounds the memory).
    extra_z, extra_kappa : torch.Tensor, shape (M, d) and (M,), optional
        Extra candidates (a memory bank), constants: no gradient flows to them.

    Returns
    -------
    torch.Tensor
        0-d (shape (2N,) for ``"none"``), on the inputs' device, in their promoted dtype
        (float32 at least under ``torch.autocast``).
    """
    names = _names.split(",") if _names else ["z1", "z2", "kappa1", "kappa2"]
    _check_tensors(**dict(zip(names, (z1, z2, kappa1, kappa2))))
    extra = _extra_candidates(extra_z, extra_kappa)
    if extra and len(extra) != 2:
        raise ValueError("extra_kappa is required with extra_z for the PCL")
    options = Options(None, _block_size(block_size), "", bool(kappa_is_log))
    if kappa_is_log and _names:
        _names = ",".join([*names[:2], *(f"exp({n})" for n in names[2:])])
    return analytic_loss("pcl", (z1, z2, kappa1, kappa2), extra, _extra_rows, reduction=_check_reduction(reduction),
                         options=options, names=_names, with_grad=_grad_wanted(z1, z2, kappa1, kappa2))


def _temperature(temperature):
    """A number > 0 (checked), or a 0-d tensor (a learnable temperature), as it is."""
    if isinstance(temperature, torch.Tensor):
        if temperature.ndim != 0 or not temperature.is_floating_point():
            raise ValueError(f"a temperature tensor must be 0-d and floating, got shape {tuple(temperature.shape)} "
                             f"and dtype {temperature.dtype}")
        return temperature
    if type(temperature) is float and 0 < temperature < math.inf:  # as below, without tracing helpers
        return temperature
    return check_positive_scalar(temperature, "temperature")


def ntxent_loss(z1, z2, *, temperature=0.5, reduction: str = "mean", block_size: int | None = None,
                extra_z=None, _extra_rows=None, _names: str = ""):
    """NT-Xent with its analytic gradient (:eq:`eq-ntxent-logits`); see :func:`pcl_loss`.

    The deterministic special case of the PCL with every ``kappa = 1/temperature``.
    ``temperature`` is a number, or a 0-d tensor: a learnable temperature, whose gradient
    is the analytic ``dL/dtau`` of :func:`probcon_ref.ntxent_loss_and_grad`. ``extra_z``:
    extra candidates (a memory bank), constants.
    """
    names = _names.split(",") if _names else ["z1", "z2"]
    _check_tensors(**dict(zip(names, (z1, z2))))
    temperature = _temperature(temperature)
    extra = _extra_candidates(extra_z, None)
    learnable = isinstance(temperature, torch.Tensor)
    inputs = (z1, z2, temperature) if learnable else (z1, z2)
    options = Options(None if learnable else temperature, _block_size(block_size), "", False)
    return analytic_loss("ntxent", inputs, extra, _extra_rows, reduction=_check_reduction(reduction), options=options,
                         names=_names, with_grad=_grad_wanted(*inputs))


# ---------------------------------------------------------------------------------------
# The modules
# ---------------------------------------------------------------------------------------


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def _check_distributed(gather_distributed, memory_bank_size: int) -> bool:
    gather = _check_flag(gather_distributed, "gather_distributed")
    if gather and memory_bank_size:
        raise ValueError("gather_distributed=True with a memory bank is not supported: choose one")
    return gather


def _bank_candidates(bank):
    """The queue of ``bank`` (``()`` without one, or before its first push) and the host tensor
    that counts its filled rows."""
    if bank is None:
        return (), None
    extra = bank.candidates()
    return extra, (bank.state if extra else None)


class PCLLoss(torch.nn.Module):
    """The probabilistic contrastive loss as a module: ``criterion(out0, out1, kappa0, kappa1)``.

    ``out0, out1`` are the embeddings of the two views, shape (N, d); ``kappa0, kappa1`` their
    confidences, shape (N,), ``>= 0`` (their logarithms with ``kappa_is_log=True``). See
    :func:`pcl_loss`; error messages name these arguments.

    * ``memory_bank_size=M``: a :class:`MemoryBank` of the last M views' directions and
      concentrations, extra candidates of every anchor, updated after each forward in
      training mode.
    * ``gather_distributed=True``: the exact loss over every process of the default
      ``torch.distributed`` group (:func:`probcon_ref.torch.distributed.pcl_loss`), with its
      gradient multiplied by the world size, so that ``DistributedDataParallel``'s averaging
      of the parameters' gradients gives the gradient of the global loss.

    No equation of its own: it calls :func:`pcl_loss`, which cites the loss's equations.
    """

    def __init__(self, reduction: str = "mean", block_size: int | None = None, *, memory_bank_size: int = 0,
                 gather_distributed: bool = False, kappa_is_log: bool = False):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.block_size = _loss.check_block_size(block_size)
        self.kappa_is_log = _check_flag(kappa_is_log, "kappa_is_log")
        size = check_bank_size(memory_bank_size)
        self.gather_distributed = _check_distributed(gather_distributed, size)
        self.memory_bank = MemoryBank(size, with_kappa=True) if size else None

    def forward(self, out0, out1, kappa0, kappa1):
        if self.gather_distributed:
            return distributed._module_loss("pcl", (out0, out1, kappa0, kappa1), self)
        extra, rows = _bank_candidates(self.memory_bank)
        loss = pcl_loss(out0, out1, kappa0, kappa1, reduction=self.reduction, block_size=self.block_size,
                        kappa_is_log=self.kappa_is_log, extra_z=extra[0] if extra else None,
                        extra_kappa=extra[1] if extra else None, _extra_rows=rows,
                        _names="out0,out1,kappa0,kappa1")
        if self.memory_bank is not None and self.training:
            kappa = torch.cat([kappa0, kappa1]).detach()
            self.memory_bank.push(torch.cat([out0, out1]), torch.exp(kappa) if self.kappa_is_log else kappa)
        return loss

    def extra_repr(self) -> str:
        return (f"reduction={self.reduction!r}, block_size={self.block_size}, kappa_is_log={self.kappa_is_log}, "
                f"gather_distributed={self.gather_distributed}")


class NTXentLoss(torch.nn.Module):
    """NT-Xent as a module: ``criterion(out0, out1)``, default temperature 0.5 (as in lightly).

    ``temperature`` is a number, or a 0-d tensor (a ``torch.nn.Parameter`` is registered
    and learned); ``learn_temperature=True`` learns it as ``exp`` of a parameter
    ``log_temperature`` started at ``log(temperature)`` (CLIP's parametrisation). Its
    gradient is the analytic ``dL/dtau``. ``memory_bank_size`` and ``gather_distributed``
    as for :class:`PCLLoss`.

    No equation of its own: it calls :func:`ntxent_loss`, which cites the loss's equations.
    """

    def __init__(self, temperature=0.5, reduction: str = "mean", block_size: int | None = None, *,
                 learn_temperature: bool = False, memory_bank_size: int = 0, gather_distributed: bool = False):
        super().__init__()
        temperature = _temperature(temperature)
        if _check_flag(learn_temperature, "learn_temperature"):
            start = float(temperature.detach()) if isinstance(temperature, torch.Tensor) else temperature
            self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(start)))
            self.temperature = None
        else:
            self.temperature = temperature
        self.reduction = _check_reduction(reduction)
        self.block_size = _loss.check_block_size(block_size)
        size = check_bank_size(memory_bank_size)
        self.gather_distributed = _check_distributed(gather_distributed, size)
        self.memory_bank = MemoryBank(size, with_kappa=False) if size else None

    def current_temperature(self):
        """The temperature used now: the number, the tensor, or ``exp(log_temperature)``."""
        return torch.exp(self.log_temperature) if self.temperature is None else self.temperature

    def forward(self, out0, out1):
        if self.gather_distributed:
            return distributed._module_loss("ntxent", (out0, out1), self)
        extra, rows = _bank_candidates(self.memory_bank)
        loss = ntxent_loss(out0, out1, temperature=self.current_temperature(), reduction=self.reduction,
                           block_size=self.block_size, extra_z=extra[0] if extra else None, _extra_rows=rows,
                           _names="out0,out1")
        if self.memory_bank is not None and self.training:
            self.memory_bank.push(torch.cat([out0, out1]))
        return loss

    def extra_repr(self) -> str:
        tau = "learned" if self.temperature is None else self.temperature
        return (f"temperature={tau}, reduction={self.reduction!r}, block_size={self.block_size}, "
                f"gather_distributed={self.gather_distributed}")


from . import distributed  # noqa: E402  (after the modules, as the package's last name)
