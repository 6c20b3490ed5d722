"""Input rules of SPEC section 7 for the losses, and the batch the math modules receive.

Every check raises with a message naming the argument. After :func:`pcl_batch` or
:func:`ntxent_batch` the math code can assume: one namespace and device, a real floating
working dtype (float32 or float64), finite values, non-zero rows, non-negative kappa.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _arrays

REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class Batch:
    """A validated batch: both views stacked, in the working dtype."""

    xp: Any
    z: Any  # (2N, d): view 1 rows, then view 2 rows
    kappa: Any  # (2N,) or None for NT-Xent
    weights: Any  # (2N,) reduction weights w_a
    n: int
    d: int
    reduction: str
    temperature: float | None
    loss_dtype: Any
    grad_dtypes: tuple


def _check_views(z1, z2) -> tuple[int, int]:
    for name, z in (("z1", z1), ("z2", z2)):
        if z.ndim != 2:
            raise ValueError(f"{name} must be 2-D with shape (N, d), got shape {tuple(z.shape)}")
    if tuple(z1.shape) != tuple(z2.shape):
        raise ValueError(
            f"z1 and z2 must have equal shapes, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    n, d = z1.shape
    if n < 1:
        raise ValueError("z1 and z2 must hold at least one pair (N >= 1), got N = 0")
    if d < 2:
        raise ValueError(f"z1 and z2 must have dimension d >= 2, got d = {d}")
    return int(n), int(d)


def _check_reduction(reduction, allow_none: bool) -> str:
    allowed = REDUCTIONS if allow_none else REDUCTIONS[:2]
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction


def _check_nonzero_rows(xp, z, name: str) -> None:
    norms = xp.max(xp.abs(z), axis=1)
    if not bool(xp.all(norms > 0)):
        bad = int(xp.argmin(norms))
        raise ValueError(f"{name} has a zero-norm embedding (row {bad}); its direction is undefined")


def _common_dtype(xp, named: dict[str, Any]):
    """Working dtype: the promoted dtype of all inputs, half precisions computed in float32."""
    for name, a in named.items():
        _arrays.working_dtype(xp, a.dtype, name)  # raises TypeError for non-float input
    promoted = xp.result_type(*named.values())
    return promoted, _arrays.working_dtype(xp, promoted, "inputs")


def _reduction_weights(xp, weights, reduction: str, n: int, like):
    if weights is None:
        value = 1.0 / (2 * n) if reduction == "mean" else 1.0
        return xp.full((2 * n,), value, dtype=like.dtype, device=_arrays.device_of(like))
    if tuple(weights.shape) != (2 * n,):
        raise ValueError(f"weights must have shape (2N,) = ({2 * n},), got {tuple(weights.shape)}")
    w = _arrays.to_working(xp, weights, like.dtype)
    _arrays.check_finite(xp, w, "weights")
    return w


def _validated_views(xp, z1, z2, dtype):
    z = xp.concat([_arrays.to_working(xp, z1, dtype), _arrays.to_working(xp, z2, dtype)], axis=0)
    n = z1.shape[0]
    for name, part in (("z1", z[:n, ...]), ("z2", z[n:, ...])):
        _arrays.check_finite(xp, part, name)
        _check_nonzero_rows(xp, part, name)
    return z


def pcl_batch(z1, z2, kappa1, kappa2, reduction, weights, *, allow_none: bool) -> Batch:
    """Validate PCL inputs (SPEC section 7) and stack them into a :class:`Batch`."""
    xp = _arrays.namespace_of(z1=z1, z2=z2, kappa1=kappa1, kappa2=kappa2, weights=weights)
    n, d = _check_views(z1, z2)
    for name, k in (("kappa1", kappa1), ("kappa2", kappa2)):
        if tuple(k.shape) != (n,):
            raise ValueError(f"{name} must have shape (N,) = ({n},), got {tuple(k.shape)}")
    reduction = _check_reduction(reduction, allow_none)
    named = {"z1": z1, "z2": z2, "kappa1": kappa1, "kappa2": kappa2}
    if weights is not None:
        named["weights"] = weights
    loss_dtype, dtype = _common_dtype(xp, named)
    z = _validated_views(xp, z1, z2, dtype)
    kappa = xp.concat([_arrays.to_working(xp, kappa1, dtype), _arrays.to_working(xp, kappa2, dtype)])
    for name, part in (("kappa1", kappa[:n]), ("kappa2", kappa[n:])):
        _arrays.check_finite(xp, part, name)
        _arrays.check_nonnegative(xp, part, name)
    w = _reduction_weights(xp, weights, reduction, n, z)
    return Batch(xp, z, kappa, w, n, d, reduction, None, loss_dtype,
                 (z1.dtype, z2.dtype, kappa1.dtype, kappa2.dtype))


def ntxent_batch(z1, z2, temperature, reduction, weights, *, allow_none: bool) -> Batch:
    """Validate NT-Xent inputs (SPEC section 7) and stack them into a :class:`Batch`."""
    xp = _arrays.namespace_of(z1=z1, z2=z2, weights=weights)
    n, d = _check_views(z1, z2)
    temperature = _arrays.check_positive_scalar(temperature, "temperature")
    reduction = _check_reduction(reduction, allow_none)
    named = {"z1": z1, "z2": z2}
    if weights is not None:
        named["weights"] = weights
    loss_dtype, dtype = _common_dtype(xp, named)
    z = _validated_views(xp, z1, z2, dtype)
    w = _reduction_weights(xp, weights, reduction, n, z)
    return Batch(xp, z, None, w, n, d, reduction, temperature, loss_dtype, (z1.dtype, z2.dtype))


def finish_loss(batch: Batch, losses):
    """Per-anchor losses reduced as asked :eq:`eq-reduction`, in the caller's (promoted) dtype."""
    xp = batch.xp
    value = losses if batch.reduction == "none" or losses.ndim == 0 else xp.sum(batch.weights * losses)
    return _arrays.to_output(xp, value, batch.loss_dtype)


def grads_to_input_dtypes(batch: Batch, grads) -> tuple:
    """Each gradient block cast to the dtype of the input it belongs to."""
    return tuple(_arrays.to_output(batch.xp, g, dt) for g, dt in zip(grads, batch.grad_dtypes))
