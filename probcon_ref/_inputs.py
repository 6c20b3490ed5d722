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
cannot happen (:func:`probcon_ref._arrays.read_int`): the namespace, shape and dtype rules
still raise, when the function is traced, and the value rules are not evaluated. Each is
handed instead to the check function of :func:`traced_rules`, when one is set (the JAX
adapter's ``jax.experimental.checkify`` checks); without one they are skipped. Of the two
facts, the one that picks the logits' product takes its accurate answer (float64 logits
from the compensated product) and the outputs are not checked: a value outside the rules,
or an output beyond its dtype, gives NaN or infinity instead of an error.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass
from typing import Any, Callable

from . import _arrays

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


def largest_concentration(xp, dtype, n: int) -> float:
    """The largest kappa (or ``1/temperature``) accepted in working dtype ``dtype`` for ``n`` pairs.

    ``max / (16 N)``: a gradient sums up to ``2N`` terms of size ``kappa`` before its row factor
    applies, and every logit and gap is at most ``4 kappa``; below this bound none of them
    overflows.
    """
    return float(xp.finfo(dtype).max) / (16 * n)


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
    compensated: bool = False  # logits from the compensated product (see compensate_above)
    check_outputs: bool | None = False  # an output may overflow its dtype: finish() checks them; None: traced


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


def _check_kappa_range(xp, kappa, name: str, n: int) -> None:
    top = largest_concentration(xp, kappa.dtype, n)
    if not bool(xp.all(kappa <= top)):
        raise ValueError(f"{name} must be at most {top:.3g} (the largest {kappa.dtype} / (16 N), N = {n}), so "
                         f"that the logits and the gradient's sums stay finite; it holds {float(xp.max(kappa)):.3g}")


def _check_temperature(xp, temperature: float, dtype, n: int) -> float:
    low = 1 / largest_concentration(xp, dtype, n)
    if temperature < low:
        raise ValueError(f"temperature must be at least {low:.3g} in {dtype} for N = {n} (16 N / the largest "
                         f"{dtype}), so that the logits and the gradient's sums stay finite; got {temperature:.3g}")
    return temperature


#: The check function of :func:`traced_rules`, or None.
_TRACED_CHECK: contextvars.ContextVar = contextvars.ContextVar("probcon_ref_traced_check", default=None)


@contextlib.contextmanager
def traced_rules(check: Callable[[Any, str], None] | None):
    """Within the block, value rules met under tracing go to ``check(holds, message)``.

    ``holds`` is the rule as a 0-d boolean array (true when it holds) and ``message`` the
    error it stands for; ``None`` restores the default, which skips them. The setting is
    read while a function is traced, so it belongs inside the function being transformed.
    """
    token = _TRACED_CHECK.set(check)
    try:
        yield
    finally:
        _TRACED_CHECK.reset(token)


class ValueRules:
    """The value rules of one call, reduced on the device and read back once.

    Each rule is a 0-d boolean array that is true when the rule holds, with the function
    that raises its message and that message in words; :meth:`read` combines them, with the
    batch's other device-side facts, into one integer and converts it to a Python int: one
    host synchronisation. Under tracing there is nothing to read: the rules go to the
    check function of :func:`traced_rules` (if any) and every fact is ``None``, unknown.
    """

    def __init__(self, xp):
        self.xp = xp
        self.rules: list[tuple[Any, Callable[[], None], str]] = []
        self.facts: list[Any] = []

    def require(self, holds, explain: Callable[[], None], message: str) -> None:
        self.rules.append((holds, explain, message))

    def fact(self, value) -> int:
        """Add a 0-d boolean to be read with the rules; returns its index in :meth:`read`."""
        self.facts.append(value)
        return len(self.facts) - 1

    def read(self) -> list[bool | None]:
        """Raise the first broken rule's error, else return the facts as Python booleans."""
        xp = self.xp
        flags = [~holds for holds, _, _ in self.rules] + list(self.facts)
        if not flags:
            return []
        packed = xp.int32 if len(flags) < 31 else xp.int64
        bits = xp.stack([xp.astype(f, packed) for f in flags])
        powers = xp.asarray([2**i for i in range(len(flags))], dtype=packed, device=_arrays.device_of(bits))
        code = _arrays.read_int(xp.sum(bits * powers))  # the one host synchronisation
        if code is None:  # traced: no values to read
            check = _TRACED_CHECK.get()
            for holds, _, message in self.rules if check is not None else ():
                check(holds, message)
            return [None] * len(self.facts)
        if code & ((1 << len(self.rules)) - 1):
            for _, explain, _ in self.rules:
                explain()
            raise AssertionError("a value rule failed on the device but not when checked alone")
        return [bool(code >> (len(self.rules) + i) & 1) for i in range(len(self.facts))]


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


