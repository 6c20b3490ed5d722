"""How the command-line tools and the tests reach each array library: discover, convert, copy back.

This is tooling, not mathematics: the reference itself never branches on the library.
Conversions here are explicit (the user asked for a comparison on every backend), and the
copy back to the host happens only to report errors.

Which backends exist, with their devices, dtypes and tolerances, is declared once in
``backends.toml`` (:mod:`probcon_ref.tools.declarations`); :data:`DECLARED` is that file,
read when this module is imported. What the file cannot say lives here: one adapter class
per declared backend, which imports the library, asks whether a device answers and converts
from and to NumPy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .declarations import load_declarations

DECLARED: dict[str, dict] = load_declarations()


@dataclass(frozen=True)
class Target:
    """One (library, device, dtype) combination that can be exercised here."""

    backend: str
    device: str
    dtype: str
    from_numpy: Callable[[np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    synchronize: Callable[[], None]
    #: ``ready(outputs)`` waits until ``outputs`` (arrays, or tuples of them) are computed: for a
    #: library that dispatches asynchronously and has no device-wide synchronisation (JAX).
    ready: Callable[[Any], Any] = lambda outputs: outputs

    @property
    def name(self) -> str:
        """The target's name, as ``PROBCON_REQUIRE_BACKENDS`` spells it."""
        return DECLARED[self.backend]["devices"][self.device]["name"]

    @property
    def tolerances(self) -> dict[str, float]:
        """The declared tolerances of this backend and dtype (``loss``, ``grad``, ...)."""
        return DECLARED[self.backend]["tolerances"][self.dtype]


def _noop() -> None:
    return None


def _identity(outputs):
    return outputs


# ---------------------------------------------------------------------------------------
# One adapter per backend: import, device check, explicit conversions
# ---------------------------------------------------------------------------------------


class _Adapter:
    backend = ""

    def module(self):
        """The library's module; ``ImportError`` when it is not installed."""
        return importlib.import_module(DECLARED[self.backend]["module"])

    def device_problem(self, device: str) -> str | None:
        """Why ``device`` cannot be used here, or None when it can (library importable)."""
        return None

    def from_numpy(self, a, device: str, dtype: str):
        raise NotImplementedError

    def to_numpy(self, a) -> np.ndarray:
        raise NotImplementedError

    def synchronizer(self, device: str) -> Callable[[], None]:
        return _noop

    def ready(self) -> Callable[[Any], Any]:
        return _identity


class _NumPy(_Adapter):
    backend = "numpy"

    def from_numpy(self, a, device, dtype):
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        return np.asarray(a)


class _Strict(_Adapter):
    backend = "array_api_strict"

    def from_numpy(self, a, device, dtype):
        xs = self.module()
        return xs.asarray(np.asarray(a, dtype=dtype))

    def to_numpy(self, a):
        xs = self.module()
        return np.from_dlpack(xs.asarray(a, device=xs.Device("CPU_DEVICE")))


class _Torch(_Adapter):
    backend = "torch"

    def device_problem(self, device):
        torch = self.module()
        if device == "cuda" and not torch.cuda.is_available():
            return f"no CUDA device: torch {torch.__version__} reports torch.cuda.is_available() False"
        return None

    def from_numpy(self, a, device, dtype):
        torch = self.module()
        if dtype == "bfloat16":  # NumPy has no bfloat16: round from float32 on the device
            return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device).to(torch.bfloat16)
        return torch.as_tensor(np.asarray(a, dtype=dtype), device=device)

    def to_numpy(self, a):
        torch = self.module()
        t = a.detach()
        if t.dtype == torch.bfloat16:
            t = t.to(torch.float32)
        return t.cpu().numpy()

    def synchronizer(self, device):
        return self.module().cuda.synchronize if device == "cuda" else _noop


class _CuPy(_Adapter):
    backend = "cupy"

    def device_problem(self, device):
        cupy = self.module()
        try:
            available = bool(cupy.cuda.is_available())
        except Exception as exc:  # a CUDA runtime that cannot load
            return f"cupy {cupy.__version__} imports but CUDA does not answer: {exc}"
        if not available:
            return f"no CUDA device: cupy {cupy.__version__} imports, cupy.cuda.is_available() is False"
        return None

    def from_numpy(self, a, device, dtype):
        return self.module().asarray(np.asarray(a, dtype=dtype))

    def to_numpy(self, a):
        return self.module().asnumpy(a)

    def synchronizer(self, device):
        return self.module().cuda.Device().synchronize


class _JAX(_Adapter):
    backend = "jax"

    def module(self):
        """``jax``, with float64 enabled (``jax_enable_x64``): float64 is a declared dtype, and
        without it JAX stores every float64 array as float32."""
        jax = super().module()
        jax.config.update("jax_enable_x64", True)
        return jax

    def device_problem(self, device):
        jax = self.module()
        try:
            jax.devices(device)
        except RuntimeError as exc:
            return f"jax {jax.__version__} has no {device} device ({exc})"
        return None

    def from_numpy(self, a, device, dtype):
        jax = self.module()
        wide = dtype == "bfloat16"  # NumPy has no bfloat16: round from float32 on the device
        out = jax.device_put(np.asarray(a, dtype=np.float32 if wide else dtype), jax.devices(device)[0])
        return out.astype(jax.numpy.bfloat16) if wide else out

    def to_numpy(self, a):
        jax = self.module()
        if a.dtype == jax.numpy.bfloat16:
            a = a.astype(jax.numpy.float32)
        return np.asarray(jax.device_get(a))

    def ready(self):
        return self.module().block_until_ready


ADAPTERS: dict[str, _Adapter] = {a.backend: a for a in (_NumPy(), _Strict(), _Torch(), _CuPy(), _JAX())}


def availability(backend: str, device: str) -> str | None:
    """None when ``backend`` imports and ``device`` answers here, else the reason it does not."""
    adapter = ADAPTERS[backend]
    try:
        adapter.module()
    except ImportError as exc:
        return f"{DECLARED[backend]['module']} is not installed ({exc})"
    return adapter.device_problem(device)


def make_target(backend: str, device: str, dtype: str) -> Target:
    """A :class:`Target` for a declared combination (the caller checks :func:`availability`)."""
    adapter = ADAPTERS[backend]
    return Target(
        backend, device, dtype,
        lambda a: adapter.from_numpy(a, device, dtype),
        adapter.to_numpy,
        adapter.synchronizer(device),
        adapter.ready(),
    )


def cupy_device_available() -> bool:
    """True when CuPy imports and a CUDA device answers (False on a machine without a GPU)."""
    return availability("cupy", "cuda") is None


def available_targets() -> list[Target]:
    """Every backend x device x compute dtype present on this machine, NumPy first."""
    out: list[Target] = []
    for backend, spec in DECLARED.items():
        for device in spec["devices"]:
            if availability(backend, device) is None:
                out.extend(make_target(backend, device, dt) for dt in spec["dtypes"])
    return out


def unavailable_targets() -> list[tuple[str, str]]:
    """(name, reason) for each declared backend x device that cannot run here."""
    out = []
    for backend, spec in DECLARED.items():
        for device, dspec in spec["devices"].items():
            reason = availability(backend, device)
            if reason is not None:
                out.append((dspec["name"], reason))
    return out

