"""Why does an implementation disagree with the reference? Signatures of known mistakes.

Used by :mod:`probcon_ref.testing`. Three kinds of evidence, all computed on the host in
NumPy float64 from the inputs of the validation battery:

* **regimes**: which cases fail. Each predicate says whether a case lies in a regime where a
  known mistake shows (SciPy's ``ive`` underflows, ``I_nu`` overflows, kappa = 0, identical
  views, ...); a small set of predicates that covers the failures and little else is reported.
* **variants**: what the implementation computes instead. The loss is re-evaluated under
  known wrong conventions (diagonal not excluded, normaliser missing, mean over N, ...); a
  variant that reproduces the failing results is reported.
* **gradient variants**: when the loss agrees but a gradient does not (normaliser detached
  from autograd, projection of the normalisation missing, ...).

The special functions come from :mod:`probcon_ref.special` (no SciPy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..special import bessel_ratio, log_iv, log_vmf_normalizer

LOG_TINY = {"float64": math.log(np.finfo(np.float64).tiny), "float32": math.log(np.finfo(np.float32).tiny)}
LOG_MAX = {"float64": math.log(np.finfo(np.float64).max), "float32": math.log(np.finfo(np.float32).max)}
TINY = {"float64": float(np.finfo(np.float64).tiny), "float32": float(np.finfo(np.float32).tiny)}


# ---------------------------------------------------------------------------------------
# Host-side evaluation of the loss, its variants and its gradient pieces (float64)
# ---------------------------------------------------------------------------------------


def stack(x: dict):
    """``z`` (2N, d), ``mu``, raw norms and cosines of a case's inputs."""
    z = np.concatenate([x["z1"], x["z2"]], axis=0)
    scale = np.max(np.abs(z), axis=1, keepdims=True)
    y = z / scale
    norm = scale * np.sqrt(np.sum(y * y, axis=1, keepdims=True))
    mu = y / np.sqrt(np.sum(y * y, axis=1, keepdims=True))
    return z, mu, norm[:, 0], mu @ mu.T


def kappas(x: dict):
    return np.concatenate([x["kappa1"], x["kappa2"]])


def log_c(d: int, k) -> np.ndarray:
    return np.asarray(log_vmf_normalizer(d, np.asarray(k, dtype=np.float64)))


def logit_scale(x: dict, loss: str, d: int, temperature) -> np.ndarray:
    """Per-anchor magnitude of the logits' ingredients, ``max_{b != a} |log C_d(k_b)| + k_b``.

    A float implementation that forms the logits and then their log-sum-exp makes an
    absolute error of a few units of roundoff times this number in ``loss_a``.
    """
    n2 = 2 * x["z1"].shape[0]
    if loss == "ntxent":
        return np.full(n2, 1.0 / temperature)
    k = kappas(x)
    s = np.abs(log_c(d, k)) + k
    full = np.broadcast_to(s, (n2, n2)).copy()
    np.fill_diagonal(full, -np.inf)
    return np.max(full, axis=1) if n2 > 1 else s


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


@dataclass(frozen=True)
class Variant:
    """A way of computing the per-anchor losses differently from SPEC section 3."""

    key: str
    loss: str  # "pcl", "ntxent" or "both"
    summary: str
    detail: str


def variant_losses(key: str, x: dict, loss: str, d: int, temperature, kappa_mode: str = "kappa",
                   memo: dict | None = None):
    """Per-anchor losses (2N,) under variant ``key``; None where it is undefined.

    ``memo`` (a dict) keeps the pieces shared by the variants of one batch.
    """
    memo = {} if memo is None else memo
    n = x["z1"].shape[0]
    n2 = 2 * n
    if "stack" not in memo:
        memo["stack"] = stack(x)
    z, mu, _, cos = memo["stack"]
    if key == "unnormalised":
        with np.errstate(over="ignore", invalid="ignore"):
            cos = z @ z.T
        if not np.all(np.isfinite(cos)) or np.allclose(np.linalg.norm(z, axis=1), 1.0):
            return None
    idx = np.arange(n2)
    pos = (idx + n) % n2
    if loss == "pcl":
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
            f = k[None, :] * cos
        elif key == "normaliser-sign":
            f = -lc[None, :] + k[None, :] * cos
        elif key == "normaliser-order":
            if np.any(k == 0):
                return None
            nu = d / 2 - 1
            wrong = lc + np.asarray(log_iv(nu, k)) - np.asarray(log_iv(nu + 1, k))
            f = wrong[None, :] + k[None, :] * cos
        elif key == "anchor-kappa":
            f = k[:, None] * cos
        else:
            f = lc[None, :] + k[None, :] * cos
    else:
        if key == "temperature-multiplied":
            f = cos * temperature
        elif key.startswith("temperature="):
            t = float(key.split("=", 1)[1])
            if t == temperature:
                return None
            f = cos / t
        else:
            f = cos / temperature
    f = np.array(f, dtype=np.float64)
    candidates = idx[:, None] != idx[None, :]
    if key == "self-included":
        candidates = np.ones((n2, n2), dtype=bool)
    elif key == "self-zero-logit":
        candidates = np.ones((n2, n2), dtype=bool)
        f[idx, idx] = 0.0
    elif key == "positive-excluded":
        candidates = candidates & (idx[None, :] != pos[:, None])
        if n == 1:
            return None
    elif key == "cross-view-only":
        view = idx // n
        candidates = view[:, None] != view[None, :]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = _stable_losses(f, candidates, pos)
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


