"""Running the callable on one case in one dtype, and judging the result: :class:`RunResult`.

The callable's failure (an exception, a wrong shape, NaN, a wrong dtype, an error beyond
tolerance) is a result, never an error of ``validate``; what it returned is kept on the
result for the diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cases import Case
from .convention import Convention, extra_keys, grad_keys
from .frameworks import Framework, dtype_name, to_numpy
from .measure import Reference, block_error, cached_reference, loss_error

__all__ = ["RunResult", "rounded_inputs", "call", "run_case"]


@dataclass
class RunResult:
    """One case in one dtype."""

    case: str
    dtype: str
    n: int
    d: int
    tags: tuple
    status: str  # "pass", "fail", "error" or "skip"
    errors: dict = field(default_factory=dict)  # quantity -> error measure (nan for non-finite)
    tolerances: dict = field(default_factory=dict)  # quantity -> the tolerance it was held to
    message: str = ""
    gradients: str = "none"  # how gradients were obtained: "autograd", "returned" or "none"
    wrong: tuple = ()  # quantities beyond tolerance
    nonfinite: tuple = ()  # quantities holding NaN or infinity
    # kept for the diagnosis, not reported
    _got_loss: Any = None
    _got_grads: dict | None = None
    _ref: Reference | None = None
    _inputs: dict | None = None
    m: int = 0  # extra candidates

    @property
    def run(self) -> tuple:
        """``(case name, dtype)``: how the report and the diagnoses name this run."""
        return (self.case, self.dtype)

    def to_dict(self) -> dict:
        """The run as strict JSON values (non-finite errors as the strings "nan" and "inf")."""
        def num(v):
            return v if math.isfinite(v) else ("nan" if math.isnan(v) else "inf")
        return {"case": self.case, "dtype": self.dtype, "n": self.n, "d": self.d, "m": self.m,
                "tags": list(self.tags), "status": self.status, "errors": {k: num(v) for k, v in self.errors.items()},
                "tolerances": dict(self.tolerances), "gradients": self.gradients, "message": self.message}


def rounded_inputs(case: Case, conv: Convention, dtype: str):
    """(arguments in numpy of ``dtype`` for the candidate, float64 inputs for the reference),
    the extra candidates among them where ``conv`` passes them (concentrations in the form
    ``conv.kappa`` says, theirs too)."""
    args = {}
    ref = {}
    extra = extra_keys(conv)
    for k in ("z1", "z2") + extra[:1]:
        args[k] = case.inputs[k].astype(dtype)
        ref[k] = args[k].astype(np.float64)
    if conv.loss == "pcl":
        for k in ("kappa1", "kappa2") + extra[1:]:
            if conv.kappa == "log":
                with np.errstate(divide="ignore"):
                    args[k] = np.log(case.inputs[k]).astype(dtype)
                ref[k] = np.exp(args[k].astype(np.float64))
            else:
                args[k] = case.inputs[k].astype(dtype)
                ref[k] = args[k].astype(np.float64)
    return args, ref


def _split_output(out, conv: Convention):
    """(loss, grads-or-None) from what the candidate returned."""
    if isinstance(out, (tuple, list)) and len(out) == 2 and not np.isscalar(out[1]):
        loss, grads = out
        names = grad_keys(conv)
        if isinstance(grads, dict):
            missing = [k for k in names if k not in grads]
            if missing:
                raise ValueError(f"returned gradients lack {missing}; expected keys {names}")
            return loss, {k: grads[k] for k in names}
        grads = list(grads)
        if len(grads) != len(names):
            raise ValueError(f"returned {len(grads)} gradients, expected {len(names)} {names}")
        return loss, dict(zip(names, grads))
    return out, None


def _autograd(fw: Framework, loss, arrays: dict, names, args: dict):
    """The gradients of ``loss`` (summed if a vector) with respect to ``arrays``, by autograd."""
    target = loss.sum() if loss.ndim else loss
    inputs = [arrays[k] for k in names]
    if target.requires_grad:
        g = fw.torch.autograd.grad(target, inputs, allow_unused=True)
    else:  # the loss does not depend on the inputs (e.g. N = 1 in some libraries)
        g = [None] * len(inputs)
    grads = {k: (np.zeros(args[k].shape) if gi is None else to_numpy(gi)) for k, gi in zip(names, g)}
    return grads, {k: dtype_name(gi) for k, gi in zip(names, g) if gi is not None}


def call(fn, fw: Framework, conv: Convention, case: Case, args: dict, dtype: str):
    """Call the candidate; returns (loss as numpy, grads as numpy dict or None, how, the
    dtype name of each output)."""
    want_autograd = fw.name == "torch" and conv.gradients in ("auto", "autograd")
    names = grad_keys(conv)
    arrays = {k: fw.array(args[k], dtype, requires_grad=want_autograd) for k in names}
    extra = [fw.array(args[k], dtype) for k in extra_keys(conv)]  # constants: no gradient flows to them
    if conv.loss == "pcl":
        out = fn(arrays["z1"], arrays["z2"], arrays["kappa1"], arrays["kappa2"], *extra)
    elif conv.temperature is None:
        out = fn(arrays["z1"], arrays["z2"], case.temperature, *extra)
    else:
        out = fn(arrays["z1"], arrays["z2"], *extra)
    loss, grads = _split_output(out, conv)
    how, got_grads = "none", None
    dtypes = {"loss": dtype_name(loss)}
    by_jax_grad = getattr(fn, "gradient_source", None) == "jax.grad"  # see Framework.wrap
    if grads is not None and (by_jax_grad or conv.gradients in ("auto", "returned")):
        dtypes.update({k: dtype_name(v) for k, v in grads.items()})
        got_grads = {k: to_numpy(v) for k, v in grads.items()}
        how = "autograd" if by_jax_grad else "returned"
    elif conv.gradients == "returned":
        raise ValueError("gradients='returned' but the function returned no gradients")
    elif want_autograd and fw.is_tensor(loss):
        got_grads, grad_dtypes = _autograd(fw, loss, arrays, names, args)
        dtypes.update(grad_dtypes)
        how = "autograd"
    elif conv.gradients == "autograd":
        raise ValueError("gradients='autograd' but the function did not return a torch tensor")
    return to_numpy(loss), got_grads, how, dtypes


def _check_dtypes(dtypes: dict, dtype: str) -> str:
    """A message naming the outputs whose dtype is not the inputs' ``dtype`` ("" if none)."""
    bad: dict = {}
    for k, name in dtypes.items():
        if (name if name != "Python float" else "float64") != dtype:
            bad.setdefault(name, []).append(k)
    return "; ".join(f"{', '.join(keys)} in {name}, expected {dtype} (the inputs' dtype)"
                     for name, keys in bad.items())


