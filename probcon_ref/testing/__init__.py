"""Validate another implementation of the PCL or NT-Xent against the reference.

``probcon-ref validate MODULE:CALLABLE`` and :func:`validate` call a user's loss function on a
battery of cases covering every regime of SPEC section 6 (random batches; d = 2, 3, odd and
large; tiny, huge and zero kappa; identical and antipodal views; tiny, huge and mixed raw
norms; N = 1), in float64 and float32, and compare its loss, and its gradients when it
returns them or PyTorch autograd can take them, with the reference evaluated in NumPy
float64 on the same (rounded) inputs. It prints a per-case report with the worst errors and
a verdict, and where the failures have a recognisable signature it says which
(:mod:`probcon_ref.testing.diagnose`).

The callable is called as

* PCL: ``fn(z1, z2, kappa1, kappa2)`` (``kappa`` or, with ``kappa="log"``, log-kappa),
* NT-Xent: ``fn(z1, z2, temperature)``, or ``fn(z1, z2)`` when a fixed ``temperature`` is given,

with arrays of the chosen framework, and returns the loss, or ``(loss, grads)`` where
``grads`` is a sequence ``(z1, z2[, kappa1, kappa2])`` or a mapping with those keys.

Error measure: for each quantity, ``max |got - ref| / max(max |ref|, scale)``, where the scale
is the rounding level of that quantity: for the loss, the size of the logits' ingredients
(``|log C_d(kappa_b)| + kappa_b``, or ``1/tau``); for a gradient block, the size its terms can
reach (``w_a kappa_b / ||z_a||``...). A correct implementation in a given precision stays
below the SPEC section 6 tolerances even where the loss is tiny and its relative error
large; a genuine mistake does not.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from . import diagnose as dg
from ..loss import ntxent_loss, ntxent_loss_and_grad, pcl_loss, pcl_loss_and_grad

__all__ = ["Convention", "Case", "RunResult", "Report", "battery", "validate", "load_callable",
           "TOLERANCES"]

#: SPEC section 6: (loss, gradient block) tolerances of the error measure, by dtype.
TOLERANCES = {"float64": (1e-12, 1e-10), "float32": (1e-5, 1e-4)}
#: Where the logits are large (size S: ``max_b |log C_d(kappa_b)| + kappa_b``, or ``1/tau``),
#: their own rounding moves a correct implementation's per-anchor losses and gradients by up
#: to a few ``eps * S`` relative (a straightforward PyTorch PCL stays within half of ROUNDING:
#: the tests check it); the tolerances are raised to ``ROUNDING * eps * S`` there, and the
#: report says so.
ROUNDING = 8
#: Absolute floor of a per-anchor loss, in smallest subnormals of the output dtype per
#: candidate: a term that underflows keeps only an absolute error of that size.
SUBNORMALS = 4
# A result "matches" a diagnostic variant when it agrees with it this well.
_MATCH = {"float64": 1e-9, "float32": 1e-4}
# The precision signatures: an error within this many units of roundoff of the logits' size
# (loss) or of the positive's terms with a weight of size w_a (gradient). The textbook forms
# stay within a quarter of it (the tests check it).
_ROUNDING_LEVEL = 16
# ... and only where the true result is at most this fraction of that size (a cancellation).
_SMALL = 1e-2

LOSSES = ("pcl", "ntxent")
FRAMEWORKS = ("numpy", "torch", "cupy")
REDUCTIONS = ("mean", "sum", "none", "pair-mean")
KAPPA_MODES = ("kappa", "log")
GRADIENTS = ("auto", "autograd", "returned", "none")
DTYPES = ("float64", "float32")

_REDUCTION_WORDS = {"mean": "mean over the 2N anchors", "sum": "sum over the 2N anchors",
                    "none": "per-anchor losses (2N,)", "pair-mean": "sum over the 2N anchors / N"}


# ---------------------------------------------------------------------------------------
# Conventions and cases
# ---------------------------------------------------------------------------------------


def _choice(value, allowed, name):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


@dataclass(frozen=True)
class Convention:
    """How the validated function is called and what it returns."""

    loss: str = "pcl"
    framework: str = "numpy"
    device: str | None = None
    reduction: str = "mean"
    kappa: str = "kappa"
    temperature: float | None = None
    gradients: str = "auto"

    def __post_init__(self):
        _choice(self.loss, LOSSES, "loss")
        _choice(self.framework, FRAMEWORKS, "framework")
        _choice(self.reduction, REDUCTIONS, "reduction")
        _choice(self.kappa, KAPPA_MODES, "kappa")
        _choice(self.gradients, GRADIENTS, "gradients")
        if self.temperature is not None:
            t = self.temperature
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise ValueError(f"temperature must be a finite number > 0 or None, got {t!r}")
        if self.temperature is not None and self.loss != "ntxent":
            raise ValueError("temperature applies to loss='ntxent' only")
        if self.kappa == "log" and self.loss != "pcl":
            raise ValueError("kappa='log' applies to loss='pcl' only")
        if self.gradients == "autograd" and self.framework != "torch":
            raise ValueError("gradients='autograd' needs framework='torch'")

    def describe(self) -> str:
        parts = ["PCL" if self.loss == "pcl" else "NT-Xent",
                 f"framework {self.framework}" + (f" ({self.device})" if self.device else ""),
                 f"reduction: {_REDUCTION_WORDS[self.reduction]}"]
        if self.loss == "pcl":
            parts.append("kappa given as log-kappa" if self.kappa == "log" else "kappa given directly")
        else:
            parts.append("temperature passed as third argument" if self.temperature is None
                         else f"fixed temperature {self.temperature:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Case:
    """One batch of the battery: float64 inputs and the regimes it exercises."""

    name: str
    description: str
    tags: frozenset
    inputs: dict  # z1, z2 and kappa1, kappa2 (PCL) as float64 arrays
    temperature: float | None = None  # NT-Xent

    @property
    def n(self) -> int:
        return int(self.inputs["z1"].shape[0])

    @property
    def d(self) -> int:
        return int(self.inputs["z1"].shape[1])


def _pair(rng, n, d, noise=0.5, share=1.0):
    z1 = rng.standard_normal((n, d))
    return z1, share * z1 + noise * rng.standard_normal((n, d))


def _rows(rng, n, lo, hi):
    return 10.0 ** rng.uniform(lo, hi, (n, 1))


def _spread(rng, n):
    """Row norms from 1e-6 to 1e6, in random order."""
    return 10.0 ** rng.permutation(np.linspace(-6, 6, n))[:, None]


def _pcl_specs():
    """(name, description, tags, builder(rng) -> (z1, z2, kappa1, kappa2))."""
    def lognormal(mean, sigma):
        return lambda rng, n: (rng.lognormal(mean, sigma, n), rng.lognormal(mean, sigma, n))

    def batch(n, d, kap, noise=0.5, share=1.0, scale=None):
        def build(rng):
            z1, z2 = _pair(rng, n, d, noise, share)
            if scale is not None:
                z1, z2 = z1 * scale(rng, n), z2 * scale(rng, n)
            k1, k2 = kap(rng, n)
            return z1, z2, k1, k2
        return build

    def identical(n, d, kap):
        def build(rng):
            z1 = rng.standard_normal((n, d))
            k1, k2 = kap(rng, n)
            return z1, z1.copy(), k1, k2
        return build

    def antipodal(rng):
        z1 = rng.standard_normal((8, 16))
        return z1, -z1, rng.lognormal(1.5, 1, 8), rng.lognormal(1.5, 1, 8)

    def logspace(lo, hi):
        return lambda rng, n: (10.0 ** rng.uniform(lo, hi, n), 10.0 ** rng.uniform(lo, hi, n))

    def with_zeros(kap):
        def f(rng, n):
            k1, k2 = kap(rng, n)
            k1[::2] = 0.0
            k2[1::3] = 0.0
            return k1, k2
        return f

    return [
        ("random", "random batch, N = 16, d = 32", {"random"}, batch(16, 32, lognormal(2, 1), scale=lambda r, n: _rows(r, n, -1, 1))),
        ("random-large-batch", "N = 128, d = 64", {"random"}, batch(128, 64, lognormal(2.5, 1))),
        ("d2", "circle, d = 2 (order 0)", {"d2"}, batch(8, 2, lognormal(1, 1))),
        ("d3", "sphere, d = 3 (order 1/2)", {"d3", "odd-d"}, batch(8, 3, lognormal(1, 1))),
        ("odd-d", "d = 33 (half-integer order)", {"odd-d"}, batch(8, 33, lognormal(2, 1))),
        ("odd-large-d", "d = 1025 (order 511.5), kappa 30 to 3000", {"odd-d", "large-d"},
         batch(4, 1025, logspace(1.5, 3.5), noise=1.0, share=0.1)),
        ("large-d", "d = 4096 (order 2047), kappa 30 to 300", {"large-d"},
         batch(4, 4096, logspace(1.5, 2.5), noise=1.0, share=0.1)),
        ("large-d-huge-kappa", "d = 4096, kappa 5e3 to 1e5", {"large-d", "huge-kappa"},
         batch(4, 4096, logspace(3.7, 5))),
        ("large-order-tiny-kappa", "d = 128 (order 63), kappa 1e-6 to 1e-3", {"tiny-kappa"},
         batch(6, 128, logspace(-6, -3))),
        ("tiny-kappa", "d = 16, kappa 1e-9 to 1e-4", {"tiny-kappa"}, batch(8, 16, logspace(-9, -4))),
        ("kappa-zero", "d = 16, some kappa = 0", {"kappa-zero"}, batch(8, 16, with_zeros(lognormal(1.5, 1)))),
        ("kappa-zero-d2", "d = 2, some kappa = 0", {"kappa-zero", "d2"}, batch(6, 2, with_zeros(lognormal(1, 1)))),
        ("huge-kappa", "d = 64, kappa 1e4 to 1e6, close views", {"huge-kappa"},
         batch(8, 64, logspace(4, 6), noise=0.05)),
        ("identical", "identical views, d = 32", {"identical"}, identical(8, 32, lognormal(2, 1))),
        ("confident", "identical views, kappa 100 to 1000: tiny losses", {"identical", "tiny-loss"},
         identical(8, 32, logspace(2, 3))),
        ("antipodal", "antipodal views, d = 16", {"antipodal"}, antipodal),
        ("tiny-norms", "raw norms about 1e-6", {"tiny-norm"}, batch(8, 16, lognormal(1.5, 1), scale=lambda r, n: _rows(r, n, -6.3, -5.7))),
        ("huge-norms", "raw norms about 1e6", {"huge-norm"}, batch(8, 16, lognormal(1.5, 1), scale=lambda r, n: _rows(r, n, 5.7, 6.3))),
        ("mixed-norms", "raw norms from 1e-6 to 1e6", {"tiny-norm", "huge-norm"},
         batch(8, 16, lognormal(1.5, 1), scale=_spread)),
        ("n1", "N = 1: loss and gradients are 0", {"n1"}, batch(1, 8, lognormal(1.5, 1))),
        ("equal-kappa", "kappa = 2 everywhere (NT-Xent at temperature 0.5)", {"equal-kappa"},
         batch(8, 16, lambda r, n: (np.full(n, 2.0), np.full(n, 2.0)))),
        # last, so that the cases before it keep their draws; distinct views, unlike `confident`,
        # so the positive's term of dL/dz survives the projection
        ("confident-close", "close views (not identical), kappa 30 to 300: tiny losses", {"tiny-loss"},
         batch(8, 32, logspace(1.5, 2.5), noise=0.1)),
    ]


def _ntxent_specs():
    """(name, description, tags, temperature, builder(rng) -> (z1, z2))."""
    def batch(n, d, noise=0.5, scale=None):
        def build(rng):
            z1, z2 = _pair(rng, n, d, noise)
            if scale is not None:
                z1, z2 = z1 * scale(rng, n), z2 * scale(rng, n)
            return z1, z2
        return build

    def identical(rng):
        z1 = rng.standard_normal((8, 32))
        return z1, z1.copy()

    def antipodal(rng):
        z1 = rng.standard_normal((8, 16))
        return z1, -z1

    return [
        ("random", "random batch, N = 16, d = 32", {"random"}, 0.5, batch(16, 32, scale=lambda r, n: _rows(r, n, -1, 1))),
        ("random-large-batch", "N = 128, d = 64", {"random"}, 0.1, batch(128, 64)),
        ("small-tau", "temperature 0.02, close views", {"small-tau"}, 0.02, batch(16, 32, noise=0.2)),
        ("large-tau", "temperature 10", {"large-tau"}, 10.0, batch(8, 16)),
        ("d2", "d = 2", {"d2"}, 0.2, batch(8, 2)),
        ("d3", "d = 3", {"d3", "odd-d"}, 0.5, batch(8, 3)),
        ("odd-d", "d = 33", {"odd-d"}, 0.5, batch(8, 33)),
        ("large-d", "d = 4096", {"large-d"}, 0.1, batch(4, 4096)),
        ("identical", "identical views, temperature 0.05: tiny losses", {"identical", "tiny-loss"}, 0.05, identical),
        ("antipodal", "antipodal views", {"antipodal"}, 0.5, antipodal),
        ("tiny-norms", "raw norms about 1e-6", {"tiny-norm"}, 0.5, batch(8, 16, scale=lambda r, n: _rows(r, n, -6.3, -5.7))),
        ("huge-norms", "raw norms about 1e6", {"huge-norm"}, 0.5, batch(8, 16, scale=lambda r, n: _rows(r, n, 5.7, 6.3))),
        ("mixed-norms", "raw norms from 1e-6 to 1e6", {"tiny-norm", "huge-norm"}, 0.5,
         batch(8, 16, scale=_spread)),
        ("n1", "N = 1: loss and gradients are 0", {"n1"}, 0.5, batch(1, 8)),
    ]


@lru_cache(maxsize=8)
def _battery(loss: str, temperature: float | None, seed: int) -> tuple[Case, ...]:
    cases = []
    if loss == "pcl":
        for i, (name, desc, tags, build) in enumerate(_pcl_specs()):
            z1, z2, k1, k2 = build(np.random.default_rng([seed, i]))
            inputs = {"z1": z1, "z2": z2, "kappa1": np.asarray(k1, np.float64), "kappa2": np.asarray(k2, np.float64)}
            cases.append(Case(name, desc, frozenset(tags), inputs))
    else:
        for i, (name, desc, tags, tau, build) in enumerate(_ntxent_specs()):
            z1, z2 = build(np.random.default_rng([seed, 100 + i]))
            if temperature is not None:
                tau = float(temperature)
                desc = desc.split(", temperature")[0]
            cases.append(Case(name, desc, frozenset(tags), {"z1": z1, "z2": z2}, tau))
    for c in cases:
        for a in c.inputs.values():
            a.setflags(write=False)
    return tuple(cases)


def battery(loss: str = "pcl", *, temperature: float | None = None, seed: int = 0) -> list[Case]:
    """The validation cases for ``loss`` ("pcl" or "ntxent"); deterministic for a seed."""
    _choice(loss, LOSSES, "loss")
    if temperature is not None:
        Convention(loss="ntxent", temperature=temperature)  # validates the value
        if loss != "ntxent":
            raise ValueError("temperature applies to loss='ntxent' only")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return list(_battery(loss, None if temperature is None else float(temperature), seed))


# ---------------------------------------------------------------------------------------
# Frameworks
# ---------------------------------------------------------------------------------------


class _Framework:
    def __init__(self, name: str, device: str | None):
        self.name = name
        self.device = device
        if name == "torch":
            try:
                import torch
            except ImportError as exc:
                raise ImportError("framework='torch' needs PyTorch installed") from exc
            self.torch = torch
            self.device = device or "cpu"
        elif name == "cupy":
            try:
                import cupy
            except ImportError as exc:
                raise ImportError("framework='cupy' needs CuPy installed") from exc
            self.cupy = cupy

    def array(self, a: np.ndarray, dtype: str, requires_grad: bool = False):
        if self.name == "numpy":
            return np.array(a, dtype=dtype)
        if self.name == "torch":
            t = self.torch.tensor(np.array(a, dtype=dtype), device=self.device)
            return t.requires_grad_(True) if requires_grad else t
        return self.cupy.asarray(np.array(a, dtype=dtype))

    def is_tensor(self, value) -> bool:
        return self.name == "torch" and isinstance(value, self.torch.Tensor)


def _dtype_name(value) -> str:
    """``"float32"``, ``"float64"``... of an array of any library; ``"Python float"`` and the like
    for a Python number (a Python float is a double)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return f"Python {type(value).__name__}"
    return str(dtype).rsplit(".", 1)[-1]  # torch.float32 -> float32


