"""Where it fails: the regimes in which a known weakness shows, and the smallest set that
holds the failures.

Each :class:`Predicate` says, from the facts of a case (``probcon_ref.testing.host.case_facts``)
and a dtype, whether the run lies where a known mistake shows: SciPy's ``ive`` underflows or
``I_nu`` overflows (SPEC section 5), kappa = 0, identical views, and the other regimes of
SPEC section 6. :func:`cover_by_regimes` picks the predicates that together hold the
failing runs and little else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..regimes import keys
from .finding import Finding

__all__ = ["LOG_TINY", "LOG_MAX", "TINY", "Predicate", "PREDICATES", "cover_by_regimes"]

LOG_TINY = {"float64": math.log(np.finfo(np.float64).tiny), "float32": math.log(np.finfo(np.float32).tiny)}
LOG_MAX = {"float64": math.log(np.finfo(np.float64).max), "float32": math.log(np.finfo(np.float32).max)}
TINY = {"float64": float(np.finfo(np.float64).tiny), "float32": float(np.finfo(np.float32).tiny)}
# the regimes whose cases the predicates recognise by their tags
_IDENTICAL, _ANTIPODAL, _TINY_LOSS = keys("identical", "antipodal", "tiny-loss")


@dataclass(frozen=True)
class Predicate:
    """A regime where a known weakness shows: its signature, its texts, and its test."""

    key: str
    summary: str
    detail: str
    test: Callable  # (facts: dict, dtype: str) -> str | None (a short reason when true)


def _ive_underflow(f, dtype):
    """Where ``ive(nu, kappa)`` is below the smallest normal number of ``dtype``: why, or None."""
    if "min_log_ive" not in f:
        return None
    value, k = f["min_log_ive"]
    if value < LOG_TINY[dtype]:
        nu = f["d"] / 2 - 1
        return (f"ive({nu:g}, {k:.3g}) = 10^{value / math.log(10):.0f} < {TINY[dtype]:.2g}, "
                f"the smallest normal {dtype}")
    return None


def _iv_overflow(f, dtype):
    """Where ``I_nu(kappa)`` exceeds the largest number of ``dtype``: why, or None."""
    if "max_log_iv" not in f:
        return None
    value, k = f["max_log_iv"]
    if value > LOG_MAX[dtype]:
        nu = f["d"] / 2 - 1
        return f"I_{nu:g}({k:.3g}) = 10^{value / math.log(10):.0f} overflows {dtype}"
    return None



PREDICATES: tuple[Predicate, ...] = (
    Predicate(
        "bessel-underflow", "Bessel underflow: fails where ive(nu, kappa) underflows",
        "Every case in this group has a kappa > 0 at which the exponentially scaled Bessel "
        "function ive(nu, kappa) = I_nu(kappa) exp(-kappa) is below the smallest normal number of "
        "the dtype ({example}). An implementation that evaluates I_nu or ive in linear space and "
        "then takes the log, as log(scipy.special.ive(nu, kappa)) + kappa does, gets log 0 = -inf "
        "(or a denormal with few digits) in log C_d there. SPEC section 5 predicts it: large order "
        "with small kappa (float64: order 63 below kappa ~ 6e-4, order 2047 below kappa ~ 2500; "
        "float32 far earlier). Evaluate log I_nu directly in log space "
        "(probcon_ref.special.log_iv) or from a uniform asymptotic (Debye) expansion.",
        _ive_underflow),
    Predicate(
        "bessel-overflow", "Bessel overflow: fails where I_nu(kappa) overflows",
        "Every case in this group has a kappa at which the unscaled I_nu(kappa) exceeds the largest "
        "number of the dtype ({example}; float64 overflows near kappa ~ 710, float32 near 89). An "
        "implementation that calls iv (not the scaled ive) and then takes the log gets +inf. "
        "Work with log I_nu (or log ive + kappa).",
        _iv_overflow),
    Predicate(
        "kappa-zero", "kappa = 0 is not handled",
        "The cases of this group contain kappa = 0. log C_d(0) is finite, lgamma(d/2) - log 2 - (d/2) "
        "log pi, but the formula nu log(kappa) - log I_nu(kappa) evaluates there as "
        "-inf - (-inf) = NaN (0 * log 0 = NaN when d = 2), and a Bessel derivative that divides "
        "by kappa gives NaN gradients. Use the limit, or compute log C_d from the scaled "
        "quantity log I_nu(x) - nu log x, which is finite at 0 (SPEC sections 1 and 5).",
        lambda f, dt: "kappa = 0" if f.get("kappa_zero") else None),
    Predicate(
        "identical-views", "Fails only when the two views are identical",
        "These are the cases where every positive has cosine exactly 1 with its anchor. "
        "The anchor's own entry is probably excluded by value (cosine = 1, or the row maximum) "
        "rather than by position, which removes the positive as well. Exclude the diagonal by "
        "index, with -inf (SPEC section 6).",
        lambda f, dt: "identical views" if _IDENTICAL in f["tags"] else None),
    Predicate(
        "antipodal-views", "Fails only with antipodal views",
        "These are the cases where every positive has cosine exactly -1 (z2 = -z1). Look "
        "for arccos / angle computations, clamping of the cosine, or divisions by 1 + c.",
        lambda f, dt: "antipodal views" if _ANTIPODAL in f["tags"] else None),
    Predicate(
        "n1", "N = 1 is not handled",
        "With one pair the positive is the only candidate: the loss is exactly 0 and so are its "
        "gradients. An empty set of negatives must give log 1 = 0, not NaN (mean of an empty "
        "tensor) or an error.",
        lambda f, dt: "N = 1" if f["n"] == 1 else None),
    Predicate(
        "tiny-norm", "Fails only with tiny raw norms",
        "The cases of this group have embeddings of raw norm <= 1e-3 ({example}). The normalisation "
        "probably adds an absolute epsilon (z / (||z|| + eps), or a clamp of the norm at eps), "
        "or squares entries that underflow. Only directions matter: normalise with a relative "
        "guard (divide each row by its largest entry first).",
        lambda f, dt: f"min raw norm {f['min_norm']:.1e}" if f["min_norm"] <= 1e-3 else None),
    Predicate(
        "huge-norm", "Fails only with huge raw norms",
        "The cases of this group have embeddings of raw norm >= 1e3 ({example}). Squared norms "
        "overflow float32 above ~1.8e19, and raw dot products used in place of cosines "
        "grow with the norms.",
        lambda f, dt: f"max raw norm {f['max_norm']:.1e}" if f["max_norm"] >= 1e3 else None),
    Predicate(
        "tiny-loss", "Fails only where the loss is tiny (confidently matched positives)",
        "The cases of this group have per-anchor losses below 1e-8 ({example}), and the errors are "
        "larger than the rounding of the logits, so they are not only the digits that the textbook "
        "-F_ap + logsumexp(F_a.) loses there: look for a guard such as log(P + eps) or a clamp, "
        "which floors the loss and its gradient. SPEC section 4 gives the stable forms "
        "(differences to the positive, log1p; W_ap from the other P's).",
        lambda f, dt: f"min loss {f['min_loss']:.1e}" if 0 < f["min_loss"] < 1e-8 or
        (_TINY_LOSS in f["tags"]) else None),
    Predicate(
        "odd-d", "Fails only for odd dimensions (half-integer Bessel order)",
        "The cases of this group have odd d, so nu = d/2 - 1 is a half-integer. The Bessel routine is "
        "probably restricted to integer order (or the order is rounded).",
        lambda f, dt: f"d = {f['d']}" if f["d"] % 2 == 1 else None),
    Predicate(
        "d2", "Fails only for d = 2 (order 0)",
        "The cases of this group have d = 2, order nu = 0: 0 * log(kappa), I_{nu-1} with a negative "
        "order, or a recurrence started below 0.",
        lambda f, dt: "d = 2" if f["d"] == 2 else None),
    Predicate(
        "large-d", "Fails only for large dimensions",
        "The cases of this group have d >= 1024. Check the special functions at large order and any "
        "accumulation over the dimension.",
        lambda f, dt: f"d = {f['d']}" if f["d"] >= 1024 else None),
    Predicate(
        "huge-kappa", "Fails only for huge kappa",
        "The cases of this group have kappa >= 1e4 ({example}): exp(kappa) or I_nu(kappa) overflow, or "
        "logits of that size lose the digits of their differences.",
        lambda f, dt: f"max kappa {f['max_kappa']:.1e}" if (f.get("max_kappa") or 0) >= 1e4 else None),
    Predicate(
        "tiny-kappa", "Fails only for tiny kappa",
        "The cases of this group have kappa <= 1e-3 ({example}): log(kappa) and log I_nu(kappa) are "
        "both large and cancel in log C_d; use the scaled form log I_nu(x) - nu log x.",
        lambda f, dt: f"min kappa {f['min_kappa']:.1e}" if (f.get("min_kappa") or 1) <= 1e-3 else None),
    Predicate(
        "float32", "Fails only in float32",
        "The failures of this group are float32 runs: an operation loses more than single precision "
        "allows (cancellation, accumulation, or a constant that overflows float32).",
        lambda f, dt: "float32" if dt == "float32" else None),
)


def cover_by_regimes(facts_of_run: dict, failing: set, passing: set, all_failing: set | None = None,
                     skip=()) -> tuple[list[Finding], set]:
    """Regime predicates that together explain the failing runs; returns findings and the rest.

    A run is ``(case name, dtype)``. A predicate is eligible if at least half of the runs in
    its regime fail; the most precise one that covers most of what is still unexplained is
    taken first. ``all_failing`` (default ``failing``) is every failing run of the report: a
    summary says "Fails only ..." when its regime holds all of them, "Fails ..." otherwise.
    Predicates whose key is in ``skip`` are not used.
    """
    findings: list[Finding] = []
    if not failing or not passing:
        return findings, set(failing)
    all_failing = set(failing) if all_failing is None else set(all_failing)
    truth = {}
    for p in PREDICATES:
        truth[p.key] = {run: p.test(f, run[1]) for run, f in facts_of_run.items()}
    uncovered = set(failing)
    used = set(skip)
    while uncovered:
        best = None
        for order, p in enumerate(PREDICATES):
            if p.key in used:
                continue
            members = {r for r, why in truth[p.key].items() if why}
            if not members & uncovered:
                continue
            precision = len(members & failing) / len(members)
            if precision < 0.5:
                continue
            score = (precision, len(members & uncovered), -order)
            if best is None or score > best[0]:
                best = (score, p, members)
        if best is None:
            break
        _, p, members = best
        used.add(p.key)
        hit = sorted(members & failing)
        example_run = next((r for r in hit if r[1] == "float64"), hit[0])
        detail = p.detail.replace("{example}", f"{example_run[0]} ({example_run[1]}): "
                                  f"{truth[p.key][example_run]}")
        # counted over every failing run of the report, some of which other findings explain
        failed = members & all_failing
        summary = p.summary if all_failing <= members else p.summary.replace("Fails only ", "Fails ")
        if failed != members:
            summary += f" ({len(failed)} of {len(members)} runs in this regime fail)"
        else:
            summary += f" (all {len(members)} runs in this regime fail)"
        findings.append(Finding(p.key, summary, detail, hit))
        uncovered -= members
    return findings, uncovered
