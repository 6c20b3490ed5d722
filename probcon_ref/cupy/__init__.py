"""CuPy's fused path: the elementwise steps of the loss as single kernels.

The array-API reference (:class:`probcon_ref.loss.ElementwiseSteps`) spends one kernel
launch and one temporary array per operation. On a GPU that costs time twice over: in the
launches, for the special functions of the concentrations (at d = 256, 152 elementwise
operations in float32 and 260 in float64, each on only 2N numbers), and in memory traffic, for the softmax over each (rows x 2N) block of logits.
:class:`FusedSteps` does the same steps with the kernels of ``probcon_ref/cupy/fused.cu``:

* the softmax of a block works in place in the block's logits: one pass for the gaps with
  the anchor and its positive excluded (no (rows x 2N) mask), a row maximum, one pass
  ``exp(delta - m)``, a row sum; the block's memory serves the logits, the gaps and ``e``;
* ``log C_d(kappa) - log C_d(0)``, that plus ``kappa``, and ``A_d(kappa)``, for orders in Debye's range
  (``d/2 - 1 >= n0``: 30 in float64, 10 in float32), in one launch each; below that range
  the reference's power series and recurrence are used.

The matrix products and the gradient are the common code. Selection is automatic for CuPy
arrays; :func:`use_fused_kernels` turns it off, for comparison. The kernels are
checked against the reference on the host (the same source compiled by a C++ compiler,
``tests/host_kernels.py``), compiled with NVRTC on every test run, and compared on the GPU
by ``tests/test_fused.py``.

The only data sent to the device are the Debye coefficients (a dozen Python floats, created
there as constants, as the reference creates its own); nothing is copied back.
"""

from __future__ import annotations

import contextlib
import math
import re
from contextvars import ContextVar
from functools import lru_cache
from importlib import resources

import array_api_compat
import numpy as np

from .. import _arrays, special
from ..loss import AnchorTerms, ElementwiseSteps
from ..special import NormalizerTerms

__all__ = ["use_fused_kernels", "FusedSteps", "kernel_source", "kernel_signatures", "KERNELS"]

#: The kernels of ``cuda/fused.cu``, in the order they are documented there.
KERNELS = ("logit_gaps", "shifted_exp", "normalizer_terms", "bessel_ratio")

THREADS = 256
_MAX_GRID_Y = 65535

_ENABLED: ContextVar[bool] = ContextVar("probcon_ref_fused", default=True)


def kernel_source() -> str:
    """The CUDA C++ source of the fused kernels (``REAL`` is set when compiling).

    No equation: plumbing; the kernels compute the equations that
    :class:`probcon_ref.loss.ElementwiseSteps` cites.
    """
    return resources.files("probcon_ref.cupy").joinpath("fused.cu").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def kernel_signatures() -> dict[str, tuple[str, ...]]:
    """The C type of each parameter of each kernel, read from the source (``REAL`` unexpanded).

    No equation: plumbing, for checking launch arguments.
    """
    found = re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', kernel_source())
    return {name: tuple(" ".join(p.split()[:-1]) for p in params.split(",")) for name, params in found}


_SCALAR_TYPES = {"long long": np.int64, "int": np.int32}


def check_arguments(name: str, real: str, args: tuple, is_array) -> None:
    """``TypeError`` unless ``args`` match the parameters of kernel ``name`` one for one.

    Kernel arguments are laid out by their Python types, so a NumPy scalar of the wrong
    width would shift every later parameter: arrays for pointers, ``np.int64`` for
    ``long long``, ``np.int32`` for ``int``, and the float type of ``REAL`` for ``REAL``.
    """
    params = kernel_signatures()[name]
    if len(args) != len(params):
        raise TypeError(f"{name} takes {len(params)} arguments, got {len(args)}")
    real_type = np.float64 if real == "double" else np.float32
    for i, (param, arg) in enumerate(zip(params, args)):
        if param.endswith("*"):
            ok = is_array(arg) and arg.dtype == real_type
        elif param == "REAL":
            ok = type(arg) is real_type
        else:
            ok = type(arg) is _SCALAR_TYPES[param]
        if not ok:
            of = f" of {arg.dtype}" if is_array(arg) else ""
            raise TypeError(f"{name}: argument {i} ({param}) got {type(arg).__name__}{of}")