def _to_numpy(value) -> np.ndarray:
    """A float64 NumPy copy of an array from any library (or a Python number)."""
    mod = type(value).__module__
    if mod.startswith("torch"):
        import torch

        return value.detach().to(device="cpu", dtype=torch.float64).numpy()
    if mod.startswith("cupy"):
        return np.asarray(value.get(), dtype=np.float64)
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray(np.from_dlpack(value), dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Reference values and error measures
# ---------------------------------------------------------------------------------------


def _kappa_grad_key(conv: Convention) -> tuple:
    return ("z1", "z2", "kappa1", "kappa2") if conv.loss == "pcl" else ("z1", "z2")


@dataclass
class _Reference:
    """The reference's results for one run, and what the candidate's are measured against."""

    dtype: str
    losses: np.ndarray  # (2N,) per anchor
    loss: Any  # reduced: float, or (2N,) for "none"
    grads: dict
    weights: np.ndarray
    logit_size: np.ndarray  # per anchor: max_b |log C_d(kappa_b)| + kappa_b (or 1/tau), plus log(2N)
    loss_tol: np.ndarray  # per anchor: max(TOLERANCES, ROUNDING eps S_a), relative
    loss_floor: float  # absolute floor of a per-anchor loss
    grad_tol: float
    grad_scale: dict  # per row (z) or entry (kappa): max(block max-norm, terms' scale, floor / tol)
    positive_scale: dict  # per row or entry: the positive's terms with weights of size w_a
    facts: dict

    @property
    def raised(self) -> bool:
        """Whether the logits' rounding raised a tolerance above SPEC section 6's."""
        tol_loss, tol_grad = TOLERANCES[self.dtype]
        return bool(np.max(self.loss_tol) > tol_loss or self.grad_tol > tol_grad)


def _reference(x: dict, case: Case, conv: Convention, dtype: str) -> _Reference:
    """Reference loss and gradients for inputs ``x`` (float64 holding the rounded values), and
    the per-anchor tolerances, per-row scales and floors of SPEC section 6 for ``dtype``."""
    n, d = case.n, case.d
    n2 = 2 * n
    weights = dg.reduction_weights(conv.reduction, n)
    if conv.loss == "pcl":
        losses = np.asarray(pcl_loss(x["z1"], x["z2"], x["kappa1"], x["kappa2"], reduction="none"))
        _, g = pcl_loss_and_grad(x["z1"], x["z2"], x["kappa1"], x["kappa2"], weights=weights)
        grads = {"z1": np.asarray(g.z1), "z2": np.asarray(g.z2),
                 "kappa1": np.asarray(g.kappa1), "kappa2": np.asarray(g.kappa2)}
        if conv.kappa == "log":  # d/d log k = k d/dk
            grads["kappa1"] = grads["kappa1"] * x["kappa1"]
            grads["kappa2"] = grads["kappa2"] * x["kappa2"]
        k = dg.kappas(x)
    else:
        tau = case.temperature
        losses = np.asarray(ntxent_loss(x["z1"], x["z2"], temperature=tau, reduction="none"))
        _, g = ntxent_loss_and_grad(x["z1"], x["z2"], temperature=tau, weights=weights)
        grads = {"z1": np.asarray(g.z1), "z2": np.asarray(g.z2)}
        k = np.full(n2, 1.0 / tau)
    loss = losses if conv.reduction == "none" else float(np.sum(weights * losses))
    eps = float(np.finfo(dtype).eps)
    sub = float(np.finfo(dtype).smallest_subnormal)
    tol_loss, tol_grad = TOLERANCES[dtype]
    size = dg.logit_scale(x, conv.loss, d, case.temperature)
    loss_tol = np.maximum(tol_loss, ROUNDING * eps * size)
    grad_tol = max(tol_grad, ROUNDING * eps * float(np.max(size)))
    floor = SUBNORMALS * n2 * sub  # absolute, per unit of the factor each block multiplies W by
    # SPEC section 6's terms' scales, from |W| computed without cancellation (dg.residuals)
    w, gw, _, norm, cos, length = dg.residuals(x, conv.loss, d, case.temperature, weights)
    pos = (np.arange(n2) + n) % n2
    aw = np.abs(weights)
    terms = {"z": (np.sum(np.abs(gw), axis=1) + np.sum(np.abs(gw), axis=0)) / norm}
    positive = {"z": (aw * k[pos] + aw[pos] * k) / norm}
    floors = {"z": floor * (np.max(k) + k) / norm}
    if conv.loss == "pcl":
        per_kappa = k if conv.kappa == "log" else 1.0
        terms["kappa"] = np.sum(np.abs(w) * (np.abs(cos) + length[None, :]), axis=0) * per_kappa
        positive["kappa"] = aw[pos] * (1.0 + length) * per_kappa
        floors["kappa"] = floor * (1.0 + length) * per_kappa
    grad_scale, positive_scale = {}, {}
    for key in _kappa_grad_key(conv):
        part, rows = key[:-1], (slice(0, n) if key.endswith("1") else slice(n, n2))
        block_max = float(np.max(np.abs(grads[key])))
        grad_scale[key] = np.maximum(np.maximum(block_max, terms[part][rows]), floors[part][rows] / grad_tol)
        positive_scale[key] = positive[part][rows]
    facts = dg.case_facts(x, conv.loss, d, case.temperature, case.tags, losses)
    return _Reference(dtype, losses, loss, grads, weights, size + math.log(n2), loss_tol, floor,
                      grad_tol, grad_scale, positive_scale, facts)


def _loss_error(got, ref: _Reference, reduction: str, want=None, weights=None) -> tuple[float, float]:
    """``(error, tolerance)`` of a loss against the reference's per-anchor losses (or ``want``,
    reduced with ``weights`` instead of the declared reduction's).

    Per anchor, ``|got_a - ref_a| / max(|ref_a|, floor / tol_a)``: a relative error, which an
    absolute floor of a few subnormals keeps meaningful where the loss underflows. For
    ``"none"`` the anchor worst against its own tolerance is reported. A reduced loss is
    measured the same way, against the weighted mean of the anchors' tolerances (a bound on
    the reduced loss's error when each anchor meets its own).
    """
    want = ref.losses if want is None else np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if reduction == "none":
            err = np.abs(got - want) / np.maximum(np.abs(want), ref.loss_floor / ref.loss_tol)
            if np.any(np.isnan(err)):
                return math.nan, float(np.min(ref.loss_tol))
            i = int(np.argmax(err / ref.loss_tol))
            return float(err[i]), float(ref.loss_tol[i])
        weights = ref.weights if weights is None else weights
        aw = np.abs(weights)
        total = float(np.sum(weights * want))
        mass = float(np.sum(aw * np.abs(want)))
        tol = float(np.sum(aw * np.abs(want) * ref.loss_tol)) / mass if mass > 0 else float(np.max(ref.loss_tol))
        floor = max(1.0, float(np.sum(aw))) * ref.loss_floor
        return float(abs(float(got) - total) / max(abs(total), floor / tol)), tol


def _loss_rounding(got, ref: _Reference, reduction: str, want=None) -> float:
    """The loss error in units of roundoff of the logits' size, ``|got - ref| / (eps S)``
    (against ``want``, per anchor for "none" and reduced otherwise, if given)."""
    eps = float(np.finfo(ref.dtype).eps)
    got = np.asarray(got, dtype=np.float64)
    want = ref.loss if want is None else want
    with np.errstate(invalid="ignore", over="ignore"):
        if reduction == "none":
            units = np.abs(got - want) / (eps * ref.logit_size)
            return math.nan if np.any(np.isnan(units)) else float(np.max(units))
        size = float(np.sum(np.abs(ref.weights) * ref.logit_size))
        return abs(float(got) - float(want)) / (eps * size)


def _row_errors(got, want) -> np.ndarray:
    """``max |got - want|`` of each row of a block (each entry of a vector); NaN if any is."""
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - want)
    return diff.reshape(diff.shape[0], -1).max(axis=1) if diff.size else np.zeros(0)


