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
averages parameter gradients over processes: the modules' switch
``PCLLoss(gather_distributed=True)`` (and ``NTXentLoss``'s) returns the same global loss with
its gradient multiplied by the world size, so that the average is the gradient of the global
loss; with the functions here, multiply the loss by the world size yourself under DDP.

Processes may hold different numbers of pairs. This module is PyTorch-specific glue; the
mathematics is the array-API reference.

**The processes check each other.** Before any data moves, every process validates its
own inputs (the rules of :func:`probcon_ref.pcl_loss`, plus ``block_size``) and all
processes exchange one small fixed-size record: whether the inputs are valid (and if not,
the error), N, d, the dtype of each input, the reduction, the temperature and which loss is
computed. Every process then reaches the same verdict and, when something is wrong, raises
the same exception with the same message, naming the argument and the rank (the global
rank):

* an invalid input on some rank (N = 0, a NaN, a negative kappa, ...): that rank's own
  exception type (``TypeError``/``ValueError``; any other exception becomes a
  ``RuntimeError``) with ``"rank R: <its message>"``; on the rank at fault it is chained to
  the original exception;
* ranks that disagree on d, on an input's dtype, on ``reduction``, on ``temperature`` or
  on which loss they compute: ``ValueError``. N may differ (uneven shares are supported);
  ``block_size`` is each process's own memory bound and may differ too.

So no process is left waiting in a collective for a peer that has raised, a peer with a
different d or dtype cannot crash the group, and ranks with different options cannot
return a silently wrong loss. A program that catches the exception on every rank can go on
using the group.

The differentiable :func:`pcl_loss` and :func:`ntxent_loss` go through the same custom
operator as the single-process losses (:func:`probcon_ref.torch._autograd.analytic_loss`), with the
global ``*_loss_and_grad`` as its vector-Jacobian product, so they have the same guards: the
computation runs with autocast switched off, float16/bfloat16
in float32 with the loss returned in the inputs' (promoted) dtype and each gradient, scaled
by the incoming gradient before rounding, in its input's dtype; a non-finite incoming
gradient propagates; ``create_graph=True`` is an error (differentiable once).
``pcl_loss_and_grad`` and ``ntxent_loss_and_grad`` return values, not graphs.
"""

from __future__ import annotations

import dataclasses
import struct

import torch
import torch.distributed as dist

from .. import _inputs
from .._dispatch import elementwise_steps
from ..gradient import GradientSums, direction_grad, embedding_grad, kappa_grad
from ..loss import (
    NTXentGrads,
    PCLGrads,
    check_block_size,
    contrast_anchors,
    ntxent_concentrations,
    pcl_concentrations,
    unit_directions,
)
from ._autograd import Kind, Options, _autocast_off, _check_tensors, _named, analytic_loss, register_kind

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
    steps = elementwise_steps(xp)
    if kappa_local is None:
        conc_local = ntxent_concentrations(xp, temperature, batch.z)
    else:
        conc_local = pcl_concentrations(xp, kappa_local, batch.d, steps)
    mu_all = _all_gather_rows(mu, counts, group)
    conc_all = type(conc_local)(*(None if part is None else _all_gather_rows(part, counts, group)
                                  for part in conc_local))

    weights = batch.weights * (2 * n) / total if batch.reduction == "mean" else batch.weights
    out = contrast_anchors(xp, mu, offset, mu_all, conc_all, weights, steps, with_grad=True, block_size=block_size,
                           compensated=batch.compensated)

    loss = torch.sum(weights * out.losses)
    dist.all_reduce(loss, group=group)
    columns, column_weights = out.sums.columns, out.sums.column_weights
    dist.all_reduce(columns, group=group)
    dist.all_reduce(column_weights, group=group)
    sums = GradientSums(out.sums.rows, columns[offset:offset + 2 * n], column_weights[offset:offset + 2 * n])
    g_z = embedding_grad(xp, direction_grad(xp, sums, out.w_pos, conc_local.scale, mu, out.pos), mu, norm)
    g_kappa = None
    if kappa_local is not None:
        mean_length = steps.mean_resultant_length(batch.d, kappa_local)
        g_kappa = kappa_grad(xp, sums, out.w_pos, out.c_pos, mu, mean_length, out.pos)
    return loss, g_z, g_kappa


def _check_group(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("torch.distributed is not initialised: call torch.distributed.init_process_group first")
    return group


# ---------------------------------------------------------------------------------------
# The record every process contributes before the first data collective
# ---------------------------------------------------------------------------------------

_PCL, _NTXENT = 1, 2
_KIND_NAMES = {_PCL: "PCL", _NTXENT: "NT-Xent"}
_INPUT_NAMES = {_PCL: ("z1", "z2", "kappa1", "kappa2"), _NTXENT: ("z1", "z2")}
_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
_ERROR_TYPES = (TypeError, ValueError, RuntimeError)  # codes 1, 2, 3 (3: any other exception)

# int64 fields: error code (0 = valid), loss kind, N, d, reduction, temperature (the bits of
# the float64), message length in bytes, then one dtype code per input; then the message.
_ERROR, _KIND, _N, _D, _REDUCTION, _TEMPERATURE, _LENGTH, _COMPENSATED, _DTYPE = range(9)
_HEADER = _DTYPE + 4
_MESSAGE_BYTES = 1024


def _code(value, choices) -> int:
    """1 + the index of ``value`` in ``choices``."""
    return next(i for i, c in enumerate(choices, 1) if value == c)


def _float_bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _bits_float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def _error_code(exc: Exception) -> int:
    for code, cls in enumerate(_ERROR_TYPES[:2], 1):
        if isinstance(exc, cls):
            return code
    return 3


def _error_text(exc: Exception) -> bytes:
    text = str(exc) if _error_code(exc) < 3 else f"{type(exc).__name__}: {exc}"
    raw = text.encode("utf-8", "replace")
    if len(raw) > _MESSAGE_BYTES:
        raw = raw[: _MESSAGE_BYTES - 3] + b"..."
    return raw


def _record(kind: int, batch, error, device) -> torch.Tensor:
    head = [0] * _HEADER
    head[_KIND] = kind
    text = b""
    if error is not None:
        head[_ERROR] = _error_code(error)
        text = _error_text(error)
    else:
        head[_N], head[_D] = batch.n, batch.d
        head[_REDUCTION] = _code(batch.reduction, _inputs.REDUCTIONS)
        head[_COMPENSATED] = int(batch.compensated)
        if batch.temperature is not None:
            head[_TEMPERATURE] = _float_bits(batch.temperature)
        for i, dt in enumerate(batch.grad_dtypes):
            head[_DTYPE + i] = _code(dt, _DTYPES)
    head[_LENGTH] = len(text)
    body = torch.frombuffer(bytearray(text.ljust(_MESSAGE_BYTES, b"\0")), dtype=torch.int64)
    return torch.cat([torch.tensor(head, dtype=torch.int64), body]).to(device)


def _record_device(z1, group) -> torch.device:
    """Where the record is exchanged: where the data will be (z1's device), else the group's."""
    if isinstance(z1, torch.Tensor):
        return z1.device
    if str(dist.get_backend(group)) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _global_ranks(group) -> list[int]:
    if group is None:
        return list(range(dist.get_world_size()))
    return list(dist.get_process_group_ranks(group))


def _rank_list(ranks: list[int]) -> str:
    """``rank 3``, ``ranks 0, 2-5, 7``."""
    runs: list[list[int]] = []
    for r in sorted(ranks):
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"rank {text}" if len(ranks) == 1 else f"ranks {text}"


def _by_value(ranks: list[int], values: list, show) -> str:
    groups: dict = {}
    for r, v in zip(ranks, values):
        groups.setdefault(v, []).append(r)
    return "; ".join(f"{show(v)} on {_rank_list(rs)}" for v, rs in groups.items())


def _failures(ranks, heads, texts, failed) -> str:
    """``rank R: <message>`` for every rank whose inputs are invalid, one line per message."""
    by_text: dict = {}
    for i in failed:
        text = bytes(texts[i, : heads[i][_LENGTH]].tolist()).decode("utf-8", "replace")
        by_text.setdefault(text, []).append(ranks[i])
    return "\n".join(f"{_rank_list(rs)}: {text}" for text, rs in by_text.items())


def _disagreements(ranks, heads) -> str:
    """What the ranks disagree on, one line per argument; empty when they agree."""
    out = []

    def check(field, rule, show):
        values = [h[field] for h in heads]
        if len(set(values)) > 1:
            out.append(f"{rule} on every rank of the group: {_by_value(ranks, values, show)}")

    check(_KIND, "the loss (PCL or NT-Xent) must be the same", _KIND_NAMES.get)
    if out:  # the other fields mean different things for the two losses
        return out[0]
    kind = heads[0][_KIND]
    check(_D, "z1 and z2 must have the same dimension d", lambda v: f"d = {v}")
    for i, name in enumerate(_INPUT_NAMES[kind]):
        check(_DTYPE + i, f"{name} must have the same dtype", lambda v: str(_DTYPES[v - 1]))
    check(_REDUCTION, "reduction must be the same", lambda v: repr(_inputs.REDUCTIONS[v - 1]))
    if kind == _NTXENT:
        check(_TEMPERATURE, "temperature must be the same", lambda v: repr(_bits_float(v)))
    return "\n".join(out)


def _exchange(record: torch.Tensor, group):
    parts = [torch.empty_like(record) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, record, group=group)
    rows = torch.stack(parts).cpu()
    return rows[:, :_HEADER].tolist(), rows[:, _HEADER:].contiguous().view(torch.uint8)


def _agreed(kind: int, group, z1, validate):
    """``validate()`` on this process, checked against every process of the group.

    Returns what ``validate`` returns when every process's inputs are valid and they agree;
    otherwise every process raises the same exception (see the module docstring). One
    all-gather of a fixed-size record, before any data collective.
    """
    _check_group(group)
    result, error = None, None
    try:
        result = validate()
    except Exception as exc:  # shared with the group, then raised on every process
        error = exc
    batch = None if result is None else result[0]
    heads, texts = _exchange(_record(kind, batch, error, _record_device(z1, group)), group)
    ranks = _global_ranks(group)
    failed = [i for i, h in enumerate(heads) if h[_ERROR]]
    if failed:
        cls = _ERROR_TYPES[heads[failed[0]][_ERROR] - 1]
        raise cls(_failures(ranks, heads, texts, failed)) from error
    problems = _disagreements(ranks, heads)
    if problems:
        raise ValueError(problems)
    # The logits of every anchor meet every rank's candidates: they are compensated where the
    # concentrations of any rank call for it, as they would be in one process.
    if any(h[_COMPENSATED] for h in heads) and not batch.compensated:
        result = (dataclasses.replace(batch, compensated=True), *result[1:])
    return result


def _pcl_inputs(z1, z2, kappa1, kappa2, reduction, block_size):
    _check_tensors(z1=z1, z2=z2, kappa1=kappa1, kappa2=kappa2)
    batch = _inputs.pcl_batch(z1.detach(), z2.detach(), kappa1.detach(), kappa2.detach(), reduction, None,
                              allow_none=False)
    return batch, check_block_size(block_size)


def _ntxent_inputs(z1, z2, temperature, reduction, block_size):
    _check_tensors(z1=z1, z2=z2)
    batch = _inputs.ntxent_batch(z1.detach(), z2.detach(), temperature, reduction, None, allow_none=False)
    return batch, check_block_size(block_size)


# ---------------------------------------------------------------------------------------
# The global loss
# ---------------------------------------------------------------------------------------


def _pcl_global(batch, group, block_size):
    """The global PCL and its gradient blocks, in the working dtype."""
    with torch.no_grad(), _autocast_off(batch.z.device):
        loss, g_z, g_k = _global_loss_and_grad(batch, batch.kappa, None, group, block_size)
    n = batch.n
    return loss, (g_z[:n], g_z[n:], g_k[:n], g_k[n:])


def _ntxent_global(batch, group, block_size):
    with torch.no_grad(), _autocast_off(batch.z.device):
        loss, g_z, _ = _global_loss_and_grad(batch, None, batch.temperature, group, block_size)
    n = batch.n
    return loss, (g_z[:n], g_z[n:])


def pcl_loss_and_grad(z1, z2, kappa1, kappa2, *, reduction: str = "mean", group=None, block_size=None):
    """Global PCL over the group and its gradient with respect to this process's inputs.

    Returns ``(loss, PCLGrads)`` like :func:`probcon_ref.pcl_loss_and_grad`; ``reduction``
    is ``"mean"`` (over all 2N anchors of all processes) or ``"sum"``. Every process of the
    group must call it with the same d, dtypes and ``reduction`` (see the module docstring).

    No equation of its own: the loss and gradient of :func:`probcon_ref.pcl_loss_and_grad`
    over the rows of every process.
    """
    batch, block_size = _agreed(_PCL, group, z1,
                                lambda: _pcl_inputs(z1, z2, kappa1, kappa2, reduction, block_size))
    loss, grads = _inputs.finish(batch, *_pcl_global(batch, group, block_size))
    return loss, PCLGrads(*grads)


def ntxent_loss_and_grad(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", group=None,
                         block_size=None):
    """Global NT-Xent over the group and its gradient with respect to this process's views.

    No equation of its own: the loss and gradient of :func:`probcon_ref.ntxent_loss_and_grad`
    over the rows of every process.
    """
    batch, block_size = _agreed(_NTXENT, group, z1,
                                lambda: _ntxent_inputs(z1, z2, temperature, reduction, block_size))
    loss, grads = _inputs.finish(batch, *_ntxent_global(batch, group, block_size))
    return loss, NTXentGrads(*grads)


# ---------------------------------------------------------------------------------------
# Differentiable: the kinds of the integration's operator
# ---------------------------------------------------------------------------------------

_GROUPS: dict = {}


def _group_name(group) -> str:
    """How the operator names ``group``: "" for the default group, else its registered name."""
    if group is None:
        return ""
    name = getattr(group, "group_name", None) or str(id(group))
    _GROUPS[name] = group
    return name


def _kind(loss_and_grad, times_world_size: bool) -> Kind:
    """The global loss as a kind of the operator; ``times_world_size``: the gradient is
    multiplied by the group's size, for ``DistributedDataParallel``, which averages the
    parameters' gradients over the processes."""
    def call(inputs, extra, options: Options, reduction="mean", weights=None):
        if weights is not None:
            raise ValueError("the distributed losses take reduction 'mean' or 'sum', not 'none'")
        group = _GROUPS[options.group] if options.group else None
        keywords = {"temperature": options.temperature} if options.temperature is not None else {}
        value, grads = loss_and_grad(*inputs, reduction=reduction, group=group, block_size=options.block_size,
                                     **keywords)
        if times_world_size:
            size = dist.get_world_size(group)
            return value, tuple(g * size for g in grads)
        return value, tuple(grads)
    return Kind(None, call)


for _ddp in (False, True):
    register_kind("pcl-distributed" + "-ddp" * _ddp, _kind(pcl_loss_and_grad, _ddp))
    register_kind("ntxent-distributed" + "-ddp" * _ddp, _kind(ntxent_loss_and_grad, _ddp))


def _differentiable(kind: str, code: int, inputs, validate, reduction, block_size, temperature, group,
                    names: str = ""):
    """The operator's call of a global loss. What the operator cannot take (a non-tensor, a
    reduction that is not a string, a bad ``block_size``) is refused by :func:`_agreed`
    first, so that every process raises the same error instead of one raising alone while
    the others wait in the operator's exchange; otherwise the operator's own call of
    :func:`_agreed` is the one exchange of the call."""
    try:
        number = temperature is None or (isinstance(temperature, (int, float)) and not isinstance(temperature, bool))
        if not all(isinstance(t, torch.Tensor) for t in inputs) or not isinstance(reduction, str) or not number:
            raise TypeError("not for the operator")
        options = Options(None if temperature is None else float(temperature), check_block_size(block_size),
                          _group_name(group), False)
    except (TypeError, ValueError):
        with _named(names):
            _agreed(code, group, inputs[0], validate)  # raises on every process
        raise
    return analytic_loss(kind, inputs, reduction=reduction, options=options, names=names, with_grad=True)


def pcl_loss(z1, z2, kappa1, kappa2, *, reduction: str = "mean", group=None, block_size=None):
    """Differentiable global PCL (``torch.autograd``); see the module docstring for DDP.

    Goes through the integration's operator (:func:`probcon_ref.torch._autograd.analytic_loss`),
    with :func:`pcl_loss_and_grad` as its vector-Jacobian product: the same guards (autocast,
    half precision, the once-differentiable backward), and one opaque node to
    ``torch.compile``. No equation of its own: :func:`pcl_loss_and_grad` under autograd.
    """
    return _differentiable("pcl-distributed", _PCL, (z1, z2, kappa1, kappa2),
                           lambda: _pcl_inputs(z1, z2, kappa1, kappa2, reduction, block_size),
                           reduction, block_size, None, group)


def ntxent_loss(z1, z2, *, temperature: float = 0.5, reduction: str = "mean", group=None, block_size=None):
    """Differentiable global NT-Xent (``torch.autograd``), as :func:`pcl_loss`.

    No equation of its own: :func:`ntxent_loss_and_grad` under autograd.
    """
    return _differentiable("ntxent-distributed", _NTXENT, (z1, z2),
                           lambda: _ntxent_inputs(z1, z2, temperature, reduction, block_size),
                           reduction, block_size, temperature, group)


def _module_loss(loss: str, inputs, module):
    """``gather_distributed=True`` of :class:`probcon_ref.torch.PCLLoss` and ``NTXentLoss``: the
    global loss on the default group, its gradient multiplied by the world size for DDP, the
    errors in the module's argument names.

    No equation of its own: :func:`pcl_loss_and_grad` or :func:`ntxent_loss_and_grad`.
    """
    if loss == "pcl":
        names = "out0,out1,kappa0,kappa1"
        if module.kappa_is_log:  # autograd applies kappa dL/dkappa through exp
            inputs = (*inputs[:2], *(torch.exp(k) if isinstance(k, torch.Tensor) else k for k in inputs[2:]))
            names = "out0,out1,exp(kappa0),exp(kappa1)"
        return _differentiable("pcl-distributed-ddp", _PCL, inputs,
                               lambda: _pcl_inputs(*inputs, module.reduction, module.block_size),
                               module.reduction, module.block_size, None, None, names)
    temperature = module.current_temperature()
    if isinstance(temperature, torch.Tensor):
        raise ValueError("gather_distributed=True takes a fixed temperature (a number)")
    return _differentiable("ntxent-distributed-ddp", _NTXENT, inputs,
                           lambda: _ntxent_inputs(*inputs, temperature, module.reduction, module.block_size),
                           module.reduction, module.block_size, temperature, None, "out0,out1")
