"""``probcon-ref vectors``: portable golden vectors for the PCL and NT-Xent.

A versioned set of small cases covering every regime of SPEC section 6, each stored as
``NAME.npz`` (plain float64 arrays, readable with ``numpy.load(..., allow_pickle=False)``)
and ``NAME.json`` (the same numbers as JSON, each float64 written so that it reads back
exactly), plus ``manifest.json`` and a ``README.md`` that explains the format. The outputs
(loss, per-anchor losses, every gradient) are computed at 50 significant digits by
:mod:`probcon_ref.testing.oracle` and rounded to float64 once, so an implementation in any language
can test itself without Python.

The set ships with the package (``probcon_ref/testing/golden``): ``probcon-ref vectors DIR``
writes it out; ``--recompute`` rebuilds every case's inputs from its seed and evaluates it
again at 50 digits (needs mpmath; a few seconds), which reproduces the shipped numbers bit for
bit on any machine. :func:`load` reads a written set and checks it against its manifest.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable

import numpy as np

__all__ = ["FORMAT", "VERSION", "CASES", "GoldenCase", "GoldenVectorError", "Stream", "case_inputs", "compute",
           "load", "write", "shipped_directory"]

FORMAT = "probcon-ref golden vectors"
VERSION = 1

PCL_INPUTS = ("z1", "z2", "kappa1", "kappa2")
PCL_OUTPUTS = ("loss", "loss_sum", "losses", "grad_z1", "grad_z2", "grad_kappa1", "grad_kappa2",
               "log_vmf_normalizer", "mean_resultant_length")
NTXENT_INPUTS = ("z1", "z2", "temperature")
NTXENT_OUTPUTS = ("loss", "loss_sum", "losses", "grad_z1", "grad_z2")


@dataclass(frozen=True)
class CaseSpec:
    """How one golden case is made: its name, loss, regimes and input builder."""

    name: str
    loss: str  # "pcl" or "ntxent"
    description: str
    regimes: tuple[str, ...]
    build: Callable[["Stream"], dict]
    seed: int


# ---------------------------------------------------------------------------------------
# Inputs that are the same float64 on every machine
# ---------------------------------------------------------------------------------------
#
# A case's inputs are rebuilt from its seed, so they must not depend on the CPU, the C
# library or the NumPy version. They are therefore made from integers only: SplitMix64
# draws (64-bit integer arithmetic), sums of those, and integer rounding. An integer becomes
# a float64 once, as the exact rational k * scale rounded by Python's correctly rounded
# integer division (`fractions.Fraction` to float); most scales are powers of two, where that
# is exact. Constants are decimal literals, which Python's parser rounds correctly. No
# transcendental function (whose last bit differs between libm and NumPy's SIMD kernels, the
# reason np.logspace gave 1e-05 on one CPU and 9.999999999999999e-06 on another), no
# Gaussian sampler (its tails call exp and log) and no float product that a compiler could
# fuse into an FMA takes part.

_MASK64 = (1 << 64) - 1


class Stream:
    """SplitMix64 (Steele, Lea and Flood, 2014): integer draws identical on every platform.

    Each case has its own stream, seeded with the case's ``seed``; ``integers`` maps a 64-bit
    draw ``x`` to ``low + (x * (high - low + 1) >> 64)`` (inclusive bounds).
    """

    def __init__(self, seed: int):
        self._state = int(seed) & _MASK64

    def next_u64(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        return z ^ (z >> 31)

    def integers(self, low: int, high: int, shape=()) -> np.ndarray:
        """Integers in ``[low, high]``, an int64 array of ``shape``."""
        span = high - low + 1
        count = math.prod(shape)
        return np.array([low + ((self.next_u64() * span) >> 64) for _ in range(count)],
                        dtype=np.int64).reshape(shape)

    def bell(self, half_width: int, shape=()) -> np.ndarray:
        """Roughly Gaussian integers of standard deviation about ``half_width``: the sum of
        three uniform integers in ``[-half_width, half_width]`` (variance ``h (h + 1)``)."""
        return sum(self.integers(-half_width, half_width, shape) for _ in range(3))


def _float(k, scale=Fraction(1)) -> np.ndarray:
    """The float64 nearest to each ``k * scale`` (an exact rational), rounded once."""
    k = np.asarray(k, dtype=np.int64)
    values = [float(Fraction(int(v)) * scale) for v in k.ravel()]
    return np.array(values, dtype=np.float64).reshape(k.shape)


_UNIT = 1024  # embedding entries are multiples of 1/1024 (times 10**p for the norm cases)


def _pair_counts(s: Stream, n: int, d: int, noise_den: int = 2):
    """Integer views ``(k1, k2, scale)``: ``z1 = k1 * scale`` has entries of standard
    deviation about 1 and ``z2 = z1 + noise`` with noise of standard deviation 1/noise_den."""
    k1 = s.bell(_UNIT, (n, d)) * noise_den
    k2 = k1 + s.bell(_UNIT, (n, d))
    return k1, k2, Fraction(1, _UNIT * noise_den)


def _directions(s: Stream, n: int, d: int) -> np.ndarray:
    return _float(s.bell(_UNIT, (n, d)), Fraction(1, _UNIT))


def _noisy_pair(s: Stream, n: int, d: int, noise_den: int = 2):
    k1, k2, scale = _pair_counts(s, n, d, noise_den)
    return _float(k1, scale), _float(k2, scale)


def _kappas(s: Stream, n: int) -> np.ndarray:
    """Moderate concentrations m * 2**e, m in 16..31, e in -5..0: from 0.5 to 31."""
    m, e = s.integers(16, 31, (n,)), s.integers(-5, 0, (n,))
    return np.array([float(Fraction(int(a)) * Fraction(2) ** int(b)) for a, b in zip(m, e)])


def _pcl(z1, z2, k1, k2):
    return {"z1": np.asarray(z1, np.float64), "z2": np.asarray(z2, np.float64),
            "kappa1": np.asarray(k1, np.float64), "kappa2": np.asarray(k2, np.float64)}


def _nt(z1, z2, tau):
    return {"z1": np.asarray(z1, np.float64), "z2": np.asarray(z2, np.float64),
            "temperature": np.asarray(tau, np.float64)}


def _random_pcl(n, d):
    def build(s):
        z1, z2 = _noisy_pair(s, n, d)
        return _pcl(z1, z2, _kappas(s, n), _kappas(s, n))
    return build


def _large_d(s):
    # Entries are multiples of 1/16 so the inputs stay short in JSON; the outputs are not.
    # z2 takes a tenth of z1 (rounded to a sixteenth in integer arithmetic), so with kappa
    # 30 to 300 no candidate dominates.
    n, d = 2, 4096
    k1 = s.bell(16, (n, d))
    k2 = s.bell(16, (n, d)) + (k1 + 5) // 10
    return _pcl(_float(k1, Fraction(1, 16)), _float(k2, Fraction(1, 16)), [30.0, 150.0], [80.0, 300.0])


def _order63_tiny_kappa(s):
    z1, z2 = _noisy_pair(s, 3, 128)
    return _pcl(z1, z2, [1e-6, 1e-5, 1e-4], [1e-5, 5.6e-5, 3e-4])


def _kappa_zero(s):
    z1, z2 = _noisy_pair(s, 3, 16)
    return _pcl(z1, z2, [0.0, 0.0, 3.0], [0.0, 1e-300, 5.0])


def _kappa_zero_d2(s):
    z1, z2 = _noisy_pair(s, 3, 2)
    return _pcl(z1, z2, [0.0, 0.5, 0.0], [2.0, 0.0, 1e-8])


def _huge_kappa(s):
    z1, z2 = _noisy_pair(s, 3, 64, noise_den=16)
    return _pcl(z1, z2, [1e4, 2e5, 1e6], [5e4, 1e6, 3e5])


def _identical(s):
    z1 = _directions(s, 4, 16)
    return _pcl(z1, z1.copy(), _float(s.integers(20, 200, (4,)), Fraction(1, 4)),
                _float(s.integers(20, 200, (4,)), Fraction(1, 4)))


def _confident(s):
    # identical views, large kappa: per-anchor losses from 1e-97 to 1e-46
    z1 = _directions(s, 3, 32)
    return _pcl(z1, z1.copy(), [100.0, 250.0, 400.0], [150.0, 700.0, 900.0])


def _underflow(s):
    # identical views, d = 256, kappa 500 to 3000: per-anchor losses near and below the
    # smallest normal float64 (2.2e-308)
    z1 = _directions(s, 3, 256)
    return _pcl(z1, z1.copy(), [500.0, 1000.0, 2000.0], [750.0, 1500.0, 3000.0])


def _antipodal(s):
    z1 = _directions(s, 4, 8)
    return _pcl(z1, -z1, _float(s.integers(4, 160, (4,)), Fraction(1, 8)),
                _float(s.integers(4, 160, (4,)), Fraction(1, 8)))


def _rows_times_ten_to(k, scale, powers):
    """Row i of ``k * scale`` times ``10**powers[i]``, each entry rounded once."""
    return np.stack([_float(row, scale * Fraction(10) ** int(p)) for row, p in zip(k, powers)])


def _scaled(powers_of_rows):
    """Random pairs whose rows are scaled by 10**p (norms about 3 * 10**p)."""
    def build(s):
        n, d = 4, 8
        k1, k2, scale = _pair_counts(s, n, d)
        p1, p2 = powers_of_rows(s, n)
        return _pcl(_rows_times_ten_to(k1, scale, p1), _rows_times_ten_to(k2, scale, p2),
                    _kappas(s, n), _kappas(s, n))
    return build


def _n1(s):
    z1, z2 = _noisy_pair(s, 1, 5)
    return _pcl(z1, z2, [3.0], [0.5])


def _ntxent_limit(s):
    z1, z2 = _noisy_pair(s, 4, 8)
    return _pcl(z1, z2, np.full(4, 2.0), np.full(4, 2.0))


def _nt_random(n, d, tau, noise_den=2):
    def build(s):
        z1, z2 = _noisy_pair(s, n, d, noise_den)
        return _nt(z1, z2, tau)
    return build


def _nt_identical(s):
    z1 = _directions(s, 3, 8)
    return _nt(z1, z1.copy(), 0.02)


def _nt_antipodal(s):
    z1 = _directions(s, 3, 4)
    return _nt(z1, -z1, 1.0)


def _nt_norms(s):
    k1, k2, scale = _pair_counts(s, 3, 6)
    return _nt(_rows_times_ten_to(k1, scale, [-6, 0, 6]), _rows_times_ten_to(k2, scale, [6, -6, 0]), 0.3)


_TINY = (lambda s, n: ([-6] * n, [-6] * n))
_HUGE = (lambda s, n: ([6] * n, [6] * n))
# each end in both views, and pairs whose views differ in norm by 1e12
_MIXED = (lambda s, n: ([-6, 6, 0, -3][:n], [6, -6, 3, 0][:n]))

CASES: tuple[CaseSpec, ...] = (
    CaseSpec("pcl-basic", "pcl", "random batch, moderate kappa", ("random",), _random_pcl(4, 8), 1),
    CaseSpec("pcl-d2", "pcl", "circle, d = 2 (order 0)", ("d2",), _random_pcl(4, 2), 2),
    CaseSpec("pcl-d3", "pcl", "sphere, d = 3 (order 1/2)", ("d3", "odd-d"), _random_pcl(4, 3), 3),
    CaseSpec("pcl-odd-d", "pcl", "odd dimension d = 33 (half-integer order)", ("odd-d",), _random_pcl(3, 33), 4),
    CaseSpec("pcl-large-d", "pcl", "d = 4096 (order 2047), kappa 30 to 300", ("large-d",), _large_d, 5),
    CaseSpec("pcl-order63-tiny-kappa", "pcl", "d = 128 (order 63), kappa 1e-6 to 3e-4",
             ("large-order", "tiny-kappa"), _order63_tiny_kappa, 6),
    CaseSpec("pcl-kappa-zero", "pcl", "kappa = 0 and kappa = 1e-300, d = 16", ("kappa-zero",), _kappa_zero, 7),
    CaseSpec("pcl-kappa-zero-d2", "pcl", "kappa = 0 with d = 2 (order 0)", ("kappa-zero", "d2"), _kappa_zero_d2, 8),
    CaseSpec("pcl-huge-kappa", "pcl", "kappa 1e4 to 1e6, close views", ("huge-kappa",), _huge_kappa, 9),
    CaseSpec("pcl-identical", "pcl", "identical views (cosine of every positive is 1)", ("identical",), _identical, 10),
    CaseSpec("pcl-confident", "pcl", "identical views and large kappa: losses from 1e-97 to 1e-46",
             ("identical", "tiny-loss"), _confident, 11),
    CaseSpec("pcl-underflow", "pcl", "identical views, d = 256, kappa 500 to 3000: losses at float64 underflow",
             ("identical", "tiny-loss", "large-order"), _underflow, 18),
    CaseSpec("pcl-antipodal", "pcl", "antipodal views (cosine of every positive is -1)", ("antipodal",), _antipodal, 12),
    CaseSpec("pcl-tiny-norms", "pcl", "raw norms 1e-6", ("tiny-norm",), _scaled(_TINY), 13),
    CaseSpec("pcl-huge-norms", "pcl", "raw norms 1e6", ("huge-norm",), _scaled(_HUGE), 14),
    CaseSpec("pcl-mixed-norms", "pcl", "raw norms from 1e-6 to 1e6", ("tiny-norm", "huge-norm"), _scaled(_MIXED), 15),
    CaseSpec("pcl-n1", "pcl", "N = 1: the positive is the only candidate, loss and gradients 0", ("n1",), _n1, 16),
    CaseSpec("pcl-ntxent-limit", "pcl", "kappa = 2 everywhere: equals ntxent with temperature 0.5",
             ("equal-kappa",), _ntxent_limit, 17),
    CaseSpec("ntxent-basic", "ntxent", "random batch, temperature 0.5", ("random",), _nt_random(4, 8, 0.5), 101),
    CaseSpec("ntxent-small-tau", "ntxent", "temperature 0.05", ("small-tau",), _nt_random(4, 16, 0.05, noise_den=4), 102),
    CaseSpec("ntxent-identical", "ntxent", "identical views, temperature 0.02: tiny losses",
             ("identical", "tiny-loss"), _nt_identical, 103),
    CaseSpec("ntxent-d2", "ntxent", "d = 2, temperature 0.2", ("d2",), _nt_random(4, 2, 0.2), 104),
    CaseSpec("ntxent-antipodal", "ntxent", "antipodal views, temperature 1", ("antipodal",), _nt_antipodal, 105),
    CaseSpec("ntxent-mixed-norms", "ntxent", "raw norms 1e-6, 1 and 1e6, temperature 0.3",
             ("tiny-norm", "huge-norm"), _nt_norms, 106),
    CaseSpec("ntxent-n1", "ntxent", "N = 1: loss and gradients 0", ("n1",), _nt_random(1, 3, 0.5), 107),
)

_BY_NAME = {c.name: c for c in CASES}


def _spec(name: str) -> CaseSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown golden case {name!r}; known: {', '.join(_BY_NAME)}") from None


def case_inputs(name: str) -> dict:
    """The inputs of case ``name``, rebuilt from its seed (float64 NumPy arrays)."""
    spec = _spec(name)
    return spec.build(Stream(spec.seed))


def compute(name: str, inputs: dict | None = None) -> dict:
    """All outputs of case ``name`` at 50 digits (rounded to float64), for ``inputs`` or its own."""
    from . import oracle

    spec = _spec(name)
    x = case_inputs(name) if inputs is None else inputs
    if spec.loss == "pcl":
        r = oracle.pcl(x["z1"], x["z2"], x["kappa1"], x["kappa2"])
        extra = {"grad_kappa1": r.grads["kappa1"], "grad_kappa2": r.grads["kappa2"],
                 "log_vmf_normalizer": r.log_c, "mean_resultant_length": r.mean_length}
    else:
        r = oracle.ntxent(x["z1"], x["z2"], temperature=float(x["temperature"]))
        extra = {}
    out = {"loss": np.float64(r.loss), "loss_sum": np.float64(r.loss_sum), "losses": r.losses,
           "grad_z1": r.grads["z1"], "grad_z2": r.grads["z2"], **extra}
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


@dataclass
class GoldenCase:
    """One golden case as read back: metadata, inputs and outputs (float64 NumPy arrays)."""

    name: str
    loss: str
    n: int
    d: int
    regimes: tuple[str, ...]
    description: str
    inputs: dict
    outputs: dict

    @property
    def temperature(self) -> float | None:
        t = self.inputs.get("temperature")
        return None if t is None else float(t)


def _meta(spec: CaseSpec, inputs: dict) -> dict:
    n, d = inputs["z1"].shape
    meta = {"name": spec.name, "loss": spec.loss, "n": int(n), "d": int(d),
            "regimes": list(spec.regimes), "description": spec.description,
            "reduction": "mean", "npz": f"{spec.name}.npz", "json": f"{spec.name}.json"}
    if spec.loss == "ntxent":
        meta["temperature"] = float(inputs["temperature"])
    return meta


def _json_value(a: np.ndarray):
    """Nested lists of Python floats; ``repr`` of a float64 reads back to the same float64."""
    if not np.all(np.isfinite(a)):
        raise ValueError("golden vectors hold finite numbers only")
    return a.tolist() if a.ndim else float(a)


def _write_case(directory: Path, spec: CaseSpec, inputs: dict, outputs: dict, formats) -> dict:
    meta = _meta(spec, inputs)
    arrays = {**inputs, **outputs}
    if "npz" in formats:
        np.savez_compressed(directory / meta["npz"], **arrays)
    if "json" in formats:
        doc = {"format": FORMAT, "version": VERSION, **{k: v for k, v in meta.items() if k not in ("npz", "json")},
               "inputs": {k: _json_value(v) for k, v in inputs.items()},
               "outputs": {k: _json_value(v) for k, v in outputs.items()}}
        (directory / meta["json"]).write_text(_dump_json(doc), encoding="utf-8")
    return meta


def _dump_json(doc: dict) -> str:
    """JSON with one key per line and one matrix row per line (compact, still readable)."""

    def value(v, indent):
        if isinstance(v, dict):
            inner = ",\n".join(f"{indent} {json.dumps(k)}: {value(x, indent + ' ')}" for k, x in v.items())
            return "{\n" + inner + "\n" + indent + "}"
        if isinstance(v, list) and v and isinstance(v[0], list):
            rows = ",\n".join(f"{indent} {json.dumps(r, separators=(',', ':'))}" for r in v)
            return "[\n" + rows + "\n" + indent + "]"
        return json.dumps(v, separators=(",", ":"))

    return value(doc, "") + "\n"


def shipped_directory():
    """The golden set installed with the package (a ``Traversable``)."""
    return resources.files("probcon_ref.testing") / "golden"


class GoldenVectorError(ValueError):
    """A golden-vector file is unreadable or disagrees with its manifest.

    ``path`` is the file (``manifest.json``, ``NAME.npz`` or ``NAME.json``) and ``problem``
    what is wrong with it; the message reads ``"PATH: PROBLEM"``.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