def _block_error(got, want, scale) -> float:
    """SPEC section 6's gradient block error: ``max_a |got_a - ref_a| / scale_a``, where
    ``scale_a`` is the larger of the block's max-norm and row ``a``'s terms' scale."""
    rows = _row_errors(got, want)
    if rows.size == 0:
        return 0.0
    if np.any(np.isnan(rows)):
        return math.nan
    with np.errstate(over="ignore"):
        return float(np.max(rows / np.maximum(scale, np.finfo(np.float64).tiny)))


# ---------------------------------------------------------------------------------------
# Running the candidate
# ---------------------------------------------------------------------------------------


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
    _ref: _Reference | None = None
    _inputs: dict | None = None

    @property
    def run(self) -> tuple:
        return (self.case, self.dtype)

    def to_dict(self) -> dict:
        def num(v):
            return v if math.isfinite(v) else ("nan" if math.isnan(v) else "inf")
        return {"case": self.case, "dtype": self.dtype, "n": self.n, "d": self.d, "tags": list(self.tags),
                "status": self.status, "errors": {k: num(v) for k, v in self.errors.items()},
                "tolerances": dict(self.tolerances), "gradients": self.gradients, "message": self.message}


def _rounded_inputs(case: Case, conv: Convention, dtype: str):
    """(arguments in numpy of ``dtype`` for the candidate, float64 inputs for the reference)."""
    args = {}
    ref = {}
    for k in ("z1", "z2"):
        args[k] = case.inputs[k].astype(dtype)
        ref[k] = args[k].astype(np.float64)
    if conv.loss == "pcl":
        for k in ("kappa1", "kappa2"):
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
        names = _kappa_grad_key(conv)
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


