"""The statistics of ``probcon-ref experiment``, in NumPy alone (no SciPy needed)."""

from __future__ import annotations

import math

import numpy as np


def rankdata(a) -> np.ndarray:
    """Ranks from 1, ties given the average of the ranks they span."""
    a = np.asarray(a, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    return ((end - counts + 1 + end) / 2.0)[inverse]


def spearman(x, y) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks (NaN if one is constant)."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(np.sum(rx * rx)) * float(np.sum(ry * ry)))
    return float(np.sum(rx * ry) / denom) if denom > 0 else float("nan")


def quantiles(a) -> dict:
    """Mean, quartiles and median of ``a``, as plain floats."""
    q = np.quantile(a, [0.25, 0.5, 0.75])
    return {"mean": float(np.mean(a)), "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2])}


def finite_or_null(obj):
    """The summary as strict JSON: NaN or infinity (a constant kappa, say) becomes null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj
