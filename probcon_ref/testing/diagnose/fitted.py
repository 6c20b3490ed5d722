"""A temperature where there should be none: variants with a free scalar, solved for.

A PCL whose logits are divided by a temperature on top of kappa (the whole logit, the
cosine's term, or kappa itself: :data:`~probcon_ref.testing.diagnose.logits.SCALED`), or an
NT-Xent that uses a temperature of its own whatever it is given, differs from the
reference by a scalar ``s`` nobody told the validator. It is solved for on one failing
float64 run (the root of ``loss(s) - got`` on a grid of ``s`` from 1e-3 to 1e3, refined by
bisection), and a root is reported only when the same ``s`` reproduces the other failing
runs too (to 1e-9 in float64 and 1e-4 in float32, or each run's tolerance if larger).
"""

from __future__ import annotations

import math

import numpy as np

from ..measure import loss_error, loss_rounding
from .finding import MATCH, ROUNDING_LEVEL, Finding
from .logits import SCALED, scaled_losses, stable_losses

__all__ = ["fitted_findings", "losses_at_scale"]

_GRID = np.logspace(-3, 3, 121)


def _ntxent_losses(s: float, x: dict, memo: dict):
    """NT-Xent per-anchor losses with logits ``s c_ab`` (a temperature ``1/s`` of its own), the
    extra candidates, if any, among the candidates."""
    from ..host import stack

    if "stack" not in memo:
        memo["stack"] = stack(x)
    cos = memo["stack"][3]
    n2 = cos.shape[0]
    idx = np.arange(n2)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = stable_losses(s * cos, idx[:, None] != np.arange(cos.shape[1])[None, :], (idx + n2 // 2) % n2)
    return out if np.all(np.isfinite(out)) else None


def losses_at_scale(key: str, s: float, x: dict, d: int, memo: dict | None = None, temperature=None):
    """Per-anchor losses on inputs ``x`` under the scaled variant ``key`` at ``s`` (NT-Xent:
    logits ``s c`` for "temperature=T", ``s c / temperature`` for "temperature-scaled")."""
    memo = {} if memo is None else memo
    if key == "temperature=T":
        return _ntxent_losses(s, x, memo)
    if key == "temperature-scaled":
        return _ntxent_losses(s / temperature, x, memo)
    return scaled_losses(key, s, x, d, memo)


def _losses(key: str, s: float, r, case, memo: dict):
    """Per-anchor losses of run ``r`` under the scaled variant ``key`` at ``s``."""
    return losses_at_scale(key, s, r._inputs, case.d, memo, case.temperature)


def _residual(key, s, r, case, weights, memo):
    """``loss(s) - got`` of the reduced loss (summed per anchor for "none")."""
    losses = _losses(key, s, r, case, memo)
    if losses is None:
        return math.nan
    return float(np.sum(weights * losses) - np.sum(weights * np.asarray(r._got_loss, dtype=np.float64)))


def _roots(key: str, r, case, conv) -> list[float]:
    """The ``s`` in [1e-3, 1e3] at which the variant's loss equals the run's."""
    weights = r._ref.weights if conv.reduction != "none" else np.ones(2 * case.n)
    memo: dict = {}
    values = [_residual(key, s, r, case, weights, memo) for s in _GRID]
    roots = []
    for i in range(len(_GRID) - 1):
        a, b, fa, fb = _GRID[i], _GRID[i + 1], values[i], values[i + 1]
        if not (math.isfinite(fa) and math.isfinite(fb)) or fa * fb > 0:
            continue
        for _ in range(60):
            mid = math.sqrt(a * b)
            fm = _residual(key, mid, r, case, weights, memo)
            if not math.isfinite(fm):
                break
            a, fa, b, fb = (a, fa, mid, fm) if fa * fm <= 0 else (mid, fm, b, fb)
        roots.append(math.sqrt(a * b))
    return roots


def _hits(key: str, s: float, runs: list, conv, cases: dict) -> set:
    """The runs whose loss the variant at ``s`` reproduces."""
    hit = set()
    for r in runs:
        case = cases[r.case]
        losses = _losses(key, s, r, case, {})
        if losses is None:
            continue
        weights = r._ref.weights
        err, tol = loss_error(r._got_loss, r._ref, conv.reduction, losses, weights)
        if err <= max(MATCH[r.dtype], tol):
            hit.add(r.run)
    return hit


def _nice(value: float) -> float:
    """``value`` rounded to 6 significant digits (a fitted temperature read back)."""
    return float(f"{value:.6g}")


def _finding(key: str, s: float, hit: set, tried: int, conv) -> Finding:
    """The finding of the scaled variant ``key`` at ``s``."""
    tau = _nice(1.0 / s)
    agree = f"With tau = {tau:g} it reproduces the loss in {len(hit)} of the {tried} runs whose loss fails."
    if key == "temperature-scaled":
        factor = _nice(1.0 / s)
        return Finding(key, f"The function uses {factor:g} times the temperature it is given",
                       f"Its results equal the reference at temperature {factor:g} tau, for the tau of each case: "
                       f"the temperature is scaled before it divides the cosines. With that factor it reproduces "
                       f"the loss in {len(hit)} of the {tried} runs whose loss fails.", sorted(hit),
                       ("fitted", key, s))
    if key == "temperature=T":
        return Finding(f"temperature={tau:g}", f"The function uses temperature {tau:g}",
                       f"Its results equal the reference at temperature {tau:g}, not at the temperature it "
                       f"was given: the temperature argument is ignored or a default is used. {agree}",
                       sorted(hit), ("fitted", key, s))
    return Finding(key, f"A temperature {tau:g} is applied on top of kappa: the logits are "
                   f"{SCALED[key].replace('tau', f'{tau:g}')}",
                   "In the PCL, kappa already carries the temperature (kappa_b = 1/(tau sigma_b^2), the contract "
                   "page, section 2), and the logits are log C_d(kappa_b) + kappa_b c_ab with no other scale. These "
                   f"results are those of {SCALED[key]}. {agree}", sorted(hit), ("fitted", key, s))


def fitted_findings(results: list, conv, cases: dict, explained: set) -> tuple[list, set]:
    """A temperature applied where the convention has none, solved for on a failing run.

    Returns the findings (at most one) and the runs they explain.
    """
    runs = [r for r in results if "loss" in r.wrong and r.run not in explained and not r.nonfinite]
    # a probe whose loss is not tiny next to its logits: a tiny loss is matched by any variant
    # that makes it tinier still (the textbook form's 0 included)
    probes = [r for r in runs if r.dtype == "float64" and r.n > 1
              and loss_rounding(r._ref.loss, r._ref, conv.reduction, 0.0 * np.asarray(r._ref.loss)) > ROUNDING_LEVEL]
    if not probes:
        return [], set()
    probe = min(probes, key=lambda r: (r.n * r.d > 4096, "random" not in r.tags))
    keys = list(SCALED) if conv.loss == "pcl" else (["temperature=T", "temperature-scaled"]
                                                     if conv.temperature is None else [])
    best = None
    for key in keys:
        for s in _roots(key, probe, cases[probe.case], conv):
            hit = _hits(key, s, runs, conv, cases)
            if probe.run in hit and (best is None or len(hit) > len(best[2])):
                best = (key, s, hit)
    if best is None or len(best[2]) < max(2, 0.6 * len(runs)):
        return [], set()
    key, s, hit = best
    return [_finding(key, s, hit, len(runs), conv)], hit