def _kappa_rules(rules: ValueRules, xp, kappa, n: int) -> None:
    largest = largest_concentration(xp, kappa.dtype, n)
    top = _arrays.const(xp, largest, kappa)
    for name, part in (("kappa1", kappa[:n]), ("kappa2", kappa[n:])):
        rules.require(xp.all(xp.isfinite(part)), lambda p=part, m=name: _arrays.check_finite(xp, p, m),
                      f"{name} must be finite; it contains NaN or infinity")
        rules.require(xp.all(part >= 0), lambda p=part, m=name: _arrays.check_nonnegative(xp, p, m),
                      f"{name} must be non-negative; it contains a negative value or NaN")
        rules.require(xp.all(part <= top), lambda p=part, m=name: _check_kappa_range(xp, p, m, n),
                      f"{name} must be at most {largest:.3g} (the largest {kappa.dtype} / (16 N), N = {n})")


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
                  out_dtypes) -> int:
    """Register the fact "an output might not fit its dtype", from bounds of the outputs.

    With ``W_ab = w_a (P_ab - Y_ab)``: ``sum_b |W_ab| <= 2 |w_a|``, so ``|dL/dz_a|`` is at most
    ``2 k (max|w| + sum|w|) / ||z_a|| <= 4 k max(max|w|, sum|w|) / min_a max_i |z_ai|`` and
    ``|dL/dkappa_b| <= 4 sum|w|``; a per-anchor loss is at most ``4 k + d (1 + log1p k) + log 2N``
    (``k`` the largest concentration). The bounds are loose on purpose and compared in log
    space, where they cannot overflow: when one exceeds a quarter of the smallest output
    dtype's range, the outputs themselves are checked after the computation. ``NaN`` in a
    bound counts as "may".
    """
    floor = _arrays.const(xp, float(xp.finfo(weights.dtype).smallest_normal), weights)

    def log(x):  # of a non-negative bound, floored so that 0 warns nowhere
        return xp.log(xp.maximum(x, floor))

    w_abs = xp.abs(weights)
    log_w_sum, log_w_max = log(xp.sum(w_abs)), log(xp.max(w_abs))
    log_scale = log(largest_scale)
    # Clamped to the accepted range (beyond it a rule fails anyway), so that 4 k cannot overflow.
    k = xp.minimum(largest_scale, _arrays.const(xp, largest_concentration(xp, weights.dtype, n), weights))
    per_anchor = 4 * k + d * (1 + xp.log1p(k)) + math.log(2 * n)
    log_bound = xp.max(xp.stack([
        math.log(4) + log_scale + xp.maximum(log_w_max, log_w_sum) - log(smallest_row),  # dL/dz
        math.log(4) + log_w_sum,  # dL/dkappa
        log_w_sum + log(per_anchor),  # the loss
    ]))
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


