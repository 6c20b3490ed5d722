"""Writing a golden set: :func:`write`, the shipped values or the cases computed again.

Each case is written as ``NAME.npz`` and ``NAME.json``, then the manifest and the README
(copied from the shipped set). The JSON text is laid out one key per line and one matrix
row per line, so that a set written again compares equal as text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .cases import CASES, CaseSpec, case_inputs, case_spec, compute
from .fileformat import FORMAT, VERSION, shipped_directory
from .reading import load

__all__ = ["write"]


def _meta(spec: CaseSpec, inputs: dict) -> dict:
    """The manifest's entry of a case."""
    n, d = inputs["z1"].shape
    meta = {"name": spec.name, "loss": spec.loss, "n": int(n), "d": int(d)}
    if "extra_z" in inputs:  # a case without extra candidates has no m
        meta["m"] = int(inputs["extra_z"].shape[0])
    meta.update({"regimes": list(spec.regimes), "description": spec.description,
                 "reduction": "mean", "npz": f"{spec.name}.npz", "json": f"{spec.name}.json"})
    if spec.loss == "ntxent":
        meta["temperature"] = float(inputs["temperature"])
    return meta


def _json_value(a: np.ndarray):
    """Nested lists of Python floats; ``repr`` of a float64 reads back to the same float64."""
    if not np.all(np.isfinite(a)):
        raise ValueError("golden vectors hold finite numbers only")
    return a.tolist() if a.ndim else float(a)


def _write_case(directory: Path, spec: CaseSpec, inputs: dict, outputs: dict, formats) -> dict:
    """Write one case in ``formats``; returns its manifest entry."""
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



def _manifest(metas: list[dict]) -> dict:
    """The manifest of a set whose cases have the entries ``metas``."""
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
            "extra_candidates": "a case with m holds m extra candidates, extra_z (and extra_kappa for the PCL), "
                                "which are not anchors: they join every anchor's denominator with the logits "
                                "above, z_b and kappa_b being extra_z[j] and extra_kappa[j] for b = 2N + j; the "
                                "positive stays in the batch, and no gradient with respect to them is stored",
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
    specs = list(CASES) if names is None else [case_spec(n) for n in names]
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