_LOSSES = {"pcl": (PCL_INPUTS, PCL_OUTPUTS), "ntxent": (NTXENT_INPUTS, NTXENT_OUTPUTS)}
# the shape of every array, from the case's N and d
_SHAPES = {"z1": "nd", "z2": "nd", "grad_z1": "nd", "grad_z2": "nd",
           "kappa1": "n", "kappa2": "n", "grad_kappa1": "n", "grad_kappa2": "n",
           "losses": "2n", "log_vmf_normalizer": "2n", "mean_resultant_length": "2n",
           "temperature": "", "loss": "", "loss_sum": ""}
_FLOAT64 = np.dtype("<f8")  # as the format stores it: little-endian IEEE double


def _shape(key: str, n: int, d: int) -> tuple:
    return {"nd": (n, d), "n": (n,), "2n": (2 * n,), "": ()}[_SHAPES[key]]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _inside(root, rel, manifest_path, where: str, key: str):
    """``root / rel`` for a relative path ``rel`` that stays inside ``root``."""
    if not isinstance(rel, str) or not rel:
        raise GoldenVectorError(manifest_path, f"{where}: {key} must be a file name, got {rel!r}")
    windows = PureWindowsPath(rel)  # reads / and \ as separators, and drive letters
    if PurePosixPath(rel).is_absolute() or windows.drive or windows.root or ".." in windows.parts:
        raise GoldenVectorError(manifest_path, f"{where}: {key} {rel!r} is not a path inside the directory "
                                               "(absolute paths and '..' are refused)")
    path = root / rel
    if isinstance(root, Path):  # a link may still lead outside
        try:
            path.resolve().relative_to(root.resolve())
        except ValueError:
            raise GoldenVectorError(manifest_path, f"{where}: {key} {rel!r} leads outside the directory") from None
    return path