def pcl_batch(z1, z2, kappa1, kappa2, reduction, weights, *, allow_none: bool) -> Batch:
    """Validate PCL inputs (the contract, section :ref:`7 <contract-inputs>`) and stack them into a :class:`Batch`."""
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
    rules = ValueRules(xp)
    z = xp.concat([_arrays.to_working(xp, z1, dtype), _arrays.to_working(xp, z2, dtype)], axis=0)
    smallest_row = _view_rules(rules, xp, z, n)
    kappa = xp.concat([_arrays.to_working(xp, kappa1, dtype), _arrays.to_working(xp, kappa2, dtype)])
    _kappa_rules(rules, xp, kappa, n)
    w = _reduction_weights(xp, rules, weights, reduction, n, z)
    largest = xp.max(kappa)
    grad_dtypes = (z1.dtype, z2.dtype, kappa1.dtype, kappa2.dtype)
    overflow = _may_overflow(xp, rules, largest, smallest_row, w, n, d, (loss_dtype, *grad_dtypes))
    compensate = rules.fact(largest > compensate_above(d)) if dtype == xp.float64 else None
    facts = rules.read()
    # Traced (facts unknown): the compensated product, accurate for every kappa.
    return Batch(xp, z, kappa, w, n, d, reduction, None, loss_dtype, grad_dtypes,
                 compensated=compensate is not None and facts[compensate] is not False,
                 check_outputs=facts[overflow])


def ntxent_batch(z1, z2, temperature, reduction, weights, *, allow_none: bool) -> Batch:
    """Validate NT-Xent inputs (the contract, section :ref:`7 <contract-inputs>`) and stack them into a :class:`Batch`."""
    xp = _arrays.namespace_of(z1=z1, z2=z2, weights=weights)
    n, d = _check_views(z1, z2)
    temperature = _arrays.check_positive_scalar(temperature, "temperature")
    reduction = _check_reduction(reduction, allow_none)
    named = {"z1": z1, "z2": z2}
    if weights is not None:
        named["weights"] = weights
    loss_dtype, dtype = _common_dtype(xp, named)
    _check_temperature(xp, temperature, dtype, n)
    rules = ValueRules(xp)
    z = xp.concat([_arrays.to_working(xp, z1, dtype), _arrays.to_working(xp, z2, dtype)], axis=0)
    smallest_row = _view_rules(rules, xp, z, n)
    w = _reduction_weights(xp, rules, weights, reduction, n, z)
    scale = _arrays.const(xp, 1 / temperature, z)
    grad_dtypes = (z1.dtype, z2.dtype)
    overflow = _may_overflow(xp, rules, scale, smallest_row, w, n, d, (loss_dtype, *grad_dtypes))
    facts = rules.read()
    compensated = dtype == xp.float64 and 1 / temperature > compensate_above(d)
    return Batch(xp, z, None, w, n, d, reduction, temperature, loss_dtype, grad_dtypes,
                 compensated=compensated, check_outputs=facts[overflow])


def finish_loss(batch: Batch, losses):
    """Per-anchor losses reduced as asked :eq:`eq-reduction`, in the caller's (promoted) dtype."""
    xp = batch.xp
    value = losses if batch.reduction == "none" or losses.ndim == 0 else xp.sum(batch.weights * losses)
    return _arrays.to_output(xp, value, batch.loss_dtype)


def grads_to_input_dtypes(batch: Batch, grads) -> tuple:
    """Each gradient block cast to the dtype of the input it belongs to."""
    return tuple(_arrays.to_output(batch.xp, g, dt) for g, dt in zip(grads, batch.grad_dtypes))


GRAD_NAMES = {4: ("z1", "z2", "kappa1", "kappa2"), 2: ("z1", "z2")}


def finish(batch: Batch, losses, grads=None):
    """The loss (and gradients) in the caller's dtypes, checked when they may have overflowed.

    Only a batch whose bounds allow an output beyond its dtype's range is checked (a second
    host synchronisation, for such batches alone), before the cast to the caller's dtype:
    an output that is not finite, or whose magnitude exceeds the largest number of that
    dtype, is an ``OverflowError`` that names it, never a silent inf. Under tracing
    (``check_outputs`` unknown) the same conditions go to the check function of
    :func:`traced_rules`, when one is set.
    """
    xp = batch.xp
    value = losses if batch.reduction == "none" or losses.ndim == 0 else xp.sum(batch.weights * losses)
    named = [("the loss", value, batch.loss_dtype)]
    if grads is not None:
        named += [(f"the gradient with respect to {name}", g, dt)
                  for name, g, dt in zip(GRAD_NAMES[len(grads)], grads, batch.grad_dtypes)]
    check = _TRACED_CHECK.get() if batch.check_outputs is None else None
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
