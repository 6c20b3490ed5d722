"""The array types ``validate`` hands to the callable, and the way back to NumPy.

PyTorch, CuPy and JAX are imported only when a framework that needs them is chosen. A JAX
callable is handed NumPy arrays by the runner and wrapped by
:func:`probcon_ref.jax._validate.jax_candidate`, which makes the JAX arrays and takes the
gradients through ``jax.grad`` (JAX attaches no gradient to an array).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Framework", "dtype_name", "to_numpy"]


class Framework:
    """Makes the callable's arrays of one framework (NumPy, PyTorch on a device, CuPy, or
    NumPy for a JAX callable, which :meth:`wrap` turns into JAX arrays)."""

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
        elif name == "jax":
            try:
                from ..jax._validate import jax_candidate
            except ImportError as exc:
                raise ImportError("framework='jax' needs JAX installed") from exc
            self.jax_candidate = jax_candidate

    def array(self, a: np.ndarray, dtype: str, requires_grad: bool = False):
        """``a`` in ``dtype`` as an array of this framework (a leaf of autograd if asked)."""
        if self.name in ("numpy", "jax"):
            return np.array(a, dtype=dtype)
        if self.name == "torch":
            t = self.torch.tensor(np.array(a, dtype=dtype), device=self.device)
            return t.requires_grad_(True) if requires_grad else t
        return self.cupy.asarray(np.array(a, dtype=dtype))

    def wrap(self, fn, loss: str, gradients: str):
        """The callable the runner calls: ``fn`` itself, or for JAX ``fn`` wrapped to take
        NumPy arrays and return NumPy arrays with its gradients through ``jax.grad``."""
        if self.name != "jax":
            return fn
        return self.jax_candidate(fn, loss=loss, gradients=gradients)

    def is_tensor(self, value) -> bool:
        """Whether ``value`` is a PyTorch tensor (autograd can take its gradient)."""
        return self.name == "torch" and isinstance(value, self.torch.Tensor)


def dtype_name(value) -> str:
    """``"float32"``, ``"float64"``... of an array of any library; ``"Python float"`` and the like
    for a Python number (a Python float is a double)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return f"Python {type(value).__name__}"
    return str(dtype).rsplit(".", 1)[-1]  # torch.float32 -> float32


def to_numpy(value) -> np.ndarray:
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
