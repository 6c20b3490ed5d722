"""How the command-line tools and the tests reach each array library: discover, convert, copy back.

This is tooling, not mathematics: the reference itself never branches on the library.
Conversions here are explicit (the user asked for a comparison on every backend), and the
copy back to the host happens only to report errors.

The supported backends are declared in the repository's ``backends/backends.toml``, with
their install lines and tolerances; :data:`SUPPORTED` below is the same list as Python, for
the installed package (which does not carry that folder). :func:`load_declarations` reads
the file, and ``tests/test_backends_registry.py`` keeps the two in agreement.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

COMPUTE_DTYPES = ("float64", "float32")
HALF_DTYPES = ("float16", "bfloat16")
TOLERANCE_KEYS = ("loss", "grad", "log_iv", "ratio", "log_vmf", "inverse_ratio")


@dataclass(frozen=True)
class Support:
    """What one backend supports: its module, devices (device -> name) and dtypes."""

    module: str
    namespace: str
    devices: dict  # device -> name used by PROBCON_REQUIRE_BACKENDS
    dtypes: tuple  # computed in themselves
    half_dtypes: tuple  # computed in float32, returned in the input dtype


SUPPORTED: dict[str, Support] = {
    "numpy": Support("numpy", "array_api_compat.numpy", {"cpu": "numpy"},
                     COMPUTE_DTYPES, ("float16",)),
    "array_api_strict": Support("array_api_strict", "array_api_strict", {"cpu": "array_api_strict"},
                                COMPUTE_DTYPES, ()),
    "torch": Support("torch", "array_api_compat.torch", {"cpu": "torch-cpu", "cuda": "torch-cuda"},
                     COMPUTE_DTYPES, ("float16", "bfloat16")),
    "cupy": Support("cupy", "array_api_compat.cupy", {"cuda": "cupy"},
                    COMPUTE_DTYPES, ("float16",)),
}


@dataclass(frozen=True)
class Target:
    """One (library, device, dtype) combination that can be exercised here."""

    backend: str
    device: str
    dtype: str
    from_numpy: Callable[[np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    synchronize: Callable[[], None]

    @property
    def name(self) -> str:
        """The target's name, as ``PROBCON_REQUIRE_BACKENDS`` spells it."""
        return SUPPORTED[self.backend].devices[self.device]


def _noop() -> None:
    return None


# ---------------------------------------------------------------------------------------
# One adapter per backend: import, device check, explicit conversions
# ---------------------------------------------------------------------------------------


class _Adapter:
    backend = ""

    def module(self):
        """The library's module; ``ImportError`` when it is not installed."""
        return importlib.import_module(SUPPORTED[self.backend].module)

    def device_problem(self, device: str) -> str | None:
        """Why ``device`` cannot be used here, or None when it can (library importable)."""
        return None

    def from_numpy(self, a, device: str, dtype: str):
        raise NotImplementedError

    def to_numpy(self, a) -> np.ndarray:
        raise NotImplementedError

    def synchronizer(self, device: str) -> Callable[[], None]:
        return _noop


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


ADAPTERS: dict[str, _Adapter] = {a.backend: a for a in (_NumPy(), _Strict(), _Torch(), _CuPy())}


def availability(backend: str, device: str) -> str | None:
    """None when ``backend`` imports and ``device`` answers here, else the reason it does not."""
    adapter = ADAPTERS[backend]
    try:
        adapter.module()
    except ImportError as exc:
        return f"{SUPPORTED[backend].module} is not installed ({exc})"
    return adapter.device_problem(device)


def make_target(backend: str, device: str, dtype: str) -> Target:
    """A :class:`Target` for a declared combination (the caller checks :func:`availability`)."""
    adapter = ADAPTERS[backend]
    return Target(
        backend, device, dtype,
        lambda a: adapter.from_numpy(a, device, dtype),
        adapter.to_numpy,
        adapter.synchronizer(device),
    )


def cupy_device_available() -> bool:
    """True when CuPy imports and a CUDA device answers (False on a machine without a GPU)."""
    return availability("cupy", "cuda") is None


