"""What it computes instead: the loss under known wrong conventions, and the matching.

The failing loss values are compared with the loss evaluated, on the same inputs, under
each :class:`Variant` (diagonal not excluded, normaliser missing, log-kappa read as kappa,
...) and each wrong :class:`Reduction` (mean over N, sum for mean, ...), and their
combinations. A combination that reproduces the failing runs, and is also reproduced in a
run where it differs from the reference by more than the logits' rounding, is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...special import log_iv
from ..host import kappas, log_c, reduction_weights, stack
from ..measure import loss_error, loss_rounding
from .finding import MATCH, ROUNDING_LEVEL, Finding

__all__ = ["Variant", "VARIANTS", "VARIANT_BY_KEY", "variant_losses", "Reduction", "REDUCTIONS",
           "alternative_weights", "variant_findings"]


# ---------------------------------------------------------------------------------------
# The loss under a wrong convention
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A way of computing the per-anchor losses differently from SPEC section 3."""

    key: str
    loss: str  # "pcl", "ntxent" or "both"
    summary: str
    detail: str



def _stable_losses(f, candidates, pos):
    """``-F_ap + log sum_{b in candidates} exp(F_ab)`` per anchor, from the gaps to the positive.

    As SPEC section 4 computes it (``m + log1p(...)``), so that a variant's tiny losses keep
    their digits; the positive need not be among the candidates (a variant may drop it).
    """
    rows = np.arange(f.shape[0])
    gaps = np.where(candidates, f - f[rows, pos][:, None], -np.inf)
    has_pos = candidates[rows, pos]
    others = gaps.copy()
    others[rows, pos] = -np.inf
    m = np.max(others, axis=1)
    m = np.where(has_pos, np.maximum(m, 0.0), m)
    m = np.where(np.isfinite(m), m, 0.0)
    s = np.sum(np.exp(others - m[:, None]), axis=1)
    return m + np.where(has_pos, np.log1p(s + np.expm1(-m)), np.log(s))



def _cosines(key: str, x: dict, memo: dict):
    """The cosines, or for ``"unnormalised"`` the raw dot products (None where they are
    not finite, or where every raw norm is 1 and they are the cosines)."""
    if "stack" not in memo:
        memo["stack"] = stack(x)
    z, _, _, cos = memo["stack"]
    if key != "unnormalised":
        return cos
    with np.errstate(over="ignore", invalid="ignore"):
        dots = z @ z.T
    if not np.all(np.isfinite(dots)) or np.allclose(np.linalg.norm(z, axis=1), 1.0):
        return None
    return dots


def _pcl_logits(key: str, x: dict, d: int, cos, kappa_mode: str, memo: dict):
    """The PCL logits ``F_ab`` (all pairs) under variant ``key``; None where it is undefined."""
    k = kappas(x)
    if key == "exp-kappa":
        if np.max(k) > 600:
            return None
        k = np.exp(k)
    if key == "kappa-as-log":
        if kappa_mode != "log" or np.min(k) < 1.0:
            return None
        k = np.log(k)
    if key in ("exp-kappa", "kappa-as-log"):
        lc = log_c(d, k)
    else:
        if "log_c" not in memo:
            memo["log_c"] = log_c(d, k)
        lc = memo["log_c"]
    if key == "no-normaliser":
        return k[None, :] * cos
    if key == "normaliser-sign":
        return -lc[None, :] + k[None, :] * cos
    if key == "normaliser-order":
        if np.any(k == 0):
            return None
        nu = d / 2 - 1
        wrong = lc + np.asarray(log_iv(nu, k)) - np.asarray(log_iv(nu + 1, k))
        return wrong[None, :] + k[None, :] * cos
    if key == "anchor-kappa":
        return k[:, None] * cos
    return lc[None, :] + k[None, :] * cos


def _ntxent_logits(key: str, cos, temperature):
    """The NT-Xent logits under variant ``key``; None where it is the reference's."""
    if key == "temperature-multiplied":
        return cos * temperature
    if key.startswith("temperature="):
        t = float(key.split("=", 1)[1])
        return None if t == temperature else cos / t
    return cos / temperature


def _candidates(key: str, n: int):
    """Which ``b`` enter anchor ``a``'s denominator under variant ``key`` ((2N, 2N) booleans;
    None where it is undefined)."""
    idx = np.arange(2 * n)
    pos = (idx + n) % (2 * n)
    if key in ("self-included", "self-zero-logit"):
        return np.ones((2 * n, 2 * n), dtype=bool)
    if key == "positive-excluded":
        return None if n == 1 else (idx[:, None] != idx[None, :]) & (idx[None, :] != pos[:, None])
    if key == "cross-view-only":
        view = idx // n
        return view[:, None] != view[None, :]
    return idx[:, None] != idx[None, :]


