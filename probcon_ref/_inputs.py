"""Input rules of the contract, section :ref:`7 <contract-inputs>` for the losses, and the batch the math modules receive.

Every check raises with a message naming the argument. After :func:`pcl_batch` or
:func:`ntxent_batch` the math code can assume: one namespace and device, a real floating
working dtype (float32 or float64), finite values, non-zero rows, non-negative kappa small
enough that no logit overflows.

The value rules (finite, non-zero rows, kappa's range, finite weights) are evaluated on the
arrays' device and read back together, as one integer, in one host synchronisation; only
when it reports a broken rule are the rules checked one by one to build the message. The
same read tells the caller two things about the batch that decide how it is computed:
whether the logits need the compensated matrix product (:func:`compensate_above`) and
whether any output could leave the range of its dtype, in which case :func:`finish` checks
the outputs before returning them.

Under tracing (``jax.jit``, ``jax.vmap``) the arrays have no values yet, so that read
cannot happen (:mod:`probcon_ref._rules`): the namespace, shape and dtype rules still raise,
when the function is traced, and the value rules go to the check function of
:func:`probcon_ref._rules.traced_rules`, or are skipped. Of the two facts, the one that
picks the logits' product takes its accurate answer (float64 logits from the compensated
product) and the outputs are not checked: a value outside the rules, or an output beyond
its dtype, gives NaN or infinity instead of an error.

The extra candidates of the contract, section :ref:`3 <contract-loss>` (``extra_z``, and
``extra_kappa`` for the PCL) follow the rules of the batch's rows and concentrations, in the
same read, and take part in the dtype promotion as every input does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import _arrays
from ._rules import ValueRules, traced_check

REDUCTIONS = ("mean", "sum", "none")

#: The logits' rounding that the plain matrix product may leave, relative to the 1e-12
#: per-anchor accuracy of the contract, section 6 (see :func:`compensate_above`).
LOGIT_ROUNDING_BUDGET = 5e-13


def compensate_above(d: int) -> float:
    """The concentration (or ``1/temperature``) above which float64 logits are compensated.

    The matrix product rounds ``c_ab`` by a few ``eps``: at most ``7 eps`` measured for
    Gaussian, non-negative and spiked directions up to d = 4096, within the
    ``(2 + log2 d) eps`` of a blocked summation; ``kappa_b`` multiplies that. Above
    ``budget / ((2 + log2 d) eps)`` that rounding could pass :data:`LOGIT_ROUNDING_BUDGET`,
    and the logits come from the compensated product instead
    (:func:`probcon_ref.loss.compensated_block_logits`): about 750 at d = 2, 250 at d = 128,
    160 at d = 4096. (Directions whose entries are exactly equal make the rounding grow
    with d, to 88 eps at d = 4096; below this threshold they can cost up to ``90 eps kappa``.)
    """
    return LOGIT_ROUNDING_BUDGET / ((2 + math.log2(d)) * 2.0**-52)


def largest_concentration(xp, dtype, n: int, m: int = 0) -> float:
    """The largest kappa (or ``1/temperature``) accepted in working dtype ``dtype`` for ``n`` pairs
    and ``m`` extra candidates.

    ``max / (8 (2N + M))``, which is ``max / (16 N)`` without extra candidates: a gradient sums
    up to ``2N + M`` terms of size ``kappa`` before its row factor applies, and every logit and
    gap is at most ``4 kappa``; below this bound none of them overflows.
    """
    return float(xp.finfo(dtype).max) / (8 * (2 * n + m))


def _range_words(n: int, m: int) -> tuple[str, str]:
    """How messages write the divisor of :func:`largest_concentration` and the counts it uses."""
    if m == 0:
        return "16 N", f"N = {n}"
    return "8 (2N + M)", f"N = {n}, M = {m}"


@dataclass(frozen=True)
class Batch:
    """A validated batch: both views stacked, in the working dtype, and its extra candidates."""

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
    compensated: bool = False  # logits from the compensated product (see compensate_above)
    check_outputs: bool | None = False  # an output may overflow its dtype: finish() checks them; None: traced
    extra_z: Any = None  # (M, d) raw embeddings of the extra candidates, or None (M = 0)
    extra_kappa: Any = None  # (M,) their concentrations (PCL), or None


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


def _check_kappa_range(xp, kappa, name: str, n: int, m: int = 0) -> None:
    top = largest_concentration(xp, kappa.dtype, n, m)
    divisor, counts = _range_words(n, m)
    if not bool(xp.all(kappa <= top)):
        raise ValueError(f"{name} must be at most {top:.3g} (the largest {kappa.dtype} / ({divisor}), {counts}), so "
                         f"that the logits and the gradient's sums stay finite; it holds {float(xp.max(kappa)):.3g}")


def _check_temperature(xp, temperature: float, dtype, n: int, m: int = 0) -> float:
    low = 1 / largest_concentration(xp, dtype, n, m)
    divisor, counts = _range_words(n, m)
    if temperature < low:
        raise ValueError(f"temperature must be at least {low:.3g} in {dtype} for {counts} ({divisor} / the largest "
                         f"{dtype}), so that the logits and the gradient's sums stay finite; got {temperature:.3g}")
    return temperature


def _check_extra_shapes(extra_z, extra_kappa, d: int, *, pcl: bool) -> int:
    """The number M of extra candidates, after their shape rules; 0 without any.

    ``extra_z`` is ``(M, d)`` with the batch's ``d``; the PCL needs ``extra_kappa`` of shape
    ``(M,)`` exactly when ``extra_z`` is given.
    """
    if extra_z is None:
        if extra_kappa is not None:
            raise ValueError("extra_kappa was given without extra_z: the extra candidates' embeddings are extra_z, "
                             "and their concentrations extra_kappa")
        return 0
    if extra_z.ndim != 2 or int(extra_z.shape[1]) != d:
        raise ValueError(f"extra_z must be 2-D with shape (M, d) = (M, {d}), the batch's d, "
                         f"got shape {tuple(extra_z.shape)}")
    m = int(extra_z.shape[0])
    if pcl and extra_kappa is None:
        raise ValueError(f"extra_kappa is required with extra_z: the concentrations of the M = {m} extra "
                         f"candidates, shape (M,)")
    if pcl and tuple(extra_kappa.shape) != (m,):
        raise ValueError(f"extra_kappa must have shape (M,) = ({m},), one per row of extra_z, "
                         f"got {tuple(extra_kappa.shape)}")
    return m


def _view_rules(rules: ValueRules, xp, z, n: int):
    """Finite and non-zero rows, per view; returns the smallest row magnitude (a lower bound
    of the smallest norm) for the overflow estimate."""
    row_max = xp.max(xp.abs(z), axis=1)
    for name, part, rows in (("z1", z[:n, ...], row_max[:n]), ("z2", z[n:, ...], row_max[n:])):
        rules.require(xp.all(xp.isfinite(part)), lambda p=part, m=name: _arrays.check_finite(xp, p, m),
                      f"{name} must be finite; it contains NaN or infinity")
        rules.require(xp.all(rows > 0), lambda p=part, m=name: _check_nonzero_rows(xp, p, m),
                      f"{name} has a zero-norm embedding; its direction is undefined")
    return xp.min(row_max)


def _concentration_rules(rules: ValueRules, xp, named: dict[str, Any], n: int, m: int) -> None:
    """Finite, non-negative and at most :func:`largest_concentration`, for each named array."""
    for name, part in named.items():
        largest = largest_concentration(xp, part.dtype, n, m)
        divisor, counts = _range_words(n, m)
        rules.require(xp.all(xp.isfinite(part)), lambda p=part, a=name: _arrays.check_finite(xp, p, a),
                      f"{name} must be finite; it contains NaN or infinity")
        rules.require(xp.all(part >= 0), lambda p=part, a=name: _arrays.check_nonnegative(xp, p, a),
                      f"{name} must be non-negative; it contains a negative value or NaN")
        rules.require(xp.all(part <= _arrays.const(xp, largest, part)),
                      lambda p=part, a=name: _check_kappa_range(xp, p, a, n, m),
                      f"{name} must be at most {largest:.3g} (the largest {part.dtype} / ({divisor}), {counts})")


def _reduction_weights(xp, rules: ValueRules, weights, reduction: str, n: int, like):
    if weights is None:
        value = 1.0 / (2 * n) if reduction == "mean" else 1.0
        return xp.full((2 * n,), value, dtype=like.dtype, device=_arrays.device_of(like))
    if tuple(weights.shape) != (2 * n,):
        raise ValueError(f"weights must have shape (2N,) = ({2 * n},), got {tuple(weights.shape)}")
    w = _arrays.to_working(xp, weights, like.dtype)
    rules.require(xp.all(xp.isfinite(w)), lambda: _arrays.check_finite(xp, w, "weights"),
                  "weights must be finite; it contains NaN or infinity")
    return w


def _may_overflow(xp, rules: ValueRules, largest_scale, smallest_row, weights, n: int, d: int,
                  out_dtypes, *, m: int = 0, temperature_grad: bool = False) -> int:
    """Register the fact "an output might not fit its dtype", from bounds of the outputs.

    With ``W_ab = w_a (P_ab - Y_ab)`` over the ``2N - 1 + M`` candidates of a row (the ``M``
    extra ones included): ``sum_b |W_ab| <= 2 |w_a|``, so ``|dL/dz_a|`` is at most
    ``2 k (max|w| + sum|w|) / ||z_a|| <= 4 k max(max|w|, sum|w|) / min_a max_i |z_ai|`` and
    ``|dL/dkappa_b| <= 4 sum|w|``; a per-anchor loss is at most
    ``4 k + d (1 + log1p k) + log(2N + M)`` (``k`` the largest concentration, of the extra
    candidates too), and ``|dL/dtau| <= 2 k^2 sum|w|`` (``k = 1/tau``). The bounds are loose
    on purpose and compared in log space, where they cannot overflow: when one exceeds a
    quarter of the smallest output dtype's range, the outputs themselves are checked after
    the computation. ``NaN`` in a bound counts as "may".
    """
    floor = _arrays.const(xp, float(xp.finfo(weights.dtype).smallest_normal), weights)

    def log(x):  # of a non-negative bound, floored so that 0 warns nowhere
        return xp.log(xp.maximum(x, floor))

    w_abs = xp.abs(weights)
    log_w_sum, log_w_max = log(xp.sum(w_abs)), log(xp.max(w_abs))
    log_scale = log(largest_scale)
    # Clamped to the accepted range (beyond it a rule fails anyway), so that 4 k cannot overflow.
    k = xp.minimum(largest_scale, _arrays.const(xp, largest_concentration(xp, weights.dtype, n, m), weights))
    per_anchor = 4 * k + d * (1 + xp.log1p(k)) + math.log(2 * n + m)
    bounds = [
        math.log(4) + log_scale + xp.maximum(log_w_max, log_w_sum) - log(smallest_row),  # dL/dz
        math.log(4) + log_w_sum,  # dL/dkappa
        log_w_sum + log(per_anchor),  # the loss
    ]
    if temperature_grad:
        bounds.append(math.log(2) + 2 * log_scale + log_w_sum)  # dL/dtau
    log_bound = xp.max(xp.stack(bounds))
    limit = math.log(min(float(xp.finfo(dt).max) for dt in out_dtypes) / 4)
    return rules.fact(~(log_bound <= limit))


# ---------------------------------------------------------------------------------------
# The special functions' arguments
# ---------------------------------------------------------------------------------------


def order(nu, name: str = "nu") -> float:
    """The order as a Python float: any real scalar (Python, NumPy, 0-d array), finite and ``>= 0``."""
    nu = _arrays.real_scalar(nu, name)
    if not math.isfinite(nu) or nu < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {nu}")
    return nu


def dimension(d) -> int:
    """The dimension as a Python int: any integer type (``operator.index``), not bool, ``>= 2``."""
    d = _arrays.integer_scalar(d, "d")
    if d < 2:
        raise ValueError(f"d must be >= 2, got {d}")
    return d


def _check_below_one(xp, r, name: str) -> None:
    if not bool(xp.all((r >= 0) & (r < 1))):
        raise ValueError(f"{name} must lie in [0, 1)")


def special_argument(x, name: str, *, below_one: bool = False):
    """``(xp, x in its working dtype, the caller's dtype)`` for a special function's argument.

    ``x`` is finite and ``>= 0`` (``below_one``: in ``[0, 1)``); the rules are read back in one
    host synchronisation (:class:`ValueRules`).
    """
    x = _arrays.float_array(x, name)
    xp = _arrays.namespace_of(**{name: x})
    xw = _arrays.to_working(xp, x, _arrays.working_dtype(xp, x.dtype, name))
    rules = ValueRules(xp)
    if below_one:
        rules.require(xp.all(xp.isfinite(xw)), lambda: _arrays.check_finite(xp, xw, name),
                      f"{name} must be finite; it contains NaN or infinity")
        rules.require(xp.all((xw >= 0) & (xw < 1)), lambda: _check_below_one(xp, xw, name),
                      f"{name} must lie in [0, 1)")
    else:
        rules.require(xp.all(xw >= 0), lambda: _arrays.check_nonnegative(xp, xw, name),
                      f"{name} must be non-negative; it contains a negative value or NaN")
        rules.require(xp.all(xp.isfinite(xw)), lambda: _arrays.check_finite(xp, xw, name),
                      f"{name} must be finite; it contains NaN or infinity")
    rules.read()
    return xp, xw, x.dtype


# ---------------------------------------------------------------------------------------
# The losses' arguments
# ---------------------------------------------------------------------------------------


def _extra_candidates(rules: ValueRules, xp, extra_z, extra_kappa, n: int, m: int, dtype):
    """The extra candidates in the working dtype, with their value rules registered: those of
    the batch's rows and concentrations. ``(None, None)`` when there are none (M = 0)."""
    if m == 0:
        return None, None
    rows = _arrays.to_working(xp, extra_z, dtype)
    rules.require(xp.all(xp.isfinite(rows)), lambda: _arrays.check_finite(xp, rows, "extra_z"),
                  "extra_z must be finite; it contains NaN or infinity")
    rules.require(xp.all(xp.max(xp.abs(rows), axis=1) > 0), lambda: _check_nonzero_rows(xp, rows, "extra_z"),
                  "extra_z has a zero-norm embedding; its direction is undefined")
    if extra_kappa is None:
        return rows, None
    kappa = _arrays.to_working(xp, extra_kappa, dtype)
    _concentration_rules(rules, xp, {"extra_kappa": kappa}, n, m)
    return rows, kappa


def _present(**arrays) -> dict[str, Any]:
    return {name: a for name, a in arrays.items() if a is not None}


def pcl_batch(z1, z2, kappa1, kappa2, reduction, weights, *, allow_none: bool, extra_z=None,
              extra_kappa=None) -> Batch:
    """Validate PCL inputs (the contract, section :ref:`7 <contract-inputs>`), with the extra
    candidates of section :ref:`3 <contract-loss>` if any, and stack them into a :class:`Batch`."""
    named = _present(z1=z1, z2=z2, kappa1=kappa1, kappa2=kappa2, weights=weights, extra_z=extra_z,
                     extra_kappa=extra_kappa)
    xp = _arrays.namespace_of(**named)
    n, d = _check_views(z1, z2)
    for name, k in (("kappa1", kappa1), ("kappa2", kappa2)):
        if tuple(k.shape) != (n,):
            raise ValueError(f"{name} must have shape (N,) = ({n},), got {tuple(k.shape)}")
    m = _check_extra_shapes(extra_z, extra_kappa, d, pcl=True)
    reduction = _check_reduction(reduction, allow_none)
    loss_dtype, dtype = _common_dtype(xp, named)
    rules = ValueRules(xp)
    z = xp.concat([_arrays.to_working(xp, z1, dtype), _arrays.to_working(xp, z2, dtype)], axis=0)
    smallest_row = _view_rules(rules, xp, z, n)
    kappa = xp.concat([_arrays.to_working(xp, kappa1, dtype), _arrays.to_working(xp, kappa2, dtype)])
    _concentration_rules(rules, xp, {"kappa1": kappa[:n], "kappa2": kappa[n:]}, n, m)
    extra_rows, extra_kappa = _extra_candidates(rules, xp, extra_z, extra_kappa, n, m, dtype)
    w = _reduction_weights(xp, rules, weights, reduction, n, z)
    largest = xp.max(kappa) if extra_kappa is None else xp.maximum(xp.max(kappa), xp.max(extra_kappa))
    grad_dtypes = (z1.dtype, z2.dtype, kappa1.dtype, kappa2.dtype)
    overflow = _may_overflow(xp, rules, largest, smallest_row, w, n, d, (loss_dtype, *grad_dtypes), m=m)
    compensate = rules.fact(largest > compensate_above(d)) if dtype == xp.float64 else None
    facts = rules.read()
    # Traced (facts unknown): the compensated product, accurate for every kappa.
    return Batch(xp, z, kappa, w, n, d, reduction, None, loss_dtype, grad_dtypes,
                 compensated=compensate is not None and facts[compensate] is not False,
                 check_outputs=facts[overflow], extra_z=extra_rows, extra_kappa=extra_kappa)


def ntxent_batch(z1, z2, temperature, reduction, weights, *, allow_none: bool, extra_z=None,
                 temperature_grad: bool = False) -> Batch:
    """Validate NT-Xent inputs (the contract, section :ref:`7 <contract-inputs>`), with the extra
    candidates of section :ref:`3 <contract-loss>` if any, and stack them into a :class:`Batch`.

    ``temperature_grad``: the gradients will include ``dL/dtau``, in the loss's dtype.
    """
    named = _present(z1=z1, z2=z2, weights=weights, extra_z=extra_z)
    xp = _arrays.namespace_of(**named)
    n, d = _check_views(z1, z2)
    m = _check_extra_shapes(extra_z, None, d, pcl=False)
    temperature = _arrays.check_positive_scalar(temperature, "temperature")
    if not isinstance(temperature_grad, bool):
        raise TypeError(f"temperature_grad must be True or False, got {type(temperature_grad).__name__}")
    reduction = _check_reduction(reduction, allow_none)
    loss_dtype, dtype = _common_dtype(xp, named)
    _check_temperature(xp, temperature, dtype, n, m)
    rules = ValueRules(xp)
    z = xp.concat([_arrays.to_working(xp, z1, dtype), _arrays.to_working(xp, z2, dtype)], axis=0)
    smallest_row = _view_rules(rules, xp, z, n)
    extra_rows, _ = _extra_candidates(rules, xp, extra_z, None, n, m, dtype)
    w = _reduction_weights(xp, rules, weights, reduction, n, z)
    scale = _arrays.const(xp, 1 / temperature, z)
    grad_dtypes = (z1.dtype, z2.dtype, *((loss_dtype,) if temperature_grad else ()))
    overflow = _may_overflow(xp, rules, scale, smallest_row, w, n, d, (loss_dtype, *grad_dtypes), m=m,
                             temperature_grad=temperature_grad)
    facts = rules.read()
    compensated = dtype == xp.float64 and 1 / temperature > compensate_above(d)
    return Batch(xp, z, None, w, n, d, reduction, temperature, loss_dtype, grad_dtypes,
                 compensated=compensated, check_outputs=facts[overflow], extra_z=extra_rows)


def finish_loss(batch: Batch, losses):
    """Per-anchor losses reduced as asked :eq:`eq-reduction`, in the caller's (promoted) dtype."""
    xp = batch.xp
    value = losses if batch.reduction == "none" or losses.ndim == 0 else xp.sum(batch.weights * losses)
    return _arrays.to_output(xp, value, batch.loss_dtype)


def grads_to_input_dtypes(batch: Batch, grads) -> tuple:
    """Each gradient block cast to the dtype of the input it belongs to."""
    return tuple(_arrays.to_output(batch.xp, g, dt) for g, dt in zip(grads, batch.grad_dtypes))


GRAD_NAMES = {4: ("z1", "z2", "kappa1", "kappa2"), 3: ("z1", "z2", "temperature"), 2: ("z1", "z2")}


def finish(batch: Batch, losses, grads=None):
    """The loss (and gradients) in the caller's dtypes, checked when they may have overflowed.

    Only a batch whose bounds allow an output beyond its dtype's range is checked (a second
    host synchronisation, for such batches alone), before the cast to the caller's dtype:
    an output that is not finite, or whose magnitude exceeds the largest number of that
    dtype, is an ``OverflowError`` that names it, never a silent inf. Under tracing
    (``check_outputs`` unknown) the same conditions go to the check function of
    :func:`probcon_ref._rules.traced_rules`, when one is set.
    """
    xp = batch.xp
    value = losses if batch.reduction == "none" or losses.ndim == 0 else xp.sum(batch.weights * losses)
    named = [("the loss", value, batch.loss_dtype)]
    if grads is not None:
        named += [(f"the gradient with respect to {name}", g, dt)
                  for name, g, dt in zip(GRAD_NAMES[len(grads)], grads, batch.grad_dtypes)]
    check = traced_check() if batch.check_outputs is None else None
    for what, a, dt in named if check is not None else ():
        check(xp.all(xp.abs(a) <= float(xp.finfo(dt).max)),
              f"{what} is not representable in {dt}: its magnitude exceeds the largest {dt}")
    if batch.check_outputs:
        fits = [xp.all(xp.abs(a) <= float(xp.finfo(dt).max)) for _, a, dt in named]  # False for NaN too
        if not bool(xp.all(xp.stack(fits))):
            for (what, _, dt), ok in zip(named, fits):
                if not bool(ok):
                    raise OverflowError(f"{what} is not representable in {dt}: its magnitude exceeds "
                                        f"the largest {dt} ({float(xp.finfo(dt).max):.5g})")
    out = [_arrays.to_output(xp, a, dt) for _, a, dt in named]
    return out[0] if grads is None else (out[0], tuple(out[1:]))
