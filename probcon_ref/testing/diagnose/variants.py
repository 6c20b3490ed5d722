"""What it computes instead: the loss under known wrong conventions, and the matching.

The failing loss values are compared with the loss evaluated, on the same inputs, under
each :class:`Variant` (diagonal not excluded, normaliser missing or of another dimension,
the anchor's concentration in place of the candidate's, log-kappa read as kappa, ...; with
extra candidates also those that mistreat the extra candidates alone; the logits of each
are in ``logits``) and each wrong :class:`Reduction` (mean over N, sum for
mean, ...), and their combinations. A combination that reproduces the failing runs, and is
also reproduced in a run where it differs from the reference by more than the logits'
rounding, is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..host import reduction_weights
from ..measure import loss_error, loss_rounding
from .finding import MATCH, ROUNDING_LEVEL, Finding
from .logits import NORMALISER_SHIFTS, shift_text, variant_losses

__all__ = ["Variant", "VARIANTS", "VARIANT_BY_KEY", "variant_losses", "Reduction", "REDUCTIONS",
           "alternative_weights", "variant_findings"]


@dataclass(frozen=True)
class Variant:
    """A way of computing the per-anchor losses differently from the contract, section :ref:`3 <contract-loss>`."""

    key: str
    loss: str  # "pcl", "ntxent" or "both"
    summary: str
    detail: str


#: nu + shift in terms of d, for the texts of the normaliser's variants.
_NU_OF_D = {1.0: "d/2", 0.5: "(d - 1)/2", -0.5: "(d - 3)/2", -1.0: "d/2 - 2"}
_NORMALISER_FORM = ("log C_d(kappa) = nu log(kappa) - (d/2) log(2 pi) - log I_nu(kappa) with nu = d/2 - 1 "
                    "(the contract page, section 1). ")


def _normaliser_variant(key: str) -> Variant:
    """The texts of one of the normaliser's dimension, power or order variants."""
    dp, do = NORMALISER_SHIFTS[key]
    if dp == do:
        dim = f"d {'+' if dp > 0 else '-'} {abs(int(round(2 * dp)))}"
        summary = (f"the normaliser is that of dimension {dim}: the power of kappa and the Bessel order are "
                   f"both nu {shift_text(dp)} = {_NU_OF_D[dp]}, not d/2 - 1")
        detail = (_NORMALISER_FORM + f"These results are those of log C_{{{dim}}} (nu = {_NU_OF_D[dp]} in both "
                  "places); its constant -(d/2) log(2 pi) is the same for every candidate and cancels, so "
                  "whether it changed too cannot be told.")
        if dp == -0.5:
            detail += " The sphere's own dimension d - 1 is probably taken for the ambient space's d."
    elif dp:
        summary = (f"the power of kappa in the normaliser is nu {shift_text(dp)} = {_NU_OF_D[dp]}, "
                   "not nu = d/2 - 1 (the Bessel order is right)")
        detail = _NORMALISER_FORM + f"These results have {_NU_OF_D[dp]} log(kappa) with I_{{d/2-1}}(kappa)."
    else:
        summary = (f"the normaliser uses I_{{{_NU_OF_D[do]}}} instead of I_{{d/2-1}} (the Bessel order is "
                   f"nu {shift_text(do)}; the power of kappa is right)")
        detail = _NORMALISER_FORM + f"These results have (d/2 - 1) log(kappa) with I_{{{_NU_OF_D[do]}}}(kappa)."
    return Variant(key, "pcl", summary, detail)


_CANCELS = ("the anchor's normaliser log C_d(kappa_a) is the same for every candidate of anchor a and "
            "cancels in its softmax, so with it or without it the loss is the same")