def _read_manifest(root):
    path = root / "manifest.json"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenVectorError(path, f"cannot be read ({type(exc).__name__}: {exc}); "
                                      "is this a golden-vector directory?") from exc
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise GoldenVectorError(path, f"is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise GoldenVectorError(path, "is not a JSON object")
    if doc.get("format") != FORMAT:
        raise GoldenVectorError(path, f"not a golden-vector manifest (format {doc.get('format')!r})")
    if doc.get("version") != VERSION:
        raise GoldenVectorError(path, f"golden vectors version {doc.get('version')!r}, this reader knows {VERSION}")
    if not isinstance(doc.get("cases"), list):
        raise GoldenVectorError(path, "'cases' must be a list")
    metas, seen = [], set()
    for i, meta in enumerate(doc["cases"]):
        where = f"case {i}"
        if not isinstance(meta, dict):
            raise GoldenVectorError(path, f"{where} is not a JSON object")
        missing = [k for k in ("name", "loss", "n", "d", "regimes", "description", "npz", "json") if k not in meta]
        if missing:
            raise GoldenVectorError(path, f"{where} lacks {', '.join(missing)}")
        name = meta["name"]
        if not isinstance(name, str) or not name:
            raise GoldenVectorError(path, f"{where}: name must be a non-empty string, got {name!r}")
        where = f"case {i} ({name!r})"
        if name in seen:
            raise GoldenVectorError(path, f"{where}: duplicate case name {name!r}")
        seen.add(name)
        if meta["loss"] not in _LOSSES:
            raise GoldenVectorError(path, f"{where}: unknown loss {meta['loss']!r} (known: {', '.join(_LOSSES)})")
        if not (_is_int(meta["n"]) and meta["n"] >= 1 and _is_int(meta["d"]) and meta["d"] >= 2):
            raise GoldenVectorError(path, f"{where}: n must be an integer >= 1 and d >= 2, "
                                          f"got n={meta['n']!r}, d={meta['d']!r}")
        if not (isinstance(meta["regimes"], list) and all(isinstance(r, str) for r in meta["regimes"])):
            raise GoldenVectorError(path, f"{where}: regimes must be a list of strings")
        if not isinstance(meta["description"], str):
            raise GoldenVectorError(path, f"{where}: description must be a string")
        if meta["loss"] == "ntxent":
            t = meta.get("temperature")
            if not (isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0):
                raise GoldenVectorError(path, f"{where}: temperature must be a number > 0, got {t!r}")
        files = {key: _inside(root, meta[key], path, where, key) for key in ("npz", "json")}
        metas.append((meta, files))
    return path, metas


def _read_npz(path) -> dict:
    try:
        with path.open("rb") as fh:
            data = np.load(fh, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise GoldenVectorError(path, "is a single .npy array, not a .npz archive")
            with data:
                return {k: np.array(data[k]) for k in data.files}
    except GoldenVectorError:
        raise
    except Exception as exc:  # a truncated or empty archive fails in many ways, all named here
        raise GoldenVectorError(path, f"cannot be read as a NumPy .npz archive ({type(exc).__name__}: {exc})") from exc


def _read_json_arrays(path, meta) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GoldenVectorError(path, f"cannot be read as JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict) or not all(isinstance(doc.get(g), dict) for g in ("inputs", "outputs")):
        raise GoldenVectorError(path, "needs the objects 'inputs' and 'outputs'")
    for key in ("format", "version", "name", "loss", "n", "d"):
        want = {"format": FORMAT, "version": VERSION}.get(key, meta.get(key))
        if doc.get(key) != want:
            raise GoldenVectorError(path, f"{key} is {doc.get(key)!r}, the manifest says {want!r}")
    arrays = {}
    for group in ("inputs", "outputs"):
        for key, value in doc[group].items():
            try:
                a = np.array(value)
            except ValueError as exc:  # ragged lists
                raise GoldenVectorError(path, f"{group}.{key} is not a rectangular array ({exc})") from exc
            if a.dtype.kind not in "fi" or (a.dtype.kind == "i" and np.any(np.abs(a) > 2**53)):
                raise GoldenVectorError(path, f"{group}.{key} holds {a.dtype} values, not numbers")
            arrays[key] = a.astype(_FLOAT64)
    return arrays


def _check_arrays(path, meta, arrays: dict) -> tuple[dict, dict]:
    """Split ``arrays`` into inputs and outputs after checking them against ``meta``."""
    input_keys, output_keys = _LOSSES[meta["loss"]]
    n, d = meta["n"], meta["d"]
    missing = [k for k in (*input_keys, *output_keys) if k not in arrays]
    if missing:
        raise GoldenVectorError(path, f"missing {'array' if len(missing) == 1 else 'arrays'} "
                                      f"{', '.join(missing)} (a {meta['loss']} case holds "
                                      f"{', '.join((*input_keys, *output_keys))})")
    extra = sorted(set(arrays) - {*input_keys, *output_keys})
    if extra:
        raise GoldenVectorError(path, f"unexpected arrays {', '.join(extra)} for a {meta['loss']} case")
    for key, a in arrays.items():
        if a.dtype != _FLOAT64:
            raise GoldenVectorError(path, f"{key} is stored as {a.dtype} ({a.dtype.str}); the format stores "
                                          "little-endian float64 only")
        want = _shape(key, n, d)
        if a.shape != want:
            raise GoldenVectorError(path, f"{key} has shape {a.shape}, the manifest's n={n}, d={d} "
                                          f"make it {want}")
        if not np.all(np.isfinite(a)):
            raise GoldenVectorError(path, f"{key} holds {int(np.sum(~np.isfinite(a)))} non-finite value(s)")
    for key in ("z1", "z2"):
        if np.any(np.all(arrays[key] == 0, axis=1)):
            raise GoldenVectorError(path, f"{key} has a zero-norm row")
    for key in ("kappa1", "kappa2", "losses"):
        if key in arrays and np.any(arrays[key] < 0):
            raise GoldenVectorError(path, f"{key} holds negative values")
    if meta["loss"] == "ntxent" and float(arrays["temperature"]) != meta["temperature"]:
        raise GoldenVectorError(path, f"temperature is {float(arrays['temperature'])!r}, the manifest says "
                                      f"{meta['temperature']!r}")
    inputs = {k: arrays[k] for k in input_keys}
    outputs = {k: arrays[k] for k in output_keys}
    return inputs, outputs


def load(directory=None, names=None) -> dict[str, GoldenCase]:
    """Read a golden set (default: the shipped one), checked against its manifest, by case name.

    Each case comes from its ``.npz`` file, or from its ``.json`` file where there is no
    ``.npz`` (a set written with ``--format json``). Every case must hold exactly the arrays
    of its loss, as little-endian float64, finite, with the shapes the manifest's ``n`` and
    ``d`` give; names must be unique and file names inside ``directory``. Anything else is a
    :class:`GoldenVectorError` that names the file and the problem. ``names`` selects cases
    (each must exist).
    """
    root = shipped_directory() if directory is None else Path(directory)
    manifest_path, metas = _read_manifest(root)
    if names is not None:
        names = list(names)
        unknown = [n for n in names if n not in {m["name"] for m, _ in metas}]
        if unknown:
            raise GoldenVectorError(manifest_path, f"no case named {', '.join(map(repr, unknown))}")
    out = {}
    for meta, files in metas:
        if names is not None and meta["name"] not in names:
            continue
        if files["npz"].is_file():
            path, arrays = files["npz"], _read_npz(files["npz"])
        elif files["json"].is_file():
            path, arrays = files["json"], _read_json_arrays(files["json"], meta)
        else:
            raise GoldenVectorError(files["npz"], f"is missing (and so is {meta['json']}), "
                                                  f"listed for case {meta['name']!r} in {manifest_path}")
        inputs, outputs = _check_arrays(path, meta, arrays)
        out[meta["name"]] = GoldenCase(meta["name"], meta["loss"], meta["n"], meta["d"],
                                       tuple(meta["regimes"]), meta["description"], inputs, outputs)
    return out


def _manifest(metas: list[dict]) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "digits": 50,
        "conventions": {
            "anchors": "2N anchors, view 1 (rows of z1) first, then view 2; the positive of anchor a is (a + N) mod 2N",
            "loss": "mean over the 2N anchors of the per-anchor losses",
            "loss_sum": "sum over the 2N anchors",
            "gradients": "of loss (the mean); the gradients of loss_sum are 2N times these",
            "pcl_logits": "F_ab = log C_d(kappa_b) + kappa_b cos(z_a, z_b), b != a",
            "ntxent_logits": "F_ab = cos(z_a, z_b) / temperature, b != a",
        },
        "cases": metas,
    }


def write(directory, *, recompute: bool = False, names=None, formats=("npz", "json"), progress=None) -> list[dict]:
    """Write the golden set (or the cases ``names``) into ``directory``; returns their metadata.

    By default the shipped values are written out; ``recompute=True`` evaluates every case
    again at 50 digits from its seed (mpmath needed).
    """
    formats = tuple(formats)
    bad = [f for f in formats if f not in ("npz", "json")]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of ('npz', 'json'), got {formats!r}")
    specs = list(CASES) if names is None else [_spec(n) for n in names]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shipped = None if recompute else load(names=[s.name for s in specs])
    metas = []
    for spec in specs:
        if recompute:
            inputs = case_inputs(spec.name)
            outputs = compute(spec.name, inputs)
        else:
            case = shipped[spec.name]
            inputs, outputs = case.inputs, case.outputs
        metas.append(_write_case(directory, spec, inputs, outputs, formats))
        if progress is not None:
            progress(spec.name)
    (directory / "manifest.json").write_text(json.dumps(_manifest(metas), indent=1) + "\n", encoding="utf-8")
    readme = shipped_directory() / "README.md"
    (directory / "README.md").write_text(readme.read_text(encoding="utf-8"), encoding="utf-8")
    return metas


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("directory", nargs="?", help="where to write the vectors (created if missing)")
    parser.add_argument("--recompute", action="store_true",
                        help="evaluate the cases again at 50 digits (needs mpmath) instead of "
                             "writing the shipped values")
    parser.add_argument("--case", action="append", dest="cases", metavar="NAME",
                        help="write only this case (repeatable)")
    parser.add_argument("--format", choices=("both", "npz", "json"), default="both",
                        help="file formats to write (default both)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")


def run(args) -> int:
    if args.list:
        for spec in CASES:
            print(f"{spec.name:<24} {spec.loss:<7} {spec.description}")
        return 0
    if not args.directory:
        print("probcon-ref vectors: a target directory is required (or --list)")
        return 2
    formats = ("npz", "json") if args.format == "both" else (args.format,)
    try:
        metas = write(args.directory, recompute=args.recompute, names=args.cases, formats=formats,
                      progress=(lambda name: print(f"  {name}", flush=True)) if args.recompute else None)
    except ValueError as exc:
        print(f"probcon-ref vectors: {exc}")
        return 2
    how = "computed at 50 digits" if args.recompute else "shipped"
    print(f"wrote {len(metas)} golden cases ({how}, format version {VERSION}) to {args.directory}")
    return 0

