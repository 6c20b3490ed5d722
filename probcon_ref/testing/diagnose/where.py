"""Where it fails: the regimes in which a known weakness shows, and the smallest set that
holds the failures.

Each :class:`Predicate` says, from the facts of a case (``probcon_ref.testing.host.case_facts``)
and a dtype, whether the run lies where a known mistake shows: SciPy's ``ive`` underflows or
``I_nu`` overflows (the contract, section :ref:`5 <contract-special>`), kappa = 0, identical views, and the other regimes of
the contract, section :ref:`6 <contract-accuracy>`. :func:`cover_by_regimes` picks the predicates that together hold the
failing runs and little else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Callable

import numpy as np

from ..regimes import keys
from .finding import Finding

__all__ = ["LOG_TINY", "LOG_MAX", "LOG_SUBNORMAL", "TINY", "Predicate", "PREDICATES", "cover_by_regimes"]

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



#: log of the smallest positive (subnormal) number of each dtype: exp below it is 0.
LOG_SUBNORMAL = {dt: math.log(float(np.finfo(dt).smallest_subnormal)) for dt in ("float64", "float32")}


def _exp_overflow(f, dtype):
    """Where exp of a logit, the anchor's own included, overflows ``dtype``: why, or None."""
    if "max_logit" not in f:
        return None
    top = max(f["max_logit"], f["max_self_logit"])
    if top > LOG_MAX[dtype]:
        whose = "the anchor's own, F_aa" if f["max_self_logit"] >= f["max_logit"] else "a candidate's"
        return f"largest logit {top:.4g} ({whose}) > {LOG_MAX[dtype]:.4g}"
    return None


def _exp_underflow(f, dtype):
    """Where exp of every candidate's logit of some anchor underflows ``dtype``: why, or None."""
    if "min_top_logit" not in f or f["n"] < 1:
        return None
    if f["min_top_logit"] < LOG_SUBNORMAL[dtype]:
        return f"an anchor's largest candidate logit is {f['min_top_logit']:.4g} < {LOG_SUBNORMAL[dtype]:.4g}"
    return None


PREDICATES: tuple[Predicate, ...] = (
    Predicate(
        "bessel-underflow", "Bessel underflow: fails where ive(nu, kappa) underflows",
        "Every case in this group has a kappa > 0 at which the exponentially scaled Bessel "
        "function ive(nu, kappa) = I_nu(kappa) exp(-kappa) is below the smallest normal number of "
        "the dtype ({example}). An implementation that evaluates I_nu or ive in linear space and "
        "then takes the log, as log(scipy.special.ive(nu, kappa)) + kappa does, gets log 0 = -inf "
        "(or a denormal with few digits) in log C_d there. The contract page, section 5 predicts it: large order "
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
        "quantity log I_nu(x) - nu log x, which is finite at 0 (the contract page, sections 1 and 5).",
        lambda f, dt: "kappa = 0" if f.get("kappa_zero") else None),
    Predicate(
        "identical-views", "Fails only when the two views are identical",
        "These are the cases where every positive has cosine exactly 1 with its anchor. "
        "The anchor's own entry is probably excluded by value (cosine = 1, or the row maximum) "
        "rather than by position, which removes the positive as well. Exclude the diagonal by "
        "index, with -inf (the contract page, section 6).",
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
        lambda f, dt: "N = 1" if f["n"] == 1 and not f.get("m") else None),
    Predicate(
        "n1-extra", "N = 1 with extra candidates is not handled",
        "With one pair and extra candidates, the extra candidates are the only negatives: the loss is "
        "log(1 + sum_j exp(F_aj - F_ap)), not 0, and its gradients are not 0 either. A shortcut that returns "
        "0 for N = 1, or negatives taken from the batch alone (empty, so NaN from a mean or an empty "
        "reduction), drops them (the contract page, section 3).",
        lambda f, dt: "N = 1 with extra candidates" if f["n"] == 1 and f.get("m") else None),
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
        "which floors the loss and its gradient. The contract page, section 4 gives the stable forms "
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
        "exp-overflow", "Fails only where exp of a logit overflows (exp taken without subtracting the "
        "row's maximum)",
        "Every case in this group has a logit F_ab above the log of the largest number of the dtype "
        f"({LOG_MAX['float32']:.1f} in float32, {LOG_MAX['float64']:.1f} in float64; {{example}}), counting the anchor's own F_aa, which an "
        "implementation that masks the diagonal after exp also exponentiates. exp of it is infinite, and "
        "inf / inf, or inf times a mask's 0, is NaN. Subtract each row's maximum before exp (as "
        "logsumexp does), or compute the loss from the differences to the positive's logit "
        "(the contract page, section 4).",
        _exp_overflow),
    Predicate(
        "exp-underflow", "Fails only where exp of every candidate's logit of an anchor underflows "
        "(exp taken without subtracting the row's maximum)",
        "Every case in this group has an anchor all of whose candidates' logits are below the log of the "
        f"smallest positive number of the dtype ({LOG_SUBNORMAL['float32']:.1f} in float32, "
        f"{LOG_SUBNORMAL['float64']:.1f} in float64; {{example}}): exp "
        "of each is 0, and the softmax is 0 / 0. Subtract each row's maximum before exp (the contract page, section 4).",
        _exp_underflow),
    Predicate(
        "float32", "Fails only in float32",
        "The failures of this group are float32 runs: an operation loses more than single precision "
        "allows (cancellation, accumulation, or a constant that overflows float32).",
        lambda f, dt: "float32" if dt == "float32" else None),
)