def variant_losses(key: str, x: dict, loss: str, d: int, temperature, kappa_mode: str = "kappa",
                   memo: dict | None = None):
    """Per-anchor losses (2N,) under variant ``key``; None where it is undefined.

    ``memo`` (a dict) keeps the pieces shared by the variants of one batch.
    """
    memo = {} if memo is None else memo
    n = x["z1"].shape[0]
    cos = _cosines(key, x, memo)
    if cos is None:
        return None
    f = _pcl_logits(key, x, d, cos, kappa_mode, memo) if loss == "pcl" else _ntxent_logits(key, cos, temperature)
    candidates = _candidates(key, n)
    if f is None or candidates is None:
        return None
    f = np.array(f, dtype=np.float64)
    idx = np.arange(2 * n)
    if key == "self-zero-logit":
        f[idx, idx] = 0.0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = _stable_losses(f, candidates, (idx + n) % (2 * n))
    return out if np.all(np.isfinite(out)) else None


VARIANTS: tuple[Variant, ...] = (
    Variant("self-included", "both", "the anchor itself is a candidate (diagonal not excluded)",
            "The self-similarity c_aa = 1 is not excluded from the denominator, so every anchor "
            "also competes with itself. Exclude the diagonal by index, with -inf (SPEC section 6)."),
    Variant("self-zero-logit", "both", "the diagonal is zeroed, not excluded",
            "The diagonal logit is set to 0 (for example by multiplying with 1 - I) instead of being "
            "excluded, so exp(0) = 1 is still added to every denominator. Use -inf, by index."),
    Variant("positive-excluded", "both", "the positive is left out of the denominator",
            "The denominator holds the negatives only (the 'decoupled' form); in SPEC section 3 it "
            "sums over every b != a, positive included."),
    Variant("cross-view-only", "both", "only the other view's embeddings are candidates",
            "Each anchor is compared with the N embeddings of the other view only (CLIP / InfoNCE "
            "style); SPEC section 3 uses all 2N - 1 other views, those of its own view included."),
    Variant("unnormalised", "both", "raw dot products are used instead of cosines",
            "The embeddings are not normalised: the logits use z_a . z_b instead of the cosine."),
    Variant("no-normaliser", "pcl", "the vMF normaliser log C_d(kappa_b) is missing",
            "The logits are kappa_b c_ab without log C_d(kappa_b). The normaliser cancels only "
            "when every kappa is equal (the NT-Xent limit)."),
    Variant("normaliser-sign", "pcl", "log C_d(kappa_b) enters with the wrong sign",
            "The logits use -log C_d(kappa_b) + kappa_b c_ab; the vMF log-density is "
            "+log C_d(kappa) + kappa c."),
    Variant("normaliser-order", "pcl", "the normaliser uses I_{d/2} instead of I_{d/2-1}",
            "log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log(2 pi) - log I_{d/2-1}(kappa); the "
            "Bessel order is off by one."),
    Variant("anchor-kappa", "pcl", "the anchor's concentration is used instead of the candidate's",
            "The logits are kappa_a c_ab (a per-anchor temperature); in SPEC section 3 each candidate b "
            "carries its own log C_d(kappa_b) + kappa_b c_ab."),
    Variant("exp-kappa", "pcl", "the function takes log-kappa",
            "Its results equal the reference evaluated at exp(kappa): it reads its third and fourth "
            "arguments as log-concentrations. If that is its convention, validate with --kappa log."),
    Variant("kappa-as-log", "pcl", "the function takes kappa itself, not log-kappa",
            "Its results equal the reference at kappa = the log-kappa it was given. Validate with "
            "--kappa kappa."),
    Variant("temperature-multiplied", "ntxent", "the cosines are multiplied by the temperature",
            "The logits are c_ab * tau; NT-Xent divides by the temperature: c_ab / tau."),
) + tuple(
    Variant(f"temperature={t}", "ntxent", f"the function uses temperature {t}",
            f"Its results equal the reference at temperature {t}, not at the temperature it was "
            "given: the temperature argument is ignored or a default is used.")
    for t in (0.05, 0.07, 0.1, 0.2, 0.5, 1.0)
)

VARIANT_BY_KEY = {v.key: v for v in VARIANTS}


# ---------------------------------------------------------------------------------------
# The reduction under a wrong convention
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reduction:
    """A reduction that differs from the declared one, and its texts."""
    key: str
    summary: str
    detail: str


REDUCTIONS: dict[str, Reduction] = {
    "declared": Reduction("declared", "", ""),
    "mean-over-pairs": Reduction(
        "mean-over-pairs", "the loss is averaged over the N pairs instead of the 2N anchors (factor 2)",
        "The loss is twice the mean over the 2N anchors: it is divided by N (or the two directions "
        "are summed, not averaged). If that is the intended convention, validate with "
        "--reduction pair-mean."),
    "mean-over-anchors": Reduction(
        "mean-over-anchors", "the loss is averaged over the 2N anchors (factor 1/2)",
        "The loss is half of the declared pair mean: it is the mean over the 2N anchors "
        "(validate with --reduction mean)."),
    "sum-for-mean": Reduction(
        "sum-for-mean", "the anchors' losses are summed, not averaged (factor 2N)",
        "The loss is 2N times the mean: it is a sum (validate with --reduction sum if intended)."),
    "mean-for-sum": Reduction(
        "mean-for-sum", "the anchors' losses are averaged, not summed (factor 1/(2N))",
        "The loss is the mean over the 2N anchors (validate with --reduction mean if intended)."),
    "one-direction": Reduction(
        "one-direction", "only the anchors of view 1 are counted",
        "The loss is not symmetric in the two views: only the N anchors of z1 are counted "
        "(view 2 anchors, whose positives are in z1, are missing)."),
}