@dataclass(frozen=True)
class Reduction:
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


def reduction_weights(reduction: str, n: int) -> np.ndarray:
    n2 = 2 * n
    if reduction == "mean":
        return np.full(n2, 1.0 / n2)
    if reduction == "pair-mean":
        return np.full(n2, 1.0 / n)
    return np.ones(n2)  # "sum"; "none" keeps the vector but its gradient is that of the sum


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
# Gradient pieces and gradient variants
# ---------------------------------------------------------------------------------------


def residuals(x: dict, loss: str, d: int, temperature, weights):
    """``W``, ``G``, ``mu``, raw norms, cosines and ``A_d`` by the formulas of SPEC section 4.

    ``W`` as SPEC section 4 asks: ``w_a P_ab`` for the negatives and, for the positive,
    ``-w_a sum_{b not in {a, p(a)}} P_ab``, never ``w_a (P_ap - 1)``; so ``|W|`` has the size
    of the loss's own terms even when the positive is matched to within rounding of 1.
    """
    n = x["z1"].shape[0]
    n2 = 2 * n
    _, mu, norm, cos = stack(x)
    idx = np.arange(n2)
    pos = (idx + n) % n2
    if loss == "pcl":
        k = kappas(x)
        f = log_c(d, k)[None, :] + k[None, :] * cos
        scale = k
        length = np.asarray(bessel_ratio(d / 2 - 1, k))
    else:
        f = cos / temperature
        scale = np.full(n2, 1.0 / temperature)
        length = None
    gaps = f - f[idx, pos][:, None]
    gaps[idx, idx] = -np.inf
    gaps[idx, pos] = -np.inf
    m = np.max(gaps, axis=1, keepdims=True)
    m = np.maximum(np.where(np.isfinite(m), m, 0.0), 0.0)
    e = np.exp(gaps - m)
    s = np.sum(e, axis=1, keepdims=True)
    z = np.exp(-m) + s
    w = weights[:, None] * (e / z)
    w[idx, pos] = -weights * (s / z)[:, 0]
    g = w * scale[None, :]
    return w, g, mu, norm, cos, length


def gradient_variants(x: dict, loss: str, d: int, temperature, weights, kappa_mode: str) -> dict[str, dict]:
    """Gradients (by block) that known mistakes produce."""
    w, g, mu, norm, cos, length = residuals(x, loss, d, temperature, weights)
    n = x["z1"].shape[0]
    g_mu = (g + g.T) @ mu
    proj = g_mu - np.sum(mu * g_mu, axis=1, keepdims=True) * mu
    out = {
        "no-projection": {"z": g_mu / norm[:, None]},
        "one-sided": {"z": ((g @ mu) - np.sum(mu * (g @ mu), axis=1, keepdims=True) * mu) / norm[:, None]},
        "correct": {"z": proj / norm[:, None]},
    }
    if loss == "pcl":
        detached = np.sum(w * cos, axis=0)
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
                       "-A_d(kappa) = -I_{d/2}(kappa) / I_{d/2-1}(kappa) (SPEC section 1)."),
    "no-projection": ("the z gradient is not projected: z / ||z|| is not differentiated",
                      "dL/dz_a must be (I - mu_a mu_a^T) dL/dmu_a / ||z_a||; the projection is missing."),
    "one-sided": ("the z gradient counts each cosine once",
                  "dL/dmu_a = sum_b (G_ab + G_ba) mu_b: the terms where a is a candidate of another "
                  "anchor (G_ba) are missing."),
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
        "F.cross_entropy, computes exactly that). SPEC section 4: "
        "W_ap = -w_a sum_{b not in {a, p(a)}} P_ab, from the negatives' probabilities."),
}

