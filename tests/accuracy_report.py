"""Collects the measured worst errors of the accuracy tests and prints them at the end of the run.

Each accuracy test calls :func:`record`; ``tests/conftest.py`` prints :func:`summary` in the
terminal summary and writes it to ``artifacts/accuracy.json`` (git-ignored), so every run
shows the figures the contract bounds are checked against, not only pass/fail.
"""

from __future__ import annotations

import json
import os

_RESULTS: dict[tuple[str, str], tuple[float, float, str]] = {}


def record(quantity: str, dtype: str, worst: float, bound: float, where: str = "") -> None:
    """Keep the worst error seen for ``(quantity, dtype)`` and the bound it is held to."""
    key = (quantity, dtype)
    if key not in _RESULTS or worst > _RESULTS[key][0]:
        _RESULTS[key] = (float(worst), float(bound), where)


def summary() -> list[str]:
    if not _RESULTS:
        return []
    lines = [f"{'quantity':<44} {'dtype':<8} {'worst error':>12} {'bound':>9}  where"]
    for (quantity, dtype), (worst, bound, where) in sorted(_RESULTS.items()):
        lines.append(f"{quantity:<44} {dtype:<8} {worst:12.2e} {bound:9.0e}  {where}")
    return lines


def write(path: str = "artifacts/accuracy.json") -> None:
    if not _RESULTS:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump([{"quantity": q, "dtype": d, "worst": w, "bound": b, "where": where}
                   for (q, d), (w, b, where) in sorted(_RESULTS.items())], f, indent=1)
