"""Gradient only: the loss agrees and a gradient does not. Which known mistake?

A failing gradient is compared with what known mistakes give: no gradient at all, the
reference's times a constant (a reduction the loss hid), the normaliser detached from
autograd, the projection of ``z / ||z||`` missing, one of the two terms of each cosine
missing (:func:`gradient_variants`).
"""

from __future__ import annotations

import numpy as np

from ..host import kappas, residuals
from ..measure import block_error
from .finding import MATCH, Finding, capitalised
from .variants import REDUCTIONS, alternative_weights

__all__ = ["GRADIENT_DIAGNOSES", "gradient_variants", "gradient_findings"]


def gradient_variants(x: dict, loss: str, d: int, temperature, weights, kappa_mode: str) -> dict[str, dict]:
    """Gradients (by block) that known mistakes produce. An extra candidate is a column of
    ``G`` only (no anchor, no gradient of its own): it adds ``G_ab mu_b`` to ``dL/dmu_a``
    alone, and never a term ``G_ba``."""
    w, g, mu, norm, cos, length = residuals(x, loss, d, temperature, weights)
    n = x["z1"].shape[0]
    n2 = 2 * n
    one_sided = g @ mu  # sum_b G_ab mu_b over every candidate
    g_mu = one_sided + g[:, :n2].T @ mu[:n2]
    mu, norm = mu[:n2], norm[:n2]
    proj = g_mu - np.sum(mu * g_mu, axis=1, keepdims=True) * mu
    out = {
        "no-projection": {"z": g_mu / norm[:, None]},
        "direction": {"z": g_mu},
        "not-divided-by-norm": {"z": proj},
        "one-sided": {"z": (one_sided - np.sum(mu * one_sided, axis=1, keepdims=True) * mu) / norm[:, None]},
        "correct": {"z": proj / norm[:, None]},
    }
    if loss == "pcl":
        detached = np.sum(w[:, :n2] * cos[:, :n2], axis=0)
        if kappa_mode == "log":
            detached = detached * kappas(x)
        out["kappa-detached"] = {"kappa": detached}
    for v in out.values():
        if "z" in v:
            v["z1"], v["z2"] = v["z"][:n], v["z"][n:]
        if "kappa" in v:
            v["kappa1"], v["kappa2"] = v["kappa"][:n], v["kappa"][n:]
    return out


GRADIENT_DIAGNOSES = {
    "no-gradient": ("no gradient reaches the inputs",
                    "Autograd gives zero gradients although the reference's are not zero: the loss is "
                    "detached from its inputs (computed through NumPy, .item() or .detach())."),
    "kappa-detached": ("the kappa gradient misses d/dkappa log C_d(kappa) = -A_d(kappa)",
                       "The kappa gradient equals sum_a W_ab c_ab, without the term -A_d(kappa_b) "
                       "sum_a W_ab: the normaliser log C_d is a constant to autograd (for example "
                       "evaluated with SciPy on .detach().cpu().numpy()), or missing from the logits. "
                       "Its derivative is "
                       "-A_d(kappa) = -I_{d/2}(kappa) / I_{d/2-1}(kappa) (the contract page, section 1)."),
    "no-projection": ("the z gradient is not projected: z / ||z|| is not differentiated",
                      "dL/dz_a must be (I - mu_a mu_a^T) dL/dmu_a / ||z_a|| (the contract page, section 4); these are "
                      "dL/dmu_a / ||z_a||, without the projection (the norm in z / ||z|| is treated as a "
                      "constant, for instance detached)."),
    "direction": ("the z gradients are dL/dmu, the gradients with respect to the unit directions mu = z / ||z|| "
                  "(neither projected nor divided by ||z||)",
                  "These are dL/dmu_a = sum_b (G_ab + G_ba) mu_b (G_ab alone for an extra candidate b), "
                  "returned as the gradients of the raw embeddings. The chain rule through mu_a = z_a / ||z_a|| "
                  "gives dL/dz_a = (I - mu_a mu_a^T) dL/dmu_a / ||z_a|| (the contract page, section 4): project out "
                  "mu_a and divide by the raw norm."),
    "not-divided-by-norm": ("the z gradients are those with respect to the unit directions on the sphere, "
                            "(I - mu mu^T) dL/dmu: projected but not divided by ||z||",
                            "These are (I - mu_a mu_a^T) dL/dmu_a, the gradient of the loss of unit-norm "
                            "inputs; dL/dz_a also divides by the raw norm ||z_a|| (the contract page, section 4)."),
    "one-sided": ("the z gradient counts each cosine once",
                  "dL/dmu_a = sum_b (G_ab + G_ba) mu_b (G_ab alone for an extra candidate b): the terms "
                  "where a is a candidate of another anchor (G_ba) are missing."),
    "scaled": ("the gradient is the reference's times a constant",
               "Every gradient block is the reference's times the same factor, while the loss agrees: "
               "the gradient is not that of the reduced loss."),
    "positive-weight": (
        "the gradient is right only to the rounding of weights of size w_a, not to its own size "
        "(the mark of the positive's weight computed as w_a (P_ap - 1))",
        "In these runs every gradient block that fails is within {bound} units of roundoff of the "
        "size the positive's terms have when its weight is of size w_a, "
        "w_a kappa_p / ||z_a|| + w_p kappa_a / ||z_a|| (for a concentration w_p (1 + A_d(kappa_b))), "
        "while where it fails the true gradient's scale is at least 100 times smaller ({example}). "
        "That is what "
        "W_ap = w_a (P_ap - 1) gives when P_ap is within rounding of 1: the difference cancels "
        "and keeps only its rounding (autograd through -F_ap + logsumexp, or through "
        "F.cross_entropy, computes exactly that). The contract page, section 4: "
        "W_ap = -w_a sum_{b not in {a, p(a)}} P_ab, from the negatives' probabilities."),
}