@contextlib.contextmanager
def use_fused_kernels(enabled: bool):
    """Within this block, CuPy arrays take the fused kernels (``True``, the default) or the
    array-API reference (``False``). Other libraries always take the reference.

    No equation: it selects an implementation and computes nothing.

    >>> import probcon_ref
    >>> with probcon_ref.use_fused_kernels(False):
    ...     pass  # CuPy arrays here run exactly the code NumPy runs
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {type(enabled).__name__}")
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def steps_for(xp):
    """:class:`FusedSteps` for CuPy (when enabled), else ``None`` (the reference)."""
    if _ENABLED.get() and array_api_compat.is_cupy_namespace(xp):
        return FusedSteps(xp, cupy_launcher())
    return None


class FusedSteps(ElementwiseSteps):
    """The elementwise steps with the kernels of ``probcon_ref/cupy/fused.cu``.

    ``launch(name, real, grid, block, args)`` runs one kernel: CuPy's ``RawModule`` on the
    GPU (:class:`CupyLauncher`), or the host build of the same source in the tests. ``args``
    holds arrays of ``xp`` and NumPy scalars of the kernel's C types.

    No equation of its own: each step computes what the step of
    :class:`probcon_ref.loss.ElementwiseSteps` it replaces cites.
    """

    def __init__(self, xp, launch):
        super().__init__(xp)
        self.launch = launch

    def _real(self, a):
        return "double" if a.dtype == self.xp.float64 else "float"

    def _scalar(self, a, value: float):
        return np.float64(value) if a.dtype == self.xp.float64 else np.float32(value)

    def _coefficients(self, values, like):
        return self.xp.asarray(values, dtype=like.dtype, device=_arrays.device_of(like))

    def _debye_kernel(self, name: str, d: int, kappa, tail, outputs: int = 1):
        """Launch a Debye kernel on ``kappa``: its arguments are ``(kappa, *outputs, size, n,
        S(t)'s coefficients, their count, *tail(coefficients))``; returns the ``outputs``
        arrays (a tuple), or ``None`` below Debye's range."""
        nu = d / 2 - 1
        terms = special.debye_plan_for(nu, float(self.xp.finfo(kappa.dtype).eps))
        if terms is None:
            return None
        coef = special.debye_coefficients(nu, terms)
        size = math.prod(kappa.shape)
        out = tuple(self.xp.empty_like(kappa) for _ in range(outputs))
        blocks = max(1, min(-(-size // THREADS), 4096))
        self.launch(name, self._real(kappa), (blocks,), (THREADS,), (
            kappa, *out, np.int64(size), self._scalar(kappa, nu), self._coefficients(coef.sum, kappa),
            np.int32(len(coef.sum)), *tail(coef)))
        return out

    def normalizer_terms(self, d: int, kappa) -> NormalizerTerms:
        """One launch of ``normalizer_terms`` in Debye's range :eq:`eq-normalizer-shift` :eq:`eq-normalizer-peak`."""
        out = self._debye_kernel("normalizer_terms", d, kappa,
                                 lambda coef: (self._scalar(kappa, coef.log_sum_at_one),), outputs=2)
        return super().normalizer_terms(d, kappa) if out is None else NormalizerTerms(*out)

    def mean_resultant_length(self, d: int, kappa):
        """One launch of ``bessel_ratio`` in Debye's range :eq:`eq-debye-ratio`."""
        out = self._debye_kernel("bessel_ratio", d, kappa, lambda coef: (
            self._coefficients(coef.derivative, kappa), np.int32(len(coef.derivative))))
        return super().mean_resultant_length(d, kappa) if out is None else out[0]

    def _row_grid(self, rows: int, cols: int) -> tuple[int, int]:
        return max(1, min(-(-cols // THREADS), 1024)), min(rows, _MAX_GRID_Y)

    def logit_gaps(self, logits_rows, pos_logit, self_col: int, pos_col: int):
        """The gaps ``delta_ab``, computed in place in ``logits_rows`` :eq:`eq-delta`."""
        rows, cols = logits_rows.shape
        self.launch("logit_gaps", self._real(logits_rows), self._row_grid(rows, cols), (THREADS,),
                    (logits_rows, pos_logit, np.int64(rows), np.int64(cols), np.int64(self_col), np.int64(pos_col),
                     self._scalar(logits_rows, -math.inf)))
        return logits_rows

    def anchor_terms(self, gaps) -> AnchorTerms:
        """:func:`probcon_ref.loss.anchor_terms` with ``e`` computed in place in ``gaps`` :eq:`eq-loss-stable`."""
        xp = self.xp
        rows, cols = gaps.shape
        m = xp.maximum(xp.max(gaps, axis=1), _arrays.const(xp, 0.0, gaps))
        self.launch("shifted_exp", self._real(gaps), self._row_grid(rows, cols), (THREADS,),
                    (gaps, m, np.int64(rows), np.int64(cols)))
        s = xp.sum(gaps, axis=1)
        return AnchorTerms(m, gaps, s, xp.exp(-m) + s)


class CupyLauncher:
    """Compiles ``cuda/fused.cu`` once per precision with CuPy's ``RawModule`` and launches it."""

    def __init__(self, cupy):
        self.cupy = cupy
        self._modules: dict[str, object] = {}
        self._functions: dict[tuple[str, str], object] = {}

    def module(self, real: str):
        if real not in self._modules:
            self._modules[real] = self.cupy.RawModule(code=kernel_source(), options=(f"-DREAL={real}",))
        return self._modules[real]

    def function(self, name: str, real: str):
        if (name, real) not in self._functions:
            self._functions[name, real] = self.module(real).get_function(name)
        return self._functions[name, real]

    def __call__(self, name: str, real: str, grid: tuple, block: tuple, args: tuple) -> None:
        check_arguments(name, real, args, lambda a: isinstance(a, self.cupy.ndarray))
        for a in args:  # the kernels index flat memory
            if isinstance(a, self.cupy.ndarray) and not a.flags.c_contiguous:
                raise ValueError(f"{name}: kernel arguments must be C-contiguous")
        self.function(name, real)(grid, block, args)


_LAUNCHER: CupyLauncher | None = None


def cupy_launcher() -> CupyLauncher:
    global _LAUNCHER
    if _LAUNCHER is None:
        import cupy

        _LAUNCHER = CupyLauncher(cupy)
    return _LAUNCHER
