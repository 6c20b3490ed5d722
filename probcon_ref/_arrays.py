"""Array plumbing shared by the reference: namespace, device and dtype rules (the contract, section :ref:`7 <contract-inputs>`).

Everything that is *not* mathematics lives here, so the modules that implement the
equations read like the derivation. Nothing in this file moves data between host and
device: constants are created with the dtype and on the device of the array they meet; the
one read of a value, :func:`read_int`, is the caller's host synchronisation.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "namespace_of",
    "working_dtype",
    "to_working",
    "to_output",
    "const",
    "device_of",
    "check_finite",
    "check_nonnegative",
    "check_positive_scalar",
    "real_scalar",
    "integer_scalar",
    "float_array",
    "read_int",
    "read_bool",
]


def namespace_of(**arrays: Any):
    """Return the array namespace shared by the named arrays.

    Raises ``TypeError`` naming the arguments when they come from different array
    libraries, and ``ValueError`` when they live on different devices (the contract, section :ref:`7 <contract-inputs>`);
    an array whose device is not known yet (traced, inside ``jax.jit``) is on none.
    """
    present = {name: a for name, a in arrays.items() if a is not None}
    for name, a in present.items():
        _reject_masked(a, name)
        if not array_api_compat.is_array_api_obj(a):
            raise TypeError(
                f"{name} must be an array (NumPy, PyTorch, CuPy or another array-API "
                f"library), got {type(a).__name__}"
            )
    spaces: dict[str, Any] = {}
    for name, a in present.items():
        spaces[name] = array_api_compat.array_namespace(a)
    distinct = {id(ns): ns for ns in spaces.values()}
    if len(distinct) > 1:
        desc = ", ".join(f"{n} from {ns.__name__}" for n, ns in spaces.items())
        raise TypeError(f"all arrays must come from one array library; got {desc}")
    xp = next(iter(spaces.values()))
    # A traced JAX array has no device yet (array-api-compat reports None): it takes the
    # device of the computation, so only the devices that are known are compared.
    devices = {name: dev for name, a in present.items() if (dev := device_of(a)) is not None}
    if not devices:
        return xp
    first_name, first_dev = next(iter(devices.items()))
    for name, dev in devices.items():
        if dev != first_dev:
            raise ValueError(
                f"all arrays must be on one device; {first_name} is on {first_dev} "
                f"but {name} is on {dev}"
            )
    return xp


def device_of(a):
    """The device of ``a`` as array-api-compat reports it."""
    return array_api_compat.device(a)


def working_dtype(xp, dt, name: str):
    """The dtype the computation runs in for an input of dtype ``dt``.

    float64 and float32 compute in themselves; float16 and bfloat16 compute in float32
    (the contract, section :ref:`7 <contract-inputs>`). Integer, boolean and complex input is a ``TypeError``.
    """
    if dt == xp.float64 or dt == xp.float32:
        return dt
    if _is_half(xp, dt):
        return xp.float32
    raise TypeError(f"{name} must have a real floating dtype, got {dt}")


def _is_half(xp, dt) -> bool:
    for half in ("float16", "bfloat16"):
        cand = getattr(xp, half, None)
        if cand is not None and dt == cand:
            return True
    # Libraries outside the standard may expose these only on the wrapped module.
    return str(dt).endswith(("float16", "bfloat16"))


def to_working(xp, a, dtype):
    """``a`` converted to the working dtype (no copy when it already has it)."""
    return a if a.dtype == dtype else xp.astype(a, dtype)


def to_output(xp, a, dtype):
    """``a`` cast back to the caller's dtype."""
    return a if a.dtype == dtype else xp.astype(a, dtype)


def const(xp, value: float, like):
    """A 0-d constant with the dtype and on the device of ``like``."""
    return xp.asarray(value, dtype=like.dtype, device=device_of(like))


def check_finite(xp, a, name: str) -> None:
    """``ValueError`` naming ``name`` when ``a`` holds NaN or infinity."""
    if not bool(xp.all(xp.isfinite(a))):
        raise ValueError(f"{name} must be finite; it contains NaN or infinity")


def check_nonnegative(xp, a, name: str) -> None:
    """``ValueError`` naming ``name`` when ``a`` holds a negative (or NaN) value."""
    if not bool(xp.all(a >= 0)):
        raise ValueError(f"{name} must be non-negative; it contains a negative value or NaN")


def _reject_masked(a, name: str) -> None:
    """``TypeError`` for a NumPy masked array: its mask would be silently ignored."""
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, which is not supported: its mask would be ignored; "
                        f"pass {name}.filled(value) or the rows you want")


def read_int(a) -> int | None:
    """``int(a)`` of a 0-d integer array, the host read; ``None`` while ``a`` has no value yet.

    An array being traced (inside ``jax.jit`` or ``jax.vmap``) stands for values that do not
    exist until the compiled function runs; ``int()`` of it raises ``TypeError``, as the
    array API standard allows a lazy array to do. That error, and only for an array that
    array-api-compat calls lazy, becomes ``None``: the caller decides what an unknown value
    means. Every other library is read as ``int(a)``, and raises as it always did.
    """
    return _read(int, a)


def read_bool(a) -> bool | None:
    """``bool(a)`` of a 0-d boolean array (one host read), ``None`` while it is traced (:func:`read_int`)."""
    return _read(bool, a)


def _read(convert, a):
    try:
        return convert(a)
    except TypeError:
        if array_api_compat.is_lazy_array(a):
            return None
        raise


def real_scalar(value, name: str) -> float:
    """A real number as a Python float: a Python or NumPy number, or a 0-d real array.

    Booleans, complex numbers and arrays with more than one element are a ``TypeError``
    naming ``name``, and so is a traced array (under ``jax.jit``), whose value does not exist
    yet: such an argument is static, a Python number. Reading a 0-d array on an accelerator
    is one host synchronisation.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got bool")
    if isinstance(value, numbers.Real):
        return float(value)
    if array_api_compat.is_array_api_obj(value) and getattr(value, "ndim", None) == 0:
        _reject_masked(value, name)
        xp = array_api_compat.array_namespace(value)
        if xp.isdtype(value.dtype, ("real floating", "integral")):
            return _concrete_float(value, name)
    raise TypeError(f"{name} must be a real number (a Python or NumPy number, or a 0-d real array), "
                    f"got {type(value).__name__}")


def _concrete_float(value, name: str) -> float:
    try:
        return float(value)
    except TypeError:
        if not array_api_compat.is_lazy_array(value):
            raise
    raise TypeError(f"{name} must be a concrete number, got a traced array: under jax.jit pass it as a "
                    f"Python number (a static argument)") from None


def integer_scalar(value, name: str) -> int:
    """An integer of any integer type (``operator.index``) as a Python int; bool is a ``TypeError``."""
    if isinstance(value, (bool, np.bool_)) or (array_api_compat.is_array_api_obj(value)
                                               and array_api_compat.array_namespace(value).isdtype(value.dtype, "bool")):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def check_positive_scalar(value, name: str) -> float:
    """A finite positive number (see :func:`real_scalar`), else ``ValueError``/``TypeError`` naming ``name``."""
    value = real_scalar(value, name)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def float_array(x, name: str):
    """Accept an array, or a Python number/sequence (then as a float64 NumPy array)."""
    _reject_masked(x, name)
    if array_api_compat.is_array_api_obj(x):
        return x
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a real floating array or number, got bool")
    if isinstance(x, (int, float, list, tuple)):
        return np.asarray(x, dtype=np.float64)
    raise TypeError(f"{name} must be an array or a real number, got {type(x).__name__}")