def _scaled(r, conv, case, alpha: float) -> str:
    """What a gradient that is the reference's times ``alpha`` is: a wrong reduction, or "scaled"."""
    label = "scaled"
    base = float(np.sum(r._ref.weights))
    for rkey, w in alternative_weights(conv.reduction, case.n).items():
        if rkey not in ("declared", "one-direction") and abs(alpha - np.sum(w) / base) <= 1e-3 * abs(alpha):
            label = rkey
    return label


def _own_scale(block, want, ref_scale):
    """The reference's row scales of a block, resized to a variant's block: times the ratio of
    their max-norms (the variant's z gradient without the division by a raw norm of 1e-6 is a
    million times smaller, and must be held to its own size)."""
    size, ref_size = float(np.max(np.abs(block))), float(np.max(np.abs(want)))
    return ref_scale * (size / ref_size) if size > 0 and ref_size > 0 else ref_scale


def _classify(r, conv, case) -> tuple[list, float | None]:
    """The mistakes run ``r``'s gradients show (keys of :data:`GRADIENT_DIAGNOSES` or of
    ``REDUCTIONS``; none, one, or several gradient variants that all reproduce them), and the
    factor where they are the reference's scaled."""
    ref = r._ref
    got, want = r._got_grads, ref.grads
    wrong = [k for k in r.wrong if k in got]
    tol = max(MATCH[r.dtype], ref.grad_tol)
    wanted = np.concatenate([want[k].ravel() for k in got])
    gotten = np.concatenate([got[k].ravel() for k in got])
    if np.all(gotten == 0) and np.any(wanted != 0):
        return ["no-gradient"], None
    denom = float(wanted @ wanted)
    if denom > 0:
        alpha = float(gotten @ wanted) / denom
        if abs(alpha - 1) > 1e-6 and all(
                block_error(got[k], alpha * want[k], abs(alpha) * ref.grad_scale[k]) <= tol for k in got):
            return [_scaled(r, conv, case, alpha)], alpha
    variants = gradient_variants(r._inputs, conv.loss, case.d, case.temperature, ref.weights, conv.kappa)
    found = []
    for key, blocks in variants.items():
        if key == "correct" or not set(wrong) <= set(blocks):
            continue
        # against the variant's own size: where the reference's is far larger (tiny raw norms)
        # every small gradient would be "close" to every other
        if all(block_error(got[k], blocks[k], _own_scale(blocks[k], want[k], ref.grad_scale[k]))
               <= min(tol, 0.1 * r.errors[k]) for k in wrong):
            found.append(key)
    return found, None


def gradient_findings(results: list, conv, cases: dict, explained: set = frozenset()) -> tuple[list, set]:
    """Loss right, gradient wrong: which known mistake? Returns the findings and the runs
    they explain (of those not in ``explained``)."""
    runs = [r for r in results if r.status == "fail" and r._got_grads is not None and r.run not in explained
            and not r.nonfinite and "loss" not in r.wrong and "shape" not in r.wrong
            and set(r.wrong) & set(r._got_grads)]
    hits: dict[str, set] = {}
    factors: dict[str, list] = {}
    for r in runs:
        keys, alpha = _classify(r, conv, cases[r.case])
        for key in keys:
            hits.setdefault(key, set()).add(r.run)
            if alpha is not None:
                factors.setdefault(key, []).append(alpha)
    out = []
    covered: set = set()
    for key, found in sorted(hits.items(), key=lambda kv: -len(kv[1])):
        found = found - covered  # a run two variants reproduce belongs to the one that holds more
        if not found:
            continue
        covered |= found
        if key in REDUCTIONS:  # the gradient shows a reduction mistake that the loss hid
            red = REDUCTIONS[key]
            out.append(Finding(key, capitalised(red.summary), red.detail, sorted(found)))
            continue
        summary, detail = GRADIENT_DIAGNOSES[key]
        if key == "scaled":
            summary += f" (factor {np.median(factors['scaled']):.6g})"
        out.append(Finding(f"gradient:{key}", capitalised(summary), detail, sorted(found)))
    return out, covered