def available_targets() -> list[Target]:
    """Every backend x device x compute dtype present on this machine, NumPy first."""
    out: list[Target] = []
    for backend, support in SUPPORTED.items():
        for device in support.devices:
            if availability(backend, device) is None:
                out.extend(make_target(backend, device, dt) for dt in support.dtypes)
    return out


def unavailable_targets() -> list[tuple[str, str]]:
    """(name, reason) for each declared backend x device that cannot run here."""
    out = []
    for backend, support in SUPPORTED.items():
        for device, name in support.devices.items():
            reason = availability(backend, device)
            if reason is not None:
                out.append((name, reason))
    return out


# ---------------------------------------------------------------------------------------
# backends/backends.toml
# ---------------------------------------------------------------------------------------


def _toml_loads(text: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ImportError("reading backends.toml needs Python >= 3.11 or the tomli package") from exc
    return tomllib.loads(text)


def _tolerance_table(table: Any, where: str) -> dict[str, float]:
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table of tolerances")
    out = {}
    for key, value in table.items():
        if key not in TOLERANCE_KEYS:
            raise ValueError(f"{where}.{key} is not a known tolerance (known: {', '.join(TOLERANCE_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1):
            raise ValueError(f"{where}.{key} must be a number in (0, 1), got {value!r}")
        out[key] = float(value)
    return out


def load_declarations(path: str | Path) -> dict[str, dict]:
    """Read ``backends.toml`` into ``{backend: declaration}`` with tolerances resolved.

    Each declaration has ``module``, ``namespace``, ``install``, ``dtypes``, ``half_dtypes``,
    ``devices`` (device -> ``{"name", "install", "gpu"}``) and ``tolerances``
    (dtype -> {key: value}), the file's ``[tolerances.DTYPE]`` defaults overlaid by the
    backend's own ``[backends.NAME.tolerances.DTYPE]``. A malformed file is a ``ValueError``
    naming the key.
    """
    path = Path(path)
    data = _toml_loads(path.read_text(encoding="utf-8"))
    defaults = data.get("tolerances", {})
    backends = data.get("backends")
    if not isinstance(backends, dict) or not backends:
        raise ValueError(f"{path.name}: no [backends.NAME] tables")
    out: dict[str, dict] = {}
    seen_names: set[str] = set()
    for backend, spec in backends.items():
        where = f"backends.{backend}"
        for key in ("module", "namespace", "install", "dtypes", "devices"):
            if key not in spec:
                raise ValueError(f"{where}.{key} is missing")
        dtypes = tuple(spec["dtypes"])
        half = tuple(spec.get("half_dtypes", ()))
        for dt in dtypes:
            if dt not in COMPUTE_DTYPES:
                raise ValueError(f"{where}.dtypes: {dt!r} is not one of {COMPUTE_DTYPES}")
        for dt in half:
            if dt not in HALF_DTYPES:
                raise ValueError(f"{where}.half_dtypes: {dt!r} is not one of {HALF_DTYPES}")
        devices = {}
        for device, dspec in spec["devices"].items():
            name = dspec.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"{where}.devices.{device}.name is missing")
            if name in seen_names:
                raise ValueError(f"{where}.devices.{device}.name {name!r} is used twice")
            seen_names.add(name)
            devices[device] = {
                "name": name,
                "install": dspec.get("install", spec["install"]),
                "gpu": bool(dspec.get("gpu", device != "cpu")),
            }
        own = spec.get("tolerances", {})
        tolerances = {}
        for dt in dtypes + half:
            merged = _tolerance_table(defaults.get(dt, {}), f"tolerances.{dt}")
            merged.update(_tolerance_table(own.get(dt, {}), f"{where}.tolerances.{dt}"))
            missing = [k for k in TOLERANCE_KEYS if k not in merged]
            if missing:
                raise ValueError(f"{where}: no tolerance {', '.join(missing)} for {dt}")
            tolerances[dt] = merged
        out[backend] = {
            "module": spec["module"],
            "namespace": spec["namespace"],
            "install": spec["install"],
            "dtypes": dtypes,
            "half_dtypes": half,
            "devices": devices,
            "tolerances": tolerances,
        }
    return out