#: Where the error has the size of the rounding of the logits, not of the loss: the textbook form.
PRECISION_DIAGNOSES = {
    "tiny-loss": (
        "Loss right only to the rounding of its logits, not to its own size (the mark of the "
        "textbook -F_ap + logsumexp_b F_ab)",
        "In these runs the loss error is within {bound} units of roundoff of the logits' size "
        "(max_b |log C_d(kappa_b)| + kappa_b, or 1/tau, plus log(2N)) while the loss is at least "
        "100 times smaller ({example}). That is what -F_ap + logsumexp_b F_ab (or F.cross_entropy, or "
        "-log of the softmax) gives: both terms have the logits' size and their difference keeps "
        "only their rounding, 0 or noise for a loss of 1e-40. SPEC section 4: compute loss_a from "
        "the differences delta_ab = F_ab - F_ap, as "
        "m_a + log1p(sum_{b != a, p(a)} exp(delta_ab - m_a) + expm1(-m_a))."),
}

DTYPE_DIAGNOSIS = (
    "Output dtype differs from the inputs' ({what})",
    "SPEC section 7: the loss and each gradient are returned in the dtype of the inputs (float16 "
    "and bfloat16 excepted). A float64 result for float32 inputs usually means a float64 constant "
    "or array promoted the computation (a NumPy float64 scalar, np.array of a Python list, torch."
    "tensor(..., dtype=torch.float64)), or the result was converted on the way out. The values "
    "were still compared with the reference; the table shows their errors.")


# ---------------------------------------------------------------------------------------
# Regime predicates
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predicate:
    key: str
    summary: str
    detail: str
    test: Callable  # (facts: dict, dtype: str) -> str | None (a short reason when true)


def case_facts(x: dict, loss: str, d: int, temperature, tags: frozenset, ref_losses) -> dict:
    """Numbers the predicates read, computed once per case."""
    n = x["z1"].shape[0]
    _, _, norm, cos = stack(x)
    facts = {"n": n, "d": d, "tags": tags, "min_norm": float(np.min(norm)), "max_norm": float(np.max(norm)),
             "min_loss": float(np.min(ref_losses)) if n > 1 else 0.0}
    if loss == "pcl":
        k = kappas(x)
        nu = d / 2 - 1
        positive = k[k > 0]
        facts["kappa_zero"] = bool(np.any(k == 0))
        facts["min_kappa"] = float(np.min(positive)) if positive.size else None
        facts["max_kappa"] = float(np.max(k))
        if positive.size:
            liv = np.asarray(log_iv(nu, positive))
            log_ive = liv - positive
            i = int(np.argmin(log_ive))
            facts["min_log_ive"] = (float(log_ive[i]), float(positive[i]))
            j = int(np.argmax(liv))
            facts["max_log_iv"] = (float(liv[j]), float(positive[j]))
    return facts


def _ive_underflow(f, dtype):
    if "min_log_ive" not in f:
        return None
    value, k = f["min_log_ive"]
    if value < LOG_TINY[dtype]:
        nu = f["d"] / 2 - 1
        return (f"ive({nu:g}, {k:.3g}) = 10^{value / math.log(10):.0f} < {TINY[dtype]:.2g}, "
                f"the smallest normal {dtype}")
    return None


def _iv_overflow(f, dtype):
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
        lambda f, dt: "identical views" if "identical" in f["tags"] else None),
    Predicate(
        "antipodal-views", "Fails only with antipodal views",
        "These are the cases where every positive has cosine exactly -1 (z2 = -z1). Look "
        "for arccos / angle computations, clamping of the cosine, or divisions by 1 + c.",
        lambda f, dt: "antipodal views" if "antipodal" in f["tags"] else None),
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
        ("tiny-loss" in f["tags"]) else None),
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


@dataclass
class Finding:
    """One diagnosis: a recognised signature, what it means and where it shows."""

    signature: str
    summary: str
    detail: str
    runs: list = field(default_factory=list)  # (case name, dtype) pairs

    def to_dict(self) -> dict:
        return {"signature": self.signature, "summary": self.summary, "detail": self.detail,
                "runs": [{"case": c, "dtype": dt} for c, dt in self.runs]}


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
