"""Why does an implementation disagree with the reference? Signatures of known mistakes.

Used by :func:`probcon_ref.testing.validate` when runs fail. The evidence is computed on the
host in NumPy float64 from the inputs of the validation battery, with the special functions
of :mod:`probcon_ref.special` (no SciPy), the extra candidates among them where the battery
has any (each diagnosis evaluates its claim with them); each kind lives in its own module:

* ``outputs``: every call raised, or the output's shape or dtype is not the declared one;
* ``variants``: what the implementation computes instead. The loss is re-evaluated under
  known wrong conventions (``logits``: diagonal not excluded, normaliser missing or of
  another dimension, the anchor's concentration in place of the candidate's, kappas
  multiplied, mean over N, ...); a variant that reproduces the failing results is reported,
  and ``extend`` gives it the runs where its loss passes but its gradients do not;
* ``scale``: the loss is the reference's times a constant (or the temperature over one);
* ``fitted``: a temperature applied on top of kappa, solved for;
* ``offsets``: a loss error unchanged when the embeddings are redrawn (a misplaced
  normaliser or constant);
* ``gradients``: the loss agrees but a gradient does not (normaliser detached from
  autograd, projection of the normalisation missing, gradients with respect to the unit
  directions, ...);
* ``precision``: right only to the rounding of O(1) quantities, the two textbook forms of
  the contract, section :ref:`4 <contract-gradient>`;
* ``where``: which regimes the failing cases lie in. Each predicate says whether a case lies
  where a known mistake shows (SciPy's ``ive`` underflows, ``I_nu`` or ``exp`` overflows,
  kappa = 0, identical views, ...); at most three regimes that fail in nearly all their runs
  and together hold every remaining failure are reported, or none;
* ``evidence``: what is left, measured (which quantities fail, by how much, how the errors
  move with kappa, the temperature, d and N), with no advice.
"""

from __future__ import annotations

from .evidence import evidence_finding
from .extend import extend_variants
from .finding import Finding, merge
from .fitted import fitted_findings
from .gradients import GRADIENT_DIAGNOSES, gradient_findings, gradient_variants
from .logits import NORMALISER_SHIFTS, SCALED
from .offsets import OFFSETS, offset_finding
from .outputs import DTYPE_DIAGNOSIS, call_findings, dtype_findings, shape_findings
from .precision import PRECISION_DIAGNOSES, precision_findings
from .scale import scale_finding
from .variants import REDUCTIONS, VARIANT_BY_KEY, VARIANTS, Reduction, Variant, alternative_weights, \
    variant_findings, variant_losses
from .where import LOG_MAX, LOG_TINY, PREDICATES, TINY, Predicate, cover_by_regimes

__all__ = ["explain", "Finding", "Variant", "VARIANTS", "VARIANT_BY_KEY", "variant_losses", "Reduction",
           "REDUCTIONS", "alternative_weights", "OFFSETS", "gradient_variants", "GRADIENT_DIAGNOSES",
           "PRECISION_DIAGNOSES", "DTYPE_DIAGNOSIS", "Predicate", "PREDICATES", "cover_by_regimes",
           "NORMALISER_SHIFTS", "SCALED", "LOG_TINY", "LOG_MAX", "TINY"]


def _by_regime(results: list, rest: set, failing: set, findings: list) -> tuple[list, set]:
    """The regimes that hold the failing runs ``rest`` no other finding explains (or none),
    and the runs they leave."""
    passing = {r.run for r in results if r.status == "pass"}
    facts = {r.run: r._ref.facts for r in results if r._ref is not None and r.status != "skip"}
    return cover_by_regimes(facts, rest, passing, all_failing=failing, skip={f.signature for f in findings})


def _signatures(fn, fw, conv, results: list, cases: dict) -> tuple[list, set]:
    """The findings of the signatures that reproduce numbers, in order, and the runs they explain."""
    findings, explained = variant_findings(results, conv, cases)
    scaled, by_scale = scale_finding(results, conv, cases, explained)
    if scaled is not None:
        findings.append(scaled)
        explained |= by_scale
    fitted, by_fit = fitted_findings(results, conv, cases, explained)
    findings += fitted
    explained |= by_fit
    explained |= extend_variants(results, conv, cases, findings, explained)
    offset, by_offset = offset_finding(fn, fw, conv, results, cases, explained)
    if offset is not None:
        findings.append(offset)
        explained |= by_offset
    gradient, by_gradient = gradient_findings(results, conv, cases, explained)
    findings += gradient
    explained |= by_gradient
    return findings, explained


def explain(fn, fw, conv, results: list, cases: dict) -> list:
    """The findings that explain the failing runs of ``results`` (``cases`` by name).

    ``fn`` is called again to test for a constant offset (on redrawn directions), and, where
    no signature and no regime holds the failures, on small batches that vary one quantity.
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
    signatures, explained = _signatures(fn, fw, conv, results, cases)
    findings += signatures
    # the textbook forms' marks (errors at the rounding of the logits where the loss is tiny)
    # are evidence only where little else unknown is wrong: kept if what is left unexplained
    # is at most one run in ten
    precision, by_precision = precision_findings(results, conv, explained)
    rest = failing_values - explained - by_precision
    regime, uncovered = _by_regime(results, rest, failing, findings + precision) if rest else ([], set())
    tried = sum(r.status != "skip" for r in results)
    if precision and len(uncovered) <= tried // 10 or not uncovered:
        findings += precision + regime
        if uncovered:
            runs = [r for r in results if r.run in uncovered]
            findings.append(evidence_finding(fn, fw, conv, runs, spread=not regime and len(runs) > 1))
        return merge(findings)
    rest = failing_values - explained
    regime, uncovered = _by_regime(results, rest, failing, findings)
    findings += regime
    if uncovered:
        runs = [r for r in results if r.run in uncovered]
        findings.append(evidence_finding(fn, fw, conv, runs, spread=not regime and len(runs) > 1))
    return merge(findings)
