"""Validate the peers page's recipes and write what ``validate`` said to ``recipes_results.json``.

    python tests/peers/measure_recipes.py

Each adapter of ``recipes.py`` is validated as ``probcon-ref validate recipes.py:NAME --loss
ntxent --framework torch`` would; a peer whose package cannot be imported is recorded with the
error. The file also records the versions and a hash of the adapters, which the tests compare
with the files as they are (a changed adapter needs this script run again), and, for
pytorch-metric-learning's SupConLoss, how its default reducer treats per-anchor losses of 0.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "recipes_results.json"
#: recipe -> the distribution it needs
PACKAGES = {"pml_ntxent": "pytorch-metric-learning", "pml_supcon": "pytorch-metric-learning",
            "pml_supcon_mean": "pytorch-metric-learning",
            "lightly_ntxent": "lightly", "supcon_as_trained": None, "supcon_unscaled": None}
SOURCES = ("recipes.py", "supcon_style.py")


def sources_hash() -> str:
    """sha256 of the adapters and the SupCon stand-in, as the results were measured on."""
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((HERE / name).read_bytes())
    return h.hexdigest()


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def measure(name: str) -> dict:
    from probcon_ref.testing import load_callable, validate

    dist = PACKAGES[name]
    entry = {"recipe": name, "package": dist, "version": _version(dist) if dist else None}
    fn = load_callable(f"{HERE / 'recipes.py'}:{name}")
    import torch

    try:
        fn(torch.ones(2, 3), torch.ones(2, 3), 0.5)
    except ImportError as exc:
        entry["import_error"] = f"{type(exc).__name__}: {exc}"
        return entry
    start = time.perf_counter()
    report = validate(fn, loss="ntxent", framework="torch", target=f"recipes.py:{name}")
    entry["seconds"] = round(time.perf_counter() - start, 1)
    doc = report.to_dict()
    entry.update({k: doc[k] for k in ("counts", "worst", "what_fails", "passed")})
    entry["diagnoses"] = [{"signature": f.signature, "summary": f.summary,
                           "runs": sorted(f"{c} ({dt})" for c, dt in f.runs)} for f in report.findings]
    entry["failing"] = sorted(f"{r.case} ({r.dtype})" for r in report.results if r.status in ("fail", "error"))
    return entry


def supcon_reducer_facts() -> dict:
    """pytorch-metric-learning's SupConLoss on the ``small-tau`` case in float64: how many of
    the 2N per-anchor losses are exactly 0, and whether its default (AvgNonZeroReducer) result
    is the mean over the others."""
    import torch
    from pytorch_metric_learning.losses import SupConLoss
    from pytorch_metric_learning.reducers import DoNothingReducer

    from probcon_ref.testing import battery

    case = {c.name: c for c in battery("ntxent")}["small-tau"]
    z = torch.cat([torch.tensor(case.inputs["z1"]), torch.tensor(case.inputs["z2"])])
    labels = torch.arange(case.n).repeat(2)
    per = SupConLoss(temperature=case.temperature, reducer=DoNothingReducer())(z, labels)["loss"]["losses"]
    reduced = SupConLoss(temperature=case.temperature)(z, labels)
    nonzero = per[per != 0]
    return {"case": "small-tau", "anchors": int(per.numel()), "zero": int((per == 0).sum()),
            "reduced_is_mean_of_nonzero": bool(torch.isclose(reduced, nonzero.mean(), rtol=1e-15, atol=0)),
            "reduced": float(reduced), "mean_of_nonzero": float(nonzero.mean())}


def main() -> int:
    sys.path.insert(0, str(HERE))
    import probcon_ref

    results = {"sources_sha256": sources_hash(), "python": platform.python_version(),
               "torch": _version("torch"), "probcon_ref": probcon_ref.__version__,
               "recipes": [measure(name) for name in PACKAGES]}
    if _version("pytorch-metric-learning"):
        results["pml_supcon_reducer"] = supcon_reducer_facts()
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