def _allowed(members: int) -> int:
    """How many runs of a regime may pass while it is still said to fail there: one in ten."""
    return members // 10


def _covers(truth: dict, failing: set, passing: set, skip) -> list:
    """The sets of at most three regimes that hold every run of ``failing``, each regime
    failing in all its runs but :func:`_allowed` of them, best first: fewest regimes, then
    fewest runs that pass in them, then the fewest runs in all."""
    eligible = []
    for order, p in enumerate(PREDICATES):
        members = {r for r, why in truth[p.key].items() if why}
        if p.key in skip or not members & failing or len(members & passing) > _allowed(len(members)):
            continue
        eligible.append((order, p, members))
    found = []
    for size in (1, 2, 3):
        for combo in combinations(eligible, size):
            union = set().union(*(m for _, _, m in combo))
            if failing <= union:
                passes = sum(len(m & passing) for _, _, m in combo)
                found.append(((size, passes, len(union), [o for o, _, _ in combo]), combo))
        if found:
            break
    return [combo for _, combo in sorted(found, key=lambda item: item[0])]


def _regime_finding(p, members: set, truth: dict, all_failing: set, passing: set, tried: set,
                    others: list) -> Finding:
    """The finding of regime ``p``: its summary says "only" when it holds every failing run of
    the report; the counts, the exceptions and what lies outside it are measured."""
    hit = sorted(members & all_failing)
    example_run = next((r for r in hit if r[1] == "float64"), hit[0])
    detail = p.detail.replace("{example}", f"{example_run[0]} ({example_run[1]}): {truth[p.key][example_run]}")
    summary = p.summary if all_failing <= members else p.summary.replace("Fails only ", "Fails ")
    failed, exceptions = members & all_failing, sorted(members & passing)
    if exceptions:
        summary += f" ({len(failed)} of {len(members)} runs in this regime fail)"
        detail += (" In this regime " + ", ".join(f"{c} ({dt})" for c, dt in exceptions)
                   + (" passes." if len(exceptions) == 1 else " pass."))
    elif len(members) == 1:
        summary += " (the one run in this regime fails)"
    else:
        summary += f" (all {len(members)} runs in this regime fail)"
    union = members.union(*(m for _, m in others))
    outside = (tried - union) & all_failing
    scope = "it" if not others else "it and " + ", ".join(key for key, _ in others)
    if others:
        detail += (f" Together with {', '.join(key for key, _ in others)}, this regime holds every failing run "
                   "that no other finding explains.")
    if outside:
        detail += f" The {len(outside)} failing runs outside {scope} are explained by the other findings."
    else:
        detail += f" Every run outside {scope} passes."
    return Finding(p.key, summary, detail, hit)


def cover_by_regimes(facts_of_run: dict, failing: set, passing: set, all_failing: set | None = None,
                     skip=()) -> tuple[list[Finding], set]:
    """The regimes that hold the failing runs ``failing``, or none; returns findings and the rest.

    A run is ``(case name, dtype)``. A regime explanation is a claim, so it is made only when
    it is true of the runs: at most three regimes whose union holds every run of ``failing``,
    each failing in all its runs but one in ten (the summary gives the counts, the detail
    names the exceptions). A summary says "Fails only ..." when its regime holds every
    failing run of the report (``all_failing``, default ``failing``, some of which other
    findings explain), "Fails ..." otherwise. When no such set exists, nothing is claimed
    and every run of ``failing`` is returned as the rest. Predicates whose key is in ``skip``
    are not used.
    """
    if not failing or not passing:
        return [], set(failing)
    all_failing = set(failing) if all_failing is None else set(all_failing)
    truth = {p.key: {run: p.test(f, run[1]) for run, f in facts_of_run.items()} for p in PREDICATES}
    covers = _covers(truth, set(failing), set(passing), set(skip))
    if not covers:
        return [], set(failing)
    combo = covers[0]
    tried = set(facts_of_run)
    findings = []
    for _, p, members in combo:
        others = [(q.key, m) for _, q, m in combo if q is not p]
        findings.append(_regime_finding(p, members, truth, all_failing, set(passing), tried, others))
    return findings, set()