def _call(fn, fw: _Framework, conv: Convention, case: Case, args: dict, dtype: str):
    """Call the candidate; returns (loss as numpy, grads as numpy dict or None, how, the
    dtype name of each output)."""
    want_autograd = fw.name == "torch" and conv.gradients in ("auto", "autograd")
    names = _kappa_grad_key(conv)
    arrays = {k: fw.array(args[k], dtype, requires_grad=want_autograd) for k in names}
    if conv.loss == "pcl":
        out = fn(arrays["z1"], arrays["z2"], arrays["kappa1"], arrays["kappa2"])
    elif conv.temperature is None:
        out = fn(arrays["z1"], arrays["z2"], case.temperature)
    else:
        out = fn(arrays["z1"], arrays["z2"])
    loss, grads = _split_output(out, conv)
    how = "none"
    got_grads = None
    dtypes = {"loss": _dtype_name(loss)}
    if grads is not None and conv.gradients in ("auto", "returned"):
        dtypes.update({k: _dtype_name(v) for k, v in grads.items()})
        got_grads = {k: _to_numpy(v) for k, v in grads.items()}
        how = "returned"
    elif conv.gradients == "returned":
        raise ValueError("gradients='returned' but the function returned no gradients")
    elif want_autograd and fw.is_tensor(loss):
        torch = fw.torch
        target = loss.sum() if loss.ndim else loss
        inputs = [arrays[k] for k in names]
        if target.requires_grad:
            g = torch.autograd.grad(target, inputs, allow_unused=True)
        else:  # the loss does not depend on the inputs (e.g. N = 1 in some libraries)
            g = [None] * len(inputs)
        got_grads = {k: (np.zeros(args[k].shape) if gi is None else _to_numpy(gi)) for k, gi in zip(names, g)}
        dtypes.update({k: _dtype_name(gi) for k, gi in zip(names, g) if gi is not None})
        how = "autograd"
    elif conv.gradients == "autograd":
        raise ValueError("gradients='autograd' but the function did not return a torch tensor")
    return _to_numpy(loss), got_grads, how, dtypes


def _check_dtypes(dtypes: dict, dtype: str) -> str:
    """A message naming the outputs whose dtype is not the inputs' ``dtype`` ("" if none)."""
    bad: dict = {}
    for k, name in dtypes.items():
        if (name if name != "Python float" else "float64") != dtype:
            bad.setdefault(name, []).append(k)
    return "; ".join(f"{', '.join(keys)} in {name}, expected {dtype} (the inputs' dtype)"
                     for name, keys in bad.items())


def _check_shapes(loss: np.ndarray, grads, case: Case, conv: Convention) -> str:
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


def _run_case(fn, fw, conv: Convention, case: Case, dtype: str) -> RunResult:
    base = dict(case=case.name, dtype=dtype, n=case.n, d=case.d, tags=tuple(sorted(case.tags)))
    if conv.kappa == "log" and (np.any(case.inputs["kappa1"] == 0) or np.any(case.inputs["kappa2"] == 0)):
        return RunResult(status="skip", message="kappa = 0 has no finite log-kappa", **base)
    args, x = _rounded_inputs(case, conv, dtype)
    ref = _cached_reference(case, conv, dtype, x)
    try:
        with np.errstate(all="ignore"):  # NaN and infinity are reported, not warned about
            loss, grads, how, out_dtypes = _call(fn, fw, conv, case, args, dtype)
    except Exception as exc:  # the candidate's failure is a result, not an error of ours
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return RunResult(status="error", message=f"{type(exc).__name__}: {text}"[:300], _ref=ref, _inputs=x, **base)
    shape_msg = _check_shapes(loss, grads, case, conv)
    if shape_msg:
        return RunResult(status="fail", message=shape_msg, gradients=how, wrong=("shape",), _ref=ref,
                         _inputs=x, **base)
    loss_value = loss if conv.reduction == "none" else float(loss.reshape(()))
    errors, tolerances = {}, {}
    errors["loss"], tolerances["loss"] = _loss_error(loss_value, ref, conv.reduction)
    if grads is not None:
        for k, g in grads.items():
            errors[k], tolerances[k] = _block_error(g, ref.grads[k], ref.grad_scale[k]), ref.grad_tol
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
    status = "fail" if parts else "pass"
    return RunResult(status=status, errors=errors, tolerances=tolerances, message="; ".join(parts),
                     gradients=how, wrong=wrong, nonfinite=nonfinite,
                     _got_loss=loss_value, _got_grads=grads, _ref=ref, _inputs=x, **base)


_REF_CACHE: dict = {}


def _cached_reference(case: Case, conv: Convention, dtype: str, x: dict) -> _Reference:
    key = (case.name, case.temperature, conv.loss, conv.reduction, conv.kappa, dtype,
           hash(b"".join(case.inputs[k].tobytes() for k in sorted(case.inputs))))
    if key not in _REF_CACHE:
        if len(_REF_CACHE) > 512:
            _REF_CACHE.clear()
        _REF_CACHE[key] = _reference(x, case, conv, dtype)
    return _REF_CACHE[key]


# ---------------------------------------------------------------------------------------
# Diagnosis
# ---------------------------------------------------------------------------------------


