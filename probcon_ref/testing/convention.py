"""How the validated function is called and what it returns: :class:`Convention`.

The options of ``validate`` and of ``probcon-ref validate`` (their allowed values are the
tuples here), checked once when a convention is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .tolerances import DTYPES

__all__ = ["Convention", "LOSSES", "FRAMEWORKS", "REDUCTIONS", "KAPPA_MODES", "GRADIENTS", "DTYPES",
           "choice", "check_temperature", "check_flag", "grad_keys", "extra_keys"]

LOSSES = ("pcl", "ntxent")
FRAMEWORKS = ("numpy", "torch", "cupy", "jax")
REDUCTIONS = ("mean", "sum", "none", "pair-mean")
KAPPA_MODES = ("kappa", "log")
GRADIENTS = ("auto", "autograd", "returned", "none")

_REDUCTION_WORDS = {"mean": "mean over the 2N anchors", "sum": "sum over the 2N anchors",
                    "none": "per-anchor losses (2N,)", "pair-mean": "sum over the 2N anchors / N"}


def choice(value, allowed, name):
    """``value`` if it is one of ``allowed``, else a ``ValueError`` naming the option ``name``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_flag(value, name: str) -> None:
    """A ``TypeError`` naming the option ``name`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_temperature(t) -> None:
    """A ``ValueError`` unless ``t`` is a finite number > 0 or None."""
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0):
        raise ValueError(f"temperature must be a finite number > 0 or None, got {t!r}")


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
    extra_candidates: bool = False  # fn also takes extra_z (and extra_kappa for the PCL)

    def __post_init__(self):
        """Check every option (a ``ValueError`` naming it)."""
        choice(self.loss, LOSSES, "loss")
        choice(self.framework, FRAMEWORKS, "framework")
        choice(self.reduction, REDUCTIONS, "reduction")
        choice(self.kappa, KAPPA_MODES, "kappa")
        choice(self.gradients, GRADIENTS, "gradients")
        check_temperature(self.temperature)
        check_flag(self.extra_candidates, "extra_candidates")
        if self.temperature is not None and self.loss != "ntxent":
            raise ValueError("temperature applies to loss='ntxent' only")
        if self.kappa == "log" and self.loss != "pcl":
            raise ValueError("kappa='log' applies to loss='pcl' only")
        if self.gradients == "autograd" and self.framework not in ("torch", "jax"):
            raise ValueError("gradients='autograd' needs framework='torch' or 'jax'")

    def describe(self) -> str:
        """The convention in words, for the report."""
        parts = ["PCL" if self.loss == "pcl" else "NT-Xent",
                 f"framework {self.framework}" + (f" ({self.device})" if self.device else ""),
                 f"reduction: {_REDUCTION_WORDS[self.reduction]}"]
        if self.loss == "pcl":
            parts.append("kappa given as log-kappa" if self.kappa == "log" else "kappa given directly")
        else:
            parts.append("temperature passed as third argument" if self.temperature is None
                         else f"fixed temperature {self.temperature:g}")
        if self.extra_candidates:
            what = "extra_z and extra_kappa" if self.loss == "pcl" else "extra_z"
            form = " (extra_kappa as log-kappa too)" if self.kappa == "log" else ""
            parts.append(f"extra candidates passed as {what}{form}, after the batch's arguments")
        return ", ".join(parts)

    def call_signature(self) -> str:
        """How the function is called: ``fn(z1, z2, kappa1, kappa2)``..."""
        args = ["z1", "z2"] + (["kappa1", "kappa2"] if self.loss == "pcl" else
                               ["temperature"] if self.temperature is None else [])
        return f"fn({', '.join(args + list(extra_keys(self)))})"


def grad_keys(conv: Convention) -> tuple:
    """The gradient blocks of the loss: ``("z1", "z2", "kappa1", "kappa2")`` or ``("z1", "z2")``."""
    return ("z1", "z2", "kappa1", "kappa2") if conv.loss == "pcl" else ("z1", "z2")


def extra_keys(conv: Convention) -> tuple:
    """The extra candidates' arguments, passed after the batch's: ``("extra_z", "extra_kappa")``,
    ``("extra_z",)`` or none."""
    if not conv.extra_candidates:
        return ()
    return ("extra_z", "extra_kappa") if conv.loss == "pcl" else ("extra_z",)