VARIANTS: tuple[Variant, ...] = (
    Variant("self-included", "both", "the anchor itself is a candidate (diagonal not excluded)",
            "The self-similarity c_aa = 1 is not excluded from the denominator, so every anchor "
            "also competes with itself. Exclude the diagonal by index, with -inf (the contract page, section 6)."),
    Variant("self-zero-logit", "both", "the diagonal is zeroed, not excluded",
            "The diagonal logit is set to 0 (for example by multiplying with 1 - I) instead of being "
            "excluded, so exp(0) = 1 is still added to every denominator. Use -inf, by index."),
    Variant("positive-excluded", "both", "the positive is left out of the denominator",
            "The denominator holds the negatives only (the 'decoupled' form); in the contract page, section 3 it "
            "sums over every b != a, positive included."),
    Variant("cross-view-only", "both", "only the other view's embeddings are candidates",
            "Each anchor is compared with the N embeddings of the other view only (CLIP / InfoNCE "
            "style); the contract page, section 3 uses all 2N - 1 other views, those of its own view included."),
    Variant("unnormalised", "both", "raw dot products are used instead of cosines",
            "The embeddings are not normalised: the logits use z_a . z_b instead of the cosine."),
    Variant("no-normaliser", "pcl", "the vMF normaliser log C_d(kappa_b) is missing (or is the anchor's)",
            "The logits are kappa_b c_ab without log C_d(kappa_b), or with the anchor's log C_d(kappa_a) in "
            f"its place: {_CANCELS}. The candidate's normaliser cancels only when every kappa is equal "
            "(the NT-Xent limit)."),
    Variant("normaliser-sign", "pcl", "log C_d(kappa_b) enters with the wrong sign",
            "The logits use -log C_d(kappa_b) + kappa_b c_ab; the vMF log-density is "
            "+log C_d(kappa) + kappa c."),
) + tuple(_normaliser_variant(key) for key in NORMALISER_SHIFTS) + (
    Variant("anchor-kappa", "pcl", "the anchor's concentration and normaliser are used instead of the "
            "candidate's (kappa_a c_ab)",
            "The logits are log C_d(kappa_a) + kappa_a c_ab, a per-anchor temperature: the anchor's vMF "
            f"density, not the candidate's; {_CANCELS}. In the contract page, section 3 each candidate b carries its own "
            "log C_d(kappa_b) + kappa_b c_ab."),
    Variant("anchor-concentration", "pcl", "the anchor's concentration multiplies the cosine, with the "
            "candidate's normaliser (log C_d(kappa_b) + kappa_a c_ab)",
            "The logits are log C_d(kappa_b) + kappa_a c_ab: the normaliser is the candidate's but the "
            "concentration is the anchor's. In the contract page, section 3 both are the candidate's, "
            "log C_d(kappa_b) + kappa_b c_ab."),
    Variant("kappa-product", "pcl", "the two views' concentrations are multiplied "
            "(log C_d(kappa_b) + kappa_a kappa_b c_ab)",
            "The cosine is multiplied by kappa_a kappa_b; in the contract page, section 3 it is the candidate's kappa_b "
            "alone: the candidate's vMF density evaluated at the anchor's direction."),
    Variant("kappa-product-no-normaliser", "pcl", "the two views' concentrations are multiplied, with no "
            "normaliser (kappa_a kappa_b c_ab)",
            f"The logits are kappa_a kappa_b c_ab, without the candidate's normaliser ({_CANCELS}). The contract "
            "page, section 3: log C_d(kappa_b) + kappa_b c_ab."),
    Variant("kappa-product-normalised", "pcl", "the two views' concentrations are multiplied, normaliser "
            "included (log C_d(kappa_a kappa_b) + kappa_a kappa_b c_ab)",
            "The logits are the vMF log-density of concentration kappa_a kappa_b; the contract page, section 3 has the "
            "candidate's kappa_b: log C_d(kappa_b) + kappa_b c_ab."),
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
) + (
    # with --extra-candidates only: what is done to the extra candidates alone
    Variant("extra-ignored", "both", "the extra candidates are left out of the denominator",
            "The results are those of the batch alone: the M extra candidates it was given (extra_z, the "
            "memory bank or queue) join no anchor's denominator. In the contract page, section 3 every "
            "anchor's denominator sums over its 2N - 1 other views and the M extra candidates."),
    Variant("extra-no-normaliser", "pcl", "the extra candidates' logits lack their normaliser "
            "log C_d(kappa_j) (kappa_j c_aj), while the views' have theirs",
            "The logits of the extra candidates are kappa_j c_aj, without log C_d(kappa_j), while the batch's "
            "candidates carry log C_d(kappa_b) + kappa_b c_ab: a bank whose logits are formed apart from the "
            "batch's, say. In the contract page, section 3 an extra candidate's logit has the form of a view's, "
            "log C_d(kappa_j) + kappa_j c_aj."),
    Variant("extra-unnormalised", "both", "the extra candidates' raw embeddings are used, not their directions",
            "The extra candidates enter with mu_a . z_j, the anchor's direction times the raw row of extra_z, "
            "in place of the cosine: the bank is not normalised (a queue that keeps raw embeddings). In the "
            "contract page, section 3 an extra candidate enters by its direction, as a view does."),
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


def _weightings(vkey: str, losses, conv, n: int):
    """The reductions to try with the per-anchor ``losses`` of variant ``vkey``: the declared
    one (but for the reference's own losses) and, for a reduced loss, each other one that
    changes the result. A reduction whose weights differ only where the losses are exactly
    0 (the batch's loss without its extra candidates at N = 1) is no evidence for itself; the
    comparisons are exact on purpose, only a weight times an exact 0 makes no difference."""
    weights = alternative_weights(conv.reduction, n)
    declared = weights["declared"]
    for rkey, w in weights.items():
        if rkey == "declared":
            if vkey != "reference":
                yield rkey, w
        elif conv.reduction != "none" and np.any((w != declared) & (losses != 0)):
            yield rkey, w


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
            for rkey, w in _weightings(vkey, losses, conv, case.n):
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
    return Finding(signature, summary[0].upper() + summary[1:], " ".join(details), sorted(runs), ("variant", *key))


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
        finding = _finding(key, hits[key])
        finding.detail += (f" The variant reproduces the loss in {len(hits[key])} of the {len(defined[key])} "
                           "runs where it differs from the reference.")
        findings.append(finding)
        explained |= hits[key]
        remaining -= hits[key]
    return findings, explained