def _variant_findings(results: list[RunResult], conv: Convention, cases: dict) -> tuple[list, set]:
    """Wrong conventions (loss variants x reductions) that reproduce failing loss values."""
    candidates = [r for r in results if "loss" in r.wrong]
    if not candidates:
        return [], set()
    variants = [v for v in dg.VARIANTS if v.loss in ("both", conv.loss)]
    hits: dict[tuple, set] = {}
    defined: dict[tuple, set] = {}
    strict: set = set()
    for r in candidates:
        case = cases[r.case]
        x, ref = r._inputs, r._ref
        miss = r.errors["loss"]
        per_variant = {"reference": ref.losses}
        memo: dict = {}
        for v in variants:
            per_variant[v.key] = dg.variant_losses(v.key, x, conv.loss, case.d, case.temperature, conv.kappa, memo)
        for vkey, losses in per_variant.items():
            if losses is None:
                continue
            for rkey, w in dg.alternative_weights(conv.reduction, case.n).items():
                if vkey == "reference" and rkey == "declared":
                    continue
                if conv.reduction == "none" and rkey != "declared":
                    continue
                pred = losses if conv.reduction == "none" else float(np.sum(w * losses))
                same, tol = _loss_error(pred, ref, conv.reduction)
                if same <= tol:
                    continue  # the variant would pass as the reference in this run
                key = (vkey, rkey)
                defined.setdefault(key, set()).add(r.run)
                e, tol = _loss_error(r._got_loss, ref, conv.reduction, losses, w)
                # Reproduced to _MATCH, or to the rounding of the logits (a tiny loss computed by
                # the textbook form keeps no more than that). Only a run where the variant and the
                # reference differ by more than that rounding is evidence for the variant; the
                # others can only extend a variant found elsewhere.
                resolved = _loss_rounding(pred, ref, conv.reduction) > _ROUNDING_LEVEL
                if e <= min(max(_MATCH[r.dtype], tol), 0.1 * miss) or \
                        _loss_rounding(r._got_loss, ref, conv.reduction, pred) <= _ROUNDING_LEVEL:
                    hits.setdefault(key, set()).add(r.run)
                    if resolved and e <= min(max(_MATCH[r.dtype], tol), 0.1 * miss):
                        strict.add(key)
    findings = []
    explained: set = set()
    remaining = {r.run for r in candidates}
    while remaining and len(findings) < 3:
        best = max(((len(h & remaining), len(h) / len(defined[k]), k) for k, h in hits.items()
                    if k in strict and len(h) / len(defined[k]) >= 0.6), default=None)
        if best is None or best[0] == 0:
            break
        vkey, rkey = key = best[2]
        summaries, details = [], []
        if vkey != "reference":
            v = dg.VARIANT_BY_KEY[vkey]
            summaries.append(v.summary)
            details.append(v.detail)
        if rkey != "declared":
            red = dg.REDUCTIONS[rkey]
            summaries.append(red.summary)
            details.append(red.detail)
        signature = "+".join(k for k in (vkey, rkey) if k not in ("reference", "declared"))
        summary = "; ".join(summaries)
        findings.append(dg.Finding(signature, summary[0].upper() + summary[1:], " ".join(details),
                                   sorted(hits[key])))
        explained |= hits[key]
        remaining -= hits[key]
    return findings, explained


def _offset_context(r: RunResult, case: Case, conv: Convention) -> dict:
    ctx = {"n2": 2 * case.n, "half_d": case.d / 2}
    if conv.loss == "pcl":
        ctx["logc_pos"] = np.roll(dg.log_c(case.d, dg.kappas(r._inputs)), case.n)  # log C_d of each positive
    else:
        ctx["logc_pos"] = np.zeros(2 * case.n)
    return ctx


def _offset_of(r: RunResult, key_text, case: Case, conv: Convention):
    per_anchor = key_text[1](_offset_context(r, case, conv))
    return per_anchor if conv.reduction == "none" else float(np.sum(r._ref.weights * per_anchor))


_OFFSETS = (
    ("log-mean-exp", lambda ctx: -np.full(ctx["n2"], math.log(ctx["n2"] - 1)),
     "lower by log(2N - 1)",
     "a log-mean-exp over the 2N - 1 candidates is taken instead of a log-sum-exp (the shift of the "
     "InfoNCE bound)."),
    ("normaliser-missing-on-positive", lambda ctx: ctx["logc_pos"],
     "of +log C_d(kappa) of each anchor's positive",
     "the positive's logit lacks its normaliser log C_d(kappa_p) while the denominator's logits have it."),
    ("normaliser-only-on-positive", lambda ctx: -ctx["logc_pos"],
     "of -log C_d(kappa) of each anchor's positive",
     "the positive's logit has its normaliser log C_d(kappa_p) but the denominator's logits lack it."),
    ("normaliser-constant-in-positive-only", lambda ctx: np.full(ctx["n2"], ctx["half_d"] * math.log(2 * math.pi)),
     "of +(d/2) log(2 pi)",
     "the normaliser's constant -(d/2) log(2 pi) is in the positive's logit but not in the denominator's; "
     "it cancels only when every logit has it."),
    ("normaliser-constant-in-denominator-only",
     lambda ctx: -np.full(ctx["n2"], ctx["half_d"] * math.log(2 * math.pi)),
     "of -(d/2) log(2 pi)",
     "the normaliser's constant -(d/2) log(2 pi) is in the denominator's logits but not in the positive's; "
     "it cancels only when every logit has it."),
)


def _offset_finding(fn, fw, conv: Convention, results: list[RunResult], cases: dict, explained: set):
    """Is the loss error a constant offset, unchanged when the embeddings change? Which one?

    Returns (finding or None, the runs it explains).
    """
    wrong = [r for r in results if "loss" in r.wrong and r.run not in explained]
    probes = [r for r in wrong if r.dtype == "float64" and r.n > 1][:2]
    if not probes:
        return None, set()
    deltas = []
    for r in probes:
        case = cases[r.case]
        z1, z2 = _pair(np.random.default_rng(12345), case.n, case.d)
        moved = Case(case.name, case.description, case.tags, {**case.inputs, "z1": z1, "z2": z2}, case.temperature)
        args, x = _rounded_inputs(moved, conv, "float64")
        ref2 = _reference(x, moved, conv, "float64")
        try:
            with np.errstate(all="ignore"):
                loss2, _, _, _ = _call(fn, fw, conv, moved, args, "float64")
        except Exception:
            return None, set()
        loss2 = loss2 if conv.reduction == "none" else float(loss2.reshape(()))
        delta1 = np.asarray(r._got_loss, dtype=np.float64) - np.asarray(r._ref.loss)
        delta2 = np.asarray(loss2, dtype=np.float64) - np.asarray(ref2.loss)
        size = float(np.max(np.abs(delta1)))
        # the same offset after the redraw, to 1e-8 of the loss and to 1e-3 of the offset itself:
        # two errors at the rounding level of the logits agree to 1e-8 without being one offset
        if not np.all(np.isfinite(delta2)) or np.max(np.abs(delta1 - delta2)) > min(1e-8 * max(1.0, size),
                                                                                   1e-3 * size):
            return None, set()
        deltas.append(delta1)
    for entry in _OFFSETS:
        key, _, what, why = entry
        hit = set()
        for r in wrong:
            delta = np.asarray(r._got_loss, dtype=np.float64) - np.asarray(r._ref.loss)
            want = np.asarray(_offset_of(r, entry, cases[r.case], conv))
            tol = 1e-8 if r.dtype == "float64" else 1e-4
            if np.max(np.abs(want - delta)) <= tol * max(1.0, float(np.max(np.abs(delta)))):
                hit.add(r.run)
        if {p.run for p in probes} <= hit:
            return dg.Finding(
                f"constant-offset:{key}", f"Constant offset {what} in the loss",
                "The error does not depend on the embeddings (it is unchanged when the directions are "
                f"redrawn with N, d and kappa fixed), and it equals the offset made when {why}", sorted(hit)), hit
    value = float(np.mean(deltas[0]))
    return dg.Finding(
        "constant-offset", f"Constant offset of {value:+.6g} in the loss (a missing or mis-scaled normaliser?)",
        "The error does not depend on the embeddings: it is unchanged when the directions are redrawn with "
        "N, d and kappa fixed. A term of the loss that involves only kappa, d or N is wrong: typically a "
        "normaliser, or part of it, applied to some logits and not to others, or scaled differently in the "
        "positive's logit and in the denominator.", sorted(p.run for p in probes)), {p.run for p in probes}


