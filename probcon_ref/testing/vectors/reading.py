"""Reading a golden set back: :func:`load`, which checks every file against the manifest.

Anything that does not fit the format raises
:class:`~probcon_ref.testing.vectors.fileformat.GoldenVectorError`, naming the file and the
problem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from .fileformat import (EXTRA_INPUTS, FLOAT64, FORMAT, LOSSES, VERSION, GoldenCase, GoldenVectorError,
                         shape_of, shipped_directory)

__all__ = ["load"]

def _is_int(v) -> bool:
    """An ``int`` that is not a ``bool``."""
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



def _check_meta(path, i: int, meta, seen: set) -> str:
    """Check entry ``i`` of the manifest at ``path`` (``seen``: the names so far); returns
    how the messages name it."""
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
    if meta["loss"] not in LOSSES:
        raise GoldenVectorError(path, f"{where}: unknown loss {meta['loss']!r} (known: {', '.join(LOSSES)})")
    if not (_is_int(meta["n"]) and meta["n"] >= 1 and _is_int(meta["d"]) and meta["d"] >= 2):
        raise GoldenVectorError(path, f"{where}: n must be an integer >= 1 and d >= 2, "
                                      f"got n={meta['n']!r}, d={meta['d']!r}")
    if not (isinstance(meta["regimes"], list) and all(isinstance(r, str) for r in meta["regimes"])):
        raise GoldenVectorError(path, f"{where}: regimes must be a list of strings")
    if not isinstance(meta["description"], str):
        raise GoldenVectorError(path, f"{where}: description must be a string")
    if "m" in meta and not (_is_int(meta["m"]) and meta["m"] >= 1):
        raise GoldenVectorError(path, f"{where}: m (the extra candidates' count) must be an integer >= 1, "
                                      f"got m={meta['m']!r}")
    if meta["loss"] == "ntxent":
        t = meta.get("temperature")
        if not (isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t > 0):
            raise GoldenVectorError(path, f"{where}: temperature must be a number > 0, got {t!r}")
    return where


def _read_manifest(root):
    """The manifest of the set in ``root``, checked, with each case's two files."""
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
        where = _check_meta(path, i, meta, seen)
        files = {key: _inside(root, meta[key], path, where, key) for key in ("npz", "json")}
        metas.append((meta, files))
    return path, metas



def _read_npz(path) -> dict:
    """The arrays of a ``.npz`` archive, read without pickles."""
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
    """The arrays of a ``NAME.json`` file, checked against the manifest's entry."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GoldenVectorError(path, f"cannot be read as JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(doc, dict) or not all(isinstance(doc.get(g), dict) for g in ("inputs", "outputs")):
        raise GoldenVectorError(path, "needs the objects 'inputs' and 'outputs'")
    for key in ("format", "version", "name", "loss", "n", "d", "m"):
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
            arrays[key] = a.astype(FLOAT64)
    return arrays


def _check_arrays(path, meta, arrays: dict) -> tuple[dict, dict]:
    """Split ``arrays`` into inputs and outputs after checking them against ``meta``."""
    input_keys, output_keys = LOSSES[meta["loss"]]
    n, d, m = meta["n"], meta["d"], meta.get("m", 0)
    kind = f"a {meta['loss']} case" + (f" with m={m} extra candidates" if m else "")
    if m:
        input_keys = input_keys + EXTRA_INPUTS[meta["loss"]]
    missing = [k for k in (*input_keys, *output_keys) if k not in arrays]
    if missing:
        raise GoldenVectorError(path, f"missing {'array' if len(missing) == 1 else 'arrays'} "
                                      f"{', '.join(missing)} ({kind} holds "
                                      f"{', '.join((*input_keys, *output_keys))})")
    extra = sorted(set(arrays) - {*input_keys, *output_keys})
    if extra:
        bank = not m and set(extra) & {"extra_z", "extra_kappa"}
        hint = " (the manifest gives it no m: no extra candidates)" if bank else ""
        raise GoldenVectorError(path, f"unexpected arrays {', '.join(extra)} for {kind}{hint}")
    for key, a in arrays.items():
        if a.dtype != FLOAT64:
            raise GoldenVectorError(path, f"{key} is stored as {a.dtype} ({a.dtype.str}); the format stores "
                                          "little-endian float64 only")
        want = shape_of(key, n, d, m)
        if a.shape != want:
            raise GoldenVectorError(path, f"{key} has shape {a.shape}, the manifest's n={n}, d={d}"
                                          + (f", m={m}" if m else "") + f" make it {want}")
        if not np.all(np.isfinite(a)):
            raise GoldenVectorError(path, f"{key} holds {int(np.sum(~np.isfinite(a)))} non-finite value(s)")
    for key in ("z1", "z2", "extra_z"):
        if key in arrays and np.any(np.all(arrays[key] == 0, axis=1)):
            raise GoldenVectorError(path, f"{key} has a zero-norm row")
    for key in ("kappa1", "kappa2", "extra_kappa", "losses"):
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
    of its loss (with ``extra_z`` and, for the PCL, ``extra_kappa`` where the manifest gives
    it ``m`` extra candidates, and without them where it does not), as little-endian
    float64, finite, with the shapes the manifest's ``n``, ``d`` and ``m`` give; names must
    be unique and file names inside ``directory``. Anything else is a
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