def _check_shapes(loss: np.ndarray, grads, case: Case, conv: Convention) -> str:
    """A message on the first output whose shape is not the declared one ("" if none)."""
    n = case.n
    if conv.reduction == "none":
        if loss.shape != (2 * n,):
            return f"loss has shape {loss.shape}, expected (2N,) = ({2 * n},) for reduction 'none'"
    elif loss.size != 1:
        return f"loss has shape {loss.shape}, expected a scalar for reduction {conv.reduction!r}"
    if grads:
        for k, g in grads.items():
            want = case.inputs[k].shape
            if g.shape != want:
                return f"gradient {k} has shape {g.shape}, expected {want}"
    return ""


def _judge(loss_value, loss, grads, ref: Reference, conv: Convention, out_dtypes: dict, dtype: str) -> dict:
    """Errors, tolerances, the wrong and the non-finite quantities, the status and the message
    of a run whose outputs have the right shapes."""
    errors, tolerances = {}, {}
    errors["loss"], tolerances["loss"] = loss_error(loss_value, ref, conv.reduction)
    for k, g in (grads or {}).items():
        errors[k], tolerances[k] = block_error(g, ref.grads[k], ref.grad_scale[k]), ref.grad_tol
    got = {"loss": loss, **(grads or {})}
    nonfinite = tuple(k for k in errors if not np.all(np.isfinite(got[k])))
    wrong = tuple(k for k in errors if k not in nonfinite and not errors[k] <= tolerances[k])
    dtype_msg = _check_dtypes(out_dtypes, dtype)
    parts = []
    if dtype_msg:
        parts.append("dtype: " + dtype_msg)
        wrong = ("dtype",) + wrong
    if nonfinite:
        parts.append("non-finite " + ", ".join(nonfinite))
    if [k for k in wrong if k != "dtype"]:
        parts.append("beyond tolerance: " + ", ".join(k for k in wrong if k != "dtype"))
    return dict(status="fail" if parts else "pass", errors=errors, tolerances=tolerances,
                message="; ".join(parts), wrong=wrong, nonfinite=nonfinite)


def run_case(fn, fw: Framework, conv: Convention, case: Case, dtype: str) -> RunResult:
    """Run ``fn`` on ``case`` in ``dtype`` and measure it against the reference."""
    base = dict(case=case.name, dtype=dtype, n=case.n, d=case.d, m=case.m if conv.extra_candidates else 0,
                tags=tuple(sorted(case.tags)))
    given = ("kappa1", "kappa2") + extra_keys(conv)[1:]
    if conv.kappa == "log" and any(np.any(case.inputs[k] == 0) for k in given):
        return RunResult(status="skip", message="kappa = 0 has no finite log-kappa", **base)
    args, x = rounded_inputs(case, conv, dtype)
    ref = cached_reference(case, conv, dtype, x)
    try:
        with np.errstate(all="ignore"):  # NaN and infinity are reported, not warned about
            loss, grads, how, out_dtypes = call(fn, fw, conv, case, args, dtype)
    except Exception as exc:  # the candidate's failure is a result, not an error of ours
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return RunResult(status="error", message=f"{type(exc).__name__}: {text}"[:300], _ref=ref, _inputs=x, **base)
    shape_msg = _check_shapes(loss, grads, case, conv)
    if shape_msg:
        return RunResult(status="fail", message=shape_msg, gradients=how, wrong=("shape",), _ref=ref,
                         _inputs=x, **base)
    loss_value = loss if conv.reduction == "none" else float(loss.reshape(()))
    verdict = _judge(loss_value, loss, grads, ref, conv, out_dtypes, dtype)
    return RunResult(gradients=how, _got_loss=loss_value, _got_grads=grads, _ref=ref, _inputs=x,
                     **verdict, **base)
