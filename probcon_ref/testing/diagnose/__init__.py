"""Why does an implementation disagree with the reference? Signatures of known mistakes.

Used by :func:`probcon_ref.testing.validate` when runs fail. The evidence is computed on the
host in NumPy float64 from the inputs of the validation battery, with the special functions
of :mod:`probcon_ref.special` (no SciPy); each kind lives in its own module:

* ``outputs``: every call raised, or the output's shape or dtype is not the declared one;
* ``variants``: what the implementation computes instead. The loss is re-evaluated under
  known wrong conventions (diagonal not excluded, normaliser missing, mean over N, ...); a
  variant that reproduces the failing results is reported;
* ``offsets``: a loss error unchanged when the embeddings are redrawn (a misplaced
  normaliser or constant);
* ``gradients``: the loss agrees but a gradient does not (normaliser detached from
  autograd, projection of the normalisation missing, ...);
* ``precision``: right only to the rounding of O(1) quantities, the two textbook forms of
  SPEC section 4;
* ``where``: which regimes the failing cases lie in. Each predicate says whether a case lies
  where a known mistake shows (SciPy's ``ive`` underflows, ``I_nu`` overflows, kappa = 0,
  identical views, ...); a small set of predicates that covers the failures and little else
  is reported.
"""

from __future__ import annotations

from .finding import Finding, merge
from .gradients import GRADIENT_DIAGNOSES, gradient_findings, gradient_variants
from .offsets import OFFSETS, offset_finding
from .outputs import DTYPE_DIAGNOSIS, call_findings, dtype_findings, shape_findings
from .precision import PRECISION_DIAGNOSES, precision_findings
from .variants import REDUCTIONS, VARIANT_BY_KEY, VARIANTS, Reduction, Variant, alternative_weights, \
    variant_findings, variant_losses
from .where import LOG_MAX, LOG_TINY, PREDICATES, TINY, Predicate, cover_by_regimes

__all__ = ["explain", "Finding", "Variant", "VARIANTS", "VARIANT_BY_KEY", "variant_losses", "Reduction",
           "REDUCTIONS", "alternative_weights", "OFFSETS", "gradient_variants", "GRADIENT_DIAGNOSES",
           "PRECISION_DIAGNOSES", "DTYPE_DIAGNOSIS", "Predicate", "PREDICATES", "cover_by_regimes",
           "LOG_TINY", "LOG_MAX", "TINY"]


def _everywhere(rest: set, tried: int) -> Finding:
    """Failures in nearly every regime that no known mistake explains."""
    return Finding(
        "everywhere", f"Fails in nearly every regime ({len(rest)} of {tried} runs)",
        "The disagreement is not confined to a corner of the input space (special functions, "
        "kappa = 0, identical views, ...) and matches no known mistake: it is a difference in the "
        "formula or in the convention. Check the options (--loss, --reduction, --kappa, "
        "--temperature) against what the function computes, then SPEC sections 3 and 4.",
        sorted(rest))


def _by_regime(results: list, rest: set, failing: set, findings: list) -> list:
    """The regimes that hold the failing runs ``rest`` no other finding explains, and a last
    finding for those no regime holds."""
    passing = {r.run for r in results if r.status == "pass"}
    facts = {r.run: r._ref.facts for r in results if r._ref is not None and r.status != "skip"}
    regime, uncovered = cover_by_regimes(facts, rest, passing, all_failing=failing,
                                         skip={f.signature for f in findings})
    if uncovered:
        regime.append(Finding("unexplained", "Failing runs that match no known signature",
                              "See their errors in the table above.", sorted(uncovered)))
    return regime


def explain(fn, fw, conv, results: list, cases: dict) -> list:
    """The findings that explain the failing runs of ``results`` (``cases`` by name).

    ``fn`` is called again only to test for a constant offset (on redrawn directions).
    """
    findings = call_findings(results, conv)
    if findings:
        return findings
    findings += shape_findings(results)
    findings += dtype_findings(results)
    failing = {r.run for r in results if r.status in ("fail", "error") and "shape" not in r.wrong}
    # a run whose only fault is its output dtype is explained by the dtype finding
    failing_values = {r.run for r in results if r.run in failing and (r.status == "error" or r.nonfinite
                      or set(r.wrong) - {"dtype"})}
    variant, explained = variant_findings(results, conv, cases)
    findings += variant
    offset, by_offset = offset_finding(fn, fw, conv, results, cases, explained)
    if offset is not None:
        findings.append(offset)
        explained |= by_offset
    gradient, by_gradient = gradient_findings(results, conv, cases)
    findings += gradient
    explained |= by_gradient
    precision, by_precision = precision_findings(results, conv, explained)
    findings += precision
    explained |= by_precision
    rest = failing_values - explained
    tried = len([r for r in results if r.status != "skip"])
    if rest and not explained and len(rest) >= 0.75 * tried:
        findings.append(_everywhere(rest, tried))
    elif rest:
        findings += _by_regime(results, rest, failing, findings)
    return merge(findings)
