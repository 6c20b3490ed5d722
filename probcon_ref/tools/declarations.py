"""The one declaration of the supported array backends: ``backends.toml``, read and checked.

``backends.toml`` sits beside this module and ships with the package, so that an installed
``probcon-ref check`` reads the same list as the tests, ``backends/gpu-check`` and the
docs. :func:`load_declarations` turns it into plain dictionaries with every backend's
tolerances resolved; a malformed file is a ``ValueError`` naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..testing.tolerances import bound

DECLARATION_FILE = Path(__file__).with_name("backends.toml")
COMPUTE_DTYPES = ("float64", "float32")
HALF_DTYPES = ("float16", "bfloat16")
TOLERANCE_KEYS = ("loss", "grad", "log_iv", "ratio", "log_vmf", "inverse_ratio")
_REQUIRED_KEYS = ("module", "namespace", "install", "dtypes", "devices")


def parse_toml(text: str) -> dict:
    """``tomllib.loads``, with the ``tomli`` package standing in on Python 3.10."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ImportError("reading backends.toml needs Python >= 3.11 or the tomli package "
                              "(pip install tomli)") from exc
    return tomllib.loads(text)


def read_toml(path: str | Path = DECLARATION_FILE) -> dict:
    """The declaration as the file says it: defaults and overrides not yet merged."""
    return parse_toml(Path(path).read_text(encoding="utf-8"))


def load_declarations(path: str | Path = DECLARATION_FILE) -> dict[str, dict]:
    """Read ``backends.toml`` into ``{backend: declaration}`` with tolerances resolved.

    Each declaration has ``module``, ``namespace``, ``install``, ``dtypes``, ``half_dtypes``,
    ``devices`` (device -> ``{"name", "install", "gpu"}``) and ``tolerances``
    (dtype -> {key: value}), the file's ``[tolerances.DTYPE]`` defaults overlaid by the
    backend's own ``[backends.NAME.tolerances.DTYPE]``. A malformed file is a ``ValueError``
    naming the key.
    """
    data = read_toml(path)
    defaults = data.get("tolerances", {})
    backends = data.get("backends")
    if not isinstance(backends, dict) or not backends:
        raise ValueError(f"{Path(path).name}: no [backends.NAME] tables")
    if not isinstance(defaults, dict):
        raise ValueError("tolerances must hold one [tolerances.DTYPE] table per dtype")
    names: set[str] = set()  # target names, unique across backends
    return {backend: _backend(f"backends.{backend}", spec, defaults, names)
            for backend, spec in backends.items()}


def _backend(where: str, spec: Any, defaults: dict, names: set[str]) -> dict:
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a table")
    for key in _REQUIRED_KEYS:
        if key not in spec:
            raise ValueError(f"{where}.{key} is missing")
    dtypes = _dtypes(spec["dtypes"], COMPUTE_DTYPES, f"{where}.dtypes")
    half = _dtypes(spec.get("half_dtypes", []), HALF_DTYPES, f"{where}.half_dtypes")
    own = spec.get("tolerances", {})
    if not isinstance(own, dict):
        raise ValueError(f"{where}.tolerances must hold one [{where}.tolerances.DTYPE] table per dtype")
    return {
        "module": spec["module"],
        "namespace": spec["namespace"],
        "install": spec["install"],
        "dtypes": dtypes,
        "half_dtypes": half,
        "devices": _devices(where, spec["devices"], spec["install"], names),
        "tolerances": {dt: _tolerances(where, dt, defaults, own) for dt in dtypes + half},
    }


def _dtypes(values: Any, allowed: tuple[str, ...], where: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise ValueError(f"{where} must be a list of dtype names")
    for dt in values:
        if dt not in allowed:
            raise ValueError(f"{where}: {dt!r} is not one of {allowed}")
    return tuple(values)


def _devices(where: str, table: Any, install: str, names: set[str]) -> dict[str, dict]:
    """device -> ``{"name", "install", "gpu"}``; every name new to ``names``, then added to it."""
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{where}.devices must hold one [{where}.devices.DEVICE] table or more")
    out = {}
    for device, spec in table.items():
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.devices.{device}.name is missing")
        if name in names:
            raise ValueError(f"{where}.devices.{device}.name {name!r} is used twice")
        names.add(name)
        out[device] = {"name": name, "install": spec.get("install", install),
                       "gpu": bool(spec.get("gpu", device != "cpu"))}
    return out


def spec_defaults(dtype: str) -> dict[str, float]:
    """The consistency bounds that follow from the contract (:mod:`probcon_ref.testing.tolerances`).

    A backend is compared with NumPy float64 on the same inputs, both sides carrying the contract's
    error against 50 digits: the special functions get twice the contract's float64 bound, the loss
    and gradient the bounds of the contract, section :ref:`6 <contract-accuracy>`, as they are; float32 is the contract's float32 column. Half
    precisions have no row in the contract; backends.toml declares them.
    """
    if dtype not in COMPUTE_DTYPES:
        return {}
    factor = 2.0 if dtype == "float64" else 1.0
    out = {key: bound(key, dtype) for key in ("loss", "grad")}
    out.update({key: factor * bound(key, dtype) for key in ("log_iv", "ratio", "log_vmf")})
    return out


def _tolerances(where: str, dtype: str, defaults: dict, own: dict) -> dict[str, float]:
    """The contract's bounds, then the file's defaults of ``dtype``, then the backend's own; every key must end up set."""
    merged = spec_defaults(dtype)
    merged.update(_tolerance_table(defaults.get(dtype, {}), f"tolerances.{dtype}"))
    merged.update(_tolerance_table(own.get(dtype, {}), f"{where}.tolerances.{dtype}"))
    missing = [k for k in TOLERANCE_KEYS if k not in merged]
    if missing:
        raise ValueError(f"{where}: no tolerance {', '.join(missing)} for {dtype}")
    return merged


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
