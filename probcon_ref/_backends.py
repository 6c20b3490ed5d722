"""How the command-line tools reach each array library: discover, convert, copy back.

This is tooling, not mathematics: the reference itself never branches on the library.
Conversions here are explicit (the user asked for a comparison on every backend), and the
copy back to the host happens only to report errors. The declarations the tests read live
in the repository's ``backends/`` folder; ``tests/test_backends_registry.py`` keeps the two
in agreement.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Target:
    """One (library, device, dtype) combination that can be exercised here."""

    backend: str
    device: str
    dtype: str
    from_numpy: Callable[[np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    synchronize: Callable[[], None]


def _noop() -> None:
    return None


def _numpy_targets():
    for dt in ("float64", "float32"):
        yield Target("numpy", "cpu", dt, lambda a, dt=dt: np.asarray(a, dtype=dt), np.asarray, _noop)


def _strict_targets():
    try:
        xs = importlib.import_module("array_api_strict")
    except ImportError:
        return
    for dt in ("float64", "float32"):
        yield Target(
            "array_api_strict", "cpu", dt,
            lambda a, dt=dt: xs.asarray(np.asarray(a, dtype=dt)),
            lambda a: np.from_dlpack(a), _noop,
        )


def _torch_targets():
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        sync = torch.cuda.synchronize if dev == "cuda" else _noop
        for dt in ("float64", "float32"):
            yield Target(
                "torch", dev, dt,
                lambda a, dt=dt, dev=dev: torch.as_tensor(np.asarray(a, dtype=dt), device=dev),
                lambda t: t.detach().cpu().numpy(), sync,
            )


def cupy_device_available() -> bool:
    """True when CuPy imports and a CUDA device answers (False on a machine without a GPU)."""
    try:
        cupy = importlib.import_module("cupy")
        return bool(cupy.cuda.is_available())
    except Exception:  # ImportError, or a CUDA runtime that cannot load
        return False


def _cupy_targets():
    if not cupy_device_available():
        return
    cupy = importlib.import_module("cupy")
    for dt in ("float64", "float32"):
        yield Target(
            "cupy", "cuda", dt,
            lambda a, dt=dt: cupy.asarray(np.asarray(a, dtype=dt)),
            cupy.asnumpy, cupy.cuda.Device().synchronize,
        )


def available_targets() -> list[Target]:
    """Every backend x device x dtype present on this machine, NumPy first."""
    out: list[Target] = []
    for gen in (_numpy_targets, _strict_targets, _torch_targets, _cupy_targets):
        out.extend(gen())
    return out