def alternative_weights(declared: str, n: int) -> dict[str, np.ndarray]:
    """Reductions a mistaken implementation may use instead of ``declared``."""
    n2 = 2 * n
    out = {"declared": reduction_weights(declared, n)}
    if declared == "mean":
        out["mean-over-pairs"] = np.full(n2, 1.0 / n)
        out["sum-for-mean"] = np.ones(n2)
        out["one-direction"] = np.where(np.arange(n2) < n, 1.0 / n, 0.0)
    elif declared == "pair-mean":
        out["mean-over-anchors"] = np.full(n2, 1.0 / n2)
        out["one-direction"] = np.where(np.arange(n2) < n, 1.0 / n, 0.0)
    elif declared == "sum":
        out["mean-for-sum"] = np.full(n2, 1.0 / n2)
        out["one-direction"] = np.where(np.arange(n2) < n, 1.0, 0.0)
    return out



# ---------------------------------------------------------------------------------------
# Matching the failing runs
# ---------------------------------------------------------------------------------------


def _reproductions(candidates: list, conv, cases: dict) -> tuple[dict, dict, set]:
    """For each (variant, reduction): the runs it reproduces, the runs where it differs
    from the reference, and whether some run resolves it (``hits``, ``defined``, ``strict``)."""
    variants = [v for v in VARIANTS if v.loss in ("both", conv.loss)]
    hits: dict[tuple, set] = {}
    defined: dict[tuple, set] = {}
    strict: set = set()
    for r in candidates:
        case = cases[r.case]
        x, ref = r._inputs, r._ref
        miss = r.errors["loss"]
        per_variant = {"reference": ref.losses}
        memo: dict = {}
        for v in variants:
            per_variant[v.key] = variant_losses(v.key, x, conv.loss, case.d, case.temperature, conv.kappa, memo)
        for vkey, losses in per_variant.items():
            if losses is None:
                continue
            for rkey, w in alternative_weights(conv.reduction, case.n).items():
                if vkey == "reference" and rkey == "declared":
                    continue
                if conv.reduction == "none" and rkey != "declared":
                    continue
                pred = losses if conv.reduction == "none" else float(np.sum(w * losses))
                same, tol = loss_error(pred, ref, conv.reduction)
                if same <= tol:
                    continue  # the variant would pass as the reference in this run
                key = (vkey, rkey)
                defined.setdefault(key, set()).add(r.run)
                e, tol = loss_error(r._got_loss, ref, conv.reduction, losses, w)
                # Reproduced to MATCH, or to the rounding of the logits (a tiny loss computed by
                # the textbook form keeps no more than that). Only a run where the variant and the
                # reference differ by more than that rounding is evidence for the variant; the
                # others can only extend a variant found elsewhere.
                resolved = loss_rounding(pred, ref, conv.reduction) > ROUNDING_LEVEL
                close = e <= min(max(MATCH[r.dtype], tol), 0.1 * miss)
                if close or loss_rounding(r._got_loss, ref, conv.reduction, pred) <= ROUNDING_LEVEL:
                    hits.setdefault(key, set()).add(r.run)
                    if resolved and close:
                        strict.add(key)
    return hits, defined, strict


def _finding(key: tuple, runs: set) -> Finding:
    """The finding of variant ``key[0]`` with reduction ``key[1]``."""
    vkey, rkey = key
    summaries, details = [], []
    if vkey != "reference":
        v = VARIANT_BY_KEY[vkey]
        summaries.append(v.summary)
        details.append(v.detail)
    if rkey != "declared":
        red = REDUCTIONS[rkey]
        summaries.append(red.summary)
        details.append(red.detail)
    signature = "+".join(k for k in (vkey, rkey) if k not in ("reference", "declared"))
    summary = "; ".join(summaries)
    return Finding(signature, summary[0].upper() + summary[1:], " ".join(details), sorted(runs))


def variant_findings(results: list, conv, cases: dict) -> tuple[list, set]:
    """Wrong conventions (loss variants x reductions) that reproduce failing loss values.

    Returns the findings (at most three, the one that explains most first) and the runs they
    explain.
    """
    candidates = [r for r in results if "loss" in r.wrong]
    if not candidates:
        return [], set()
    hits, defined, strict = _reproductions(candidates, conv, cases)
    findings = []
    explained: set = set()
    remaining = {r.run for r in candidates}
    while remaining and len(findings) < 3:
        best = max(((len(h & remaining), len(h) / len(defined[k]), k) for k, h in hits.items()
                    if k in strict and len(h) / len(defined[k]) >= 0.6), default=None)
        if best is None or best[0] == 0:
            break
        key = best[2]
        findings.append(_finding(key, hits[key]))
        explained |= hits[key]
        remaining -= hits[key]
    return findings, explained