def _gradient_findings(results: list[RunResult], conv: Convention, cases: dict) -> tuple[list, set]:
    """Loss right, gradient wrong: which known mistake?"""
    runs = [r for r in results if r.status == "fail" and r._got_grads is not None
            and not r.nonfinite and "loss" not in r.wrong and "shape" not in r.wrong
            and set(r.wrong) & set(r._got_grads)]
    hits: dict[str, set] = {}
    factors: dict[str, list] = {}
    for r in runs:
        case = cases[r.case]
        ref = r._ref
        got, want = r._got_grads, ref.grads
        wrong = [k for k in r.wrong if k in got]
        tol = max(_MATCH[r.dtype], ref.grad_tol)
        wanted = np.concatenate([want[k].ravel() for k in got])
        gotten = np.concatenate([got[k].ravel() for k in got])
        if np.all(gotten == 0) and np.any(wanted != 0):
            hits.setdefault("no-gradient", set()).add(r.run)
            continue
        denom = float(wanted @ wanted)
        if denom > 0:
            alpha = float(gotten @ wanted) / denom
            if abs(alpha - 1) > 1e-6 and all(
                    _block_error(got[k], alpha * want[k], abs(alpha) * ref.grad_scale[k]) <= tol for k in got):
                label = "scaled"
                base = float(np.sum(ref.weights))
                for rkey, w in dg.alternative_weights(conv.reduction, case.n).items():
                    if rkey not in ("declared", "one-direction") and abs(alpha - np.sum(w) / base) <= 1e-3 * abs(alpha):
                        label = rkey
                hits.setdefault(label, set()).add(r.run)
                factors.setdefault(label, []).append(alpha)
                continue
        variants = dg.gradient_variants(r._inputs, conv.loss, case.d, case.temperature, ref.weights, conv.kappa)
        for key, blocks in variants.items():
            if key == "correct" or not set(wrong) <= set(blocks):
                continue
            if all(_block_error(got[k], blocks[k], ref.grad_scale[k]) <= min(tol, 0.1 * r.errors[k])
                   for k in wrong):
                hits.setdefault(key, set()).add(r.run)
    out = []
    explained: set = set()
    for key, found in sorted(hits.items(), key=lambda kv: -len(kv[1])):
        explained |= found
        if key in dg.REDUCTIONS:  # the gradient shows a reduction mistake that the loss hid
            red = dg.REDUCTIONS[key]
            out.append(dg.Finding(key, red.summary[0].upper() + red.summary[1:], red.detail, sorted(found)))
            continue
        summary, detail = dg.GRADIENT_DIAGNOSES[key]
        if key == "scaled":
            summary += f" (factor {np.median(factors['scaled']):.6g})"
        out.append(dg.Finding(f"gradient:{key}", summary[0].upper() + summary[1:], detail, sorted(found)))
    return out, explained


def _loss_size_ratio(ref: _Reference, reduction: str) -> float:
    """The reference loss next to the logits' size (the smallest anchor's for "none")."""
    if reduction == "none":
        return float(np.min(np.abs(ref.losses) / ref.logit_size))
    return abs(float(ref.loss)) / float(np.sum(np.abs(ref.weights) * ref.logit_size))


def _positive_rounding(got, ref: _Reference, key: str) -> bool:
    """Is a block's error that of the positive's terms computed with weights of size ``w_a``?

    Every row's error is within ``_ROUNDING_LEVEL`` units of roundoff of those terms (beyond
    the tolerance), and where a row fails, its true scale is at most ``_SMALL`` of them: the
    weights cancelled.
    """
    eps = float(np.finfo(ref.dtype).eps)
    rows = _row_errors(got, ref.grads[key])
    scale, positive = ref.grad_scale[key], ref.positive_scale[key]
    failing = rows > ref.grad_tol * scale
    return bool(np.any(failing) and np.all(rows <= _ROUNDING_LEVEL * eps * positive + ref.grad_tol * scale)
                and np.all(scale[failing] <= _SMALL * positive[failing]))


def _fill(text: str, **values) -> str:
    """``text`` with each ``{name}`` replaced (the texts hold other braces: ``sum_{b != a}``)."""
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def _precision_findings(results: list[RunResult], conv: Convention, explained: set) -> tuple[list, set]:
    """Errors of the size of the rounding of O(1) quantities, not of the results' own size.

    The loss (``tiny-loss``): within ``_ROUNDING_LEVEL`` units of roundoff of the logits' size,
    the mark of ``-F_ap + logsumexp_b F_ab``. A gradient block (``gradient:positive-weight``):
    within as many units of roundoff of the positive's terms with a weight of size ``w_a``,
    the mark of ``W_ap = w_a (P_ap - 1)``. Returns the findings and the runs whose every
    failing quantity they explain.
    """
    loss_hits, grad_hits = {}, {}
    done = set()
    for r in results:
        if r.status != "fail" or r.run in explained or r.nonfinite or "shape" in r.wrong:
            continue
        ref = r._ref
        eps = float(np.finfo(r.dtype).eps)
        wrong = [k for k in r.wrong if k != "dtype"]
        covered = set()
        if "loss" in wrong and _loss_rounding(r._got_loss, ref, conv.reduction) <= _ROUNDING_LEVEL \
                and _loss_size_ratio(ref, conv.reduction) <= _SMALL:
            covered.add("loss")
            loss_hits[r.run] = r
        blocks = [k for k in wrong if k != "loss"]
        if blocks and all(_positive_rounding(r._got_grads[k], ref, k) for k in blocks):
            covered |= set(blocks)
            grad_hits[r.run] = r
        if wrong and covered == set(wrong):
            done.add(r.run)
    findings = []
    if loss_hits:
        summary, detail = dg.PRECISION_DIAGNOSES["tiny-loss"]
        r = min(loss_hits.values(), key=lambda r: (r.dtype != "float64", float(np.min(r._ref.losses))))
        ref = r._ref
        size = float(np.max(ref.logit_size))
        smallest = float(np.min(ref.losses))
        example = (f"{r.case} ({r.dtype}): smallest per-anchor loss {smallest:.2g}, loss error "
                   f"{r.errors['loss']:.2g} relative, logits' size {size:.3g}")
        findings.append(dg.Finding("tiny-loss", summary, _fill(detail, bound=_ROUNDING_LEVEL, example=example),
                                   sorted(loss_hits)))
    if grad_hits:
        summary, detail = dg.GRADIENT_DIAGNOSES["positive-weight"]
        r = max(grad_hits.values(), key=lambda r: (r.dtype == "float64",
                                                   max(v for k, v in r.errors.items() if k != "loss")))
        k, v = max(((k, v) for k, v in r.errors.items() if k != "loss"), key=lambda kv: kv[1])
        example = f"{r.case} ({r.dtype}): gradient {k} error {v:.2g} of its own size"
        findings.append(dg.Finding("gradient:positive-weight", summary[0].upper() + summary[1:],
                                   _fill(detail, bound=_ROUNDING_LEVEL, example=example), sorted(grad_hits)))
    return findings, done


def _dtype_findings(results: list[RunResult]) -> list:
    bad = [r for r in results if "dtype" in r.wrong]
    if not bad:
        return []
    what = sorted({part for r in bad for part in r.message.split("; ") if part.startswith("dtype: ")})
    summary, detail = dg.DTYPE_DIAGNOSIS
    return [dg.Finding("dtype", summary.format(what="; ".join(w[len("dtype: "):] for w in what)), detail,
                       sorted(r.run for r in bad))]


def _call_findings(results: list[RunResult], conv: Convention) -> list:
    tried = [r for r in results if r.status != "skip"]
    errors = [r for r in tried if r.status == "error"]
    if not tried or len(errors) != len(tried):
        return []
    first = errors[0].message
    if conv.loss == "pcl":
        how = "fn(z1, z2, kappa1, kappa2)"
    elif conv.temperature is None:
        how = "fn(z1, z2, temperature)"
    else:
        how = "fn(z1, z2)"
    hints = [f"It is called as {how} with {conv.framework} arrays."]
    low = first.lower()
    if conv.framework == "numpy" and ("tensor" in low or "attribute" in low or "torch" in low):
        hints.append("It may expect PyTorch tensors: try --framework torch.")
    if "argument" in low or "positional" in low:
        hints.append("The number of arguments differs: check --loss, and for NT-Xent --temperature "
                     "(given: the function takes two arguments; omitted: three).")
    return [dg.Finding("calling-convention", f"Every call raised an exception: {first}", " ".join(hints),
                       sorted(r.run for r in errors))]


def _shape_findings(results: list[RunResult]) -> list:
    bad = [r for r in results if "shape" in r.wrong]
    if not bad:
        return []
    first = bad[0].message
    detail = "The output does not have the shape the declared reduction gives."
    if "expected (2N,)" in first and f"({bad[0].n},)" in first:
        detail += (" It holds N values: one direction only (view-1 anchors), or the two directions "
                   "averaged per pair.")
    elif "expected a scalar" in first:
        detail += " It is not reduced: validate with --reduction none if it returns per-anchor losses."
    return [dg.Finding("shape", f"Wrong output shape: {first}", detail, sorted(r.run for r in bad))]


def _merge(findings: list) -> list:
    """One finding per signature (a reduction mistake can show in the loss and in the gradient)."""
    out: dict = {}
    for f in findings:
        if f.signature in out:
            out[f.signature].runs = sorted(set(out[f.signature].runs) | set(f.runs))
        else:
            out[f.signature] = f
    return list(out.values())


def _diagnose(fn, fw, conv: Convention, results: list[RunResult], cases: dict) -> list:
    findings = _call_findings(results, conv)
    if findings:
        return findings
    findings += _shape_findings(results)
    findings += _dtype_findings(results)
    failing = {r.run for r in results if r.status in ("fail", "error") and "shape" not in r.wrong}
    # a run whose only fault is its output dtype is explained by the dtype finding
    failing_values = {r.run for r in results if r.run in failing and (r.status == "error" or r.nonfinite
                      or set(r.wrong) - {"dtype"})}
    passing = {r.run for r in results if r.status == "pass"}
    variant, explained = _variant_findings(results, conv, cases)
    findings += variant
    offset, by_offset = _offset_finding(fn, fw, conv, results, cases, explained)
    if offset is not None:
        findings.append(offset)
        explained |= by_offset
    gradient, by_gradient = _gradient_findings(results, conv, cases)
    findings += gradient
    explained |= by_gradient
    precision, by_precision = _precision_findings(results, conv, explained)
    findings += precision
    explained |= by_precision
    rest = failing_values - explained
    tried = len([r for r in results if r.status != "skip"])
    if rest:
        if not explained and len(rest) >= 0.75 * tried:
            findings.append(dg.Finding(
                "everywhere", f"Fails in nearly every regime ({len(rest)} of {tried} runs)",
                "The disagreement is not confined to a corner of the input space (special functions, "
                "kappa = 0, identical views, ...) and matches no known mistake: it is a difference in the "
                "formula or in the convention. Check the options (--loss, --reduction, --kappa, "
                "--temperature) against what the function computes, then SPEC sections 3 and 4.",
                sorted(rest)))
        else:
            facts = {r.run: r._ref.facts for r in results if r._ref is not None and r.status != "skip"}
            regime, uncovered = dg.cover_by_regimes(facts, rest, passing, all_failing=failing,
                                                    skip={f.signature for f in findings})
            findings += regime
            if uncovered:
                findings.append(dg.Finding(
                    "unexplained", "Failing runs that match no known signature",
                    "See their errors in the table above.", sorted(uncovered)))
    return _merge(findings)


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def _group_runs(runs, limit: int = 12) -> str:
    """``[("a", "float64"), ("a", "float32"), ("b", "float32")]`` -> ``"a (float64, float32), b (float32)"``."""
    by_case: dict = {}
    for case, dt in runs:
        by_case.setdefault(case, []).append(dt)
    parts = [f"{c} ({', '.join(sorted(d, reverse=True))})" for c, d in by_case.items()]
    if len(parts) > limit:
        parts = parts[:limit] + [f"and {len(parts) - limit} more case{'s' if len(parts) - limit > 1 else ''}"]
    return ", ".join(parts)


@dataclass
class Report:
    """The outcome of :func:`validate`: per-run results, diagnoses and the verdict."""

    target: str
    convention: Convention
    results: list
    findings: list
    dtypes: tuple

    @property
    def passed(self) -> bool:
        tried = [r for r in self.results if r.status != "skip"]
        return bool(tried) and all(r.status == "pass" for r in tried)

    @property
    def signatures(self) -> list[str]:
        return [f.signature for f in self.findings]

    def runs(self, status: str | None = None) -> set:
        return {r.run for r in self.results if status is None or r.status == status}

    def worst(self) -> dict:
        """Worst error of each quantity, by dtype, over the runs that produced finite numbers."""
        out: dict = {}
        for r in self.results:
            for k, v in r.errors.items():
                if math.isfinite(v):
                    cur = out.setdefault(r.dtype, {}).get(k)
                    if cur is None or v > cur:
                        out[r.dtype][k] = v
        return out

    def to_dict(self) -> dict:
        conv = self.convention
        counts = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "error", "skip")}
        return {
            "target": self.target,
            "reference": f"probcon_ref {__version__}",
            "convention": {"loss": conv.loss, "framework": conv.framework, "device": conv.device,
                           "reduction": conv.reduction, "kappa": conv.kappa,
                           "temperature": conv.temperature, "gradients": conv.gradients},
            "tolerances": {dt: {"loss": TOLERANCES[dt][0], "gradient": TOLERANCES[dt][1]} for dt in self.dtypes},
            "rounding": ROUNDING,
            "runs": [r.to_dict() for r in self.results],
            "worst": self.worst(),
            "diagnoses": [f.to_dict() for f in self.findings],
            "counts": counts,
            "passed": self.passed,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_text(self) -> str:
        conv = self.convention
        grad_names = _kappa_grad_key(conv)
        labels = {"z1": "grad z1", "z2": "grad z2", "kappa1": "grad k1", "kappa2": "grad k2"}
        if conv.kappa == "log":
            labels.update({"kappa1": "grad lk1", "kappa2": "grad lk2"})
        lines = [f"probcon-ref validate: {self.target}",
                 f"convention: {conv.describe()}",
                 f"reference: probcon_ref {__version__}, NumPy float64, on the same (rounded) inputs",
                 "error: loss relative (per anchor for reduction none); gradient block "
                 "max_a |got_a - ref_a| / max(block max-norm, terms' scale of row a) (SPEC section 6)",
                 "tolerances: " + "; ".join(f"{dt} loss {TOLERANCES[dt][0]:.0e}, gradients {TOLERANCES[dt][1]:.0e}"
                                           for dt in self.dtypes)
                 + f", raised to {ROUNDING} eps x the logits' size where that is larger (marked 'tol')",
                 ""]
        head = f"{'case':<24}{'N':>5}{'d':>6}  {'dtype':<8}{'loss':>9}" + "".join(
            f"{labels[k]:>10}" for k in grad_names) + "  result"
        lines += [head, "-" * len(head)]
        for r in self.results:
            cells = []
            for k in ("loss",) + grad_names:
                v = r.errors.get(k)
                cells.append("-" if v is None else ("nan" if math.isnan(v) else f"{v:.1e}"))
            result = {"pass": "pass", "fail": "FAIL", "error": "ERROR", "skip": "skip"}[r.status]
            extra = f"  {r.message}" if r.message else ""
            if r.tolerances and r._ref is not None and r._ref.raised:
                tol = [f"loss {r.tolerances['loss']:.1e}"] + (
                    [f"gradients {r._ref.grad_tol:.1e}"] if len(r.tolerances) > 1 else [])
                extra += f"  (tol {', '.join(tol)})"
            lines.append(f"{r.case:<24}{r.n:>5}{r.d:>6}  {r.dtype:<8}{cells[0]:>9}"
                         + "".join(f"{c:>10}" for c in cells[1:]) + f"  {result}{extra}")
        lines.append("")
        how = sorted({r.gradients for r in self.results if r.status in ("pass", "fail")})
        if how == ["none"] or not how:
            lines.append("gradients: not checked (none returned, and no PyTorch autograd graph)")
        else:
            lines.append("gradients: " + ", ".join(h for h in how if h != "none"))
        for dt, worst in self.worst().items():
            lines.append(f"worst errors ({dt}): " + ", ".join(
                f"{('loss' if k == 'loss' else labels[k])} {v:.1e}" for k, v in worst.items()))
        c = self.to_dict()["counts"]
        tried = c["pass"] + c["fail"] + c["error"]
        if self.findings:
            lines += ["", "Diagnosis:"]
            for f in self.findings:
                lines += textwrap.wrap(f"* {f.summary}", 100, subsequent_indent="  ")
                lines += textwrap.wrap(f.detail, 100, initial_indent="  ", subsequent_indent="  ")
                if f.runs:
                    lines += textwrap.wrap(f"{len(f.runs)} run{'s' if len(f.runs) != 1 else ''}: "
                                           + _group_runs(f.runs), 100, initial_indent="  ",
                                           subsequent_indent="    ")
        lines.append("")
        skipped = f", {c['skip']} skipped" if c["skip"] else ""
        lines.append(f"{c['pass']} of {tried} runs pass ({c['fail']} fail, {c['error']} raise{skipped}): "
                     f"{'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------


def validate(fn: Callable, *, loss: str = "pcl", framework: str = "numpy", device: str | None = None,
             reduction: str = "mean", kappa: str = "kappa", temperature: float | None = None,
             gradients: str = "auto", dtypes=DTYPES, cases=None, seed: int = 0,
             target: str | None = None) -> Report:
    """Run ``fn`` on the validation battery and compare it with the reference.

    Parameters
    ----------
    fn : callable
        The implementation: ``fn(z1, z2, kappa1, kappa2)`` for the PCL; ``fn(z1, z2, temperature)``
        for NT-Xent, or ``fn(z1, z2)`` when ``temperature`` is given. Returns the loss or
        ``(loss, grads)``.
    loss : {"pcl", "ntxent"}
    framework : {"numpy", "torch", "cupy"}
        The array type ``fn`` receives. ``device`` selects the PyTorch device (default CPU).
    reduction : {"mean", "sum", "none", "pair-mean"}
        What ``fn`` returns: mean or sum over the 2N anchors, the (2N,) per-anchor losses
        (view 1 first), or the sum divided by N.
    kappa : {"kappa", "log"}
        PCL: whether ``fn`` takes the concentrations or their logarithms (cases with kappa = 0
        are then skipped).
    temperature : float, optional
        NT-Xent: a fixed temperature ``fn`` uses (then ``fn(z1, z2)`` is called); by default each
        case's temperature is passed.
    gradients : {"auto", "autograd", "returned", "none"}
        Where gradients come from: returned by ``fn``, PyTorch autograd, or not checked. "auto"
        takes returned gradients, else autograd when ``fn`` returns a torch tensor.
    dtypes : sequence of {"float64", "float32"}
    cases : sequence of str, optional
        Run only the cases with these names.
    seed : int
        Seed of the battery.
    target : str, optional
        A name for ``fn`` in the report.

    Returns
    -------
    Report
        ``report.passed``, ``report.to_text()``, ``report.to_dict()``, ``report.findings``.

    Examples
    --------
    >>> from probcon_ref import pcl_loss_and_grad
    >>> from probcon_ref.testing import validate
    >>> validate(pcl_loss_and_grad, cases=["random", "kappa-zero"]).passed
    True
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    conv = Convention(loss=loss, framework=framework, device=device, reduction=reduction, kappa=kappa,
                      temperature=None if temperature is None else float(temperature), gradients=gradients)
    if isinstance(dtypes, str):
        dtypes = (dtypes,)
    dtypes = tuple(dtypes)
    if not dtypes:
        raise ValueError("dtypes must name at least one of ('float64', 'float32')")
    for dt in dtypes:
        _choice(dt, DTYPES, "dtypes")
    battery_cases = battery(loss, temperature=conv.temperature, seed=seed)
    if cases is not None:
        if isinstance(cases, str):
            cases = [cases]
        known = {c.name for c in battery_cases}
        unknown = [c for c in cases if c not in known]
        if unknown:
            raise ValueError(f"cases: unknown case name(s) {unknown}; known: {sorted(known)}")
        battery_cases = [c for c in battery_cases if c.name in set(cases)]
    fw = _Framework(framework, device)
    results = [_run_case(fn, fw, conv, case, dt) for case in battery_cases for dt in dtypes]
    by_name = {c.name: c for c in battery_cases}
    failing = [r for r in results if r.status in ("fail", "error")]
    findings = _diagnose(fn, fw, conv, results, by_name) if failing else []
    name = target or getattr(fn, "__qualname__", None) or repr(fn)
    return Report(name, conv, results, findings, dtypes)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def load_callable(spec: str) -> Callable:
    """``MODULE:CALLABLE`` (dotted module importable from the current directory, or a path to
    a ``.py`` file) to the object it names; ``CALLABLE`` may be dotted (``obj.method``)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"target must look like MODULE:CALLABLE (or path/to/file.py:CALLABLE), got {spec!r}")
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr:
        raise ValueError(f"target must look like MODULE:CALLABLE, got {spec!r}")
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise ValueError(f"target module file {module_part!r} does not exist")
        mod_name = "_probcon_validate_" + "".join(ch if ch.isalnum() else "_" for ch in str(path.resolve()))
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
    else:
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        module = importlib.import_module(module_part)
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_part} has no attribute {attr!r}") from None
    if not callable(obj):
        raise TypeError(f"{spec} is a {type(obj).__name__}, not a callable")
    return obj


def add_arguments(parser) -> None:
    parser.add_argument("target", help="MODULE:CALLABLE, or path/to/file.py:CALLABLE, the loss function to validate")
    parser.add_argument("--loss", choices=LOSSES, default="pcl",
                        help="pcl: fn(z1, z2, kappa1, kappa2); ntxent: fn(z1, z2, temperature) (default pcl)")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="numpy",
                        help="array type passed to the function (default numpy)")
    parser.add_argument("--device", default=None, help="PyTorch device (default cpu)")
    parser.add_argument("--reduction", choices=REDUCTIONS, default="mean",
                        help="mean or sum over the 2N anchors, none (per-anchor, view 1 first), "
                             "or pair-mean (sum / N) (default mean)")
    parser.add_argument("--kappa", choices=KAPPA_MODES, default="kappa",
                        help="PCL: the function takes kappa, or log-kappa (default kappa)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="NT-Xent: the fixed temperature of fn(z1, z2); omitted: fn(z1, z2, temperature)")
    parser.add_argument("--gradients", choices=GRADIENTS, default="auto",
                        help="returned by the function, PyTorch autograd, or none (default auto)")
    parser.add_argument("--dtype", action="append", choices=DTYPES, dest="dtypes",
                        help="float64 and/or float32 (repeatable; default both)")
    parser.add_argument("--case", action="append", dest="cases", metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the battery (default 0)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    try:
        fn = load_callable(args.target)
    except Exception as exc:
        print(f"probcon-ref validate: cannot load {args.target}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        report = validate(fn, loss=args.loss, framework=args.framework, device=args.device,
                          reduction=args.reduction, kappa=args.kappa, temperature=args.temperature,
                          gradients=args.gradients, dtypes=tuple(args.dtypes or DTYPES),
                          cases=args.cases, seed=args.seed, target=args.target)
    except (ValueError, TypeError, ImportError) as exc:
        print(f"probcon-ref validate: {exc}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.passed else 1
