"""Numbers of the derivation, gradient and properties pages, computed when the site is built.

Five studies, each a few small computations (together well under two seconds of a build):

* the remainder of the large-confidence form of the logit, at 40 digits (mpmath);
* the sizes behind the logits at large confidence: the rounding of the cosine product, the
  threshold of the compensated product, the size of a peak;
* the textbook forms of the loss and of the positive's residual against the stable ones, on
  a confidently matched batch, both measured against the package's 50-digit oracle
  (:mod:`probcon_ref.testing.oracle`);
* the analytic gradient against PyTorch's autograd through a naive float64 loss;
* where the batch loss, rather than one anchor's loss, is smallest in one view's confidence.

A page shows what a ``GENERATORS`` entry returns; ``tests/test_docs_derivation.py`` calls the
data functions behind it, so a page and its test share one computation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from probcon_ref import pcl_loss, pcl_loss_and_grad
from probcon_ref.special import bessel_ratio, inverse_bessel_ratio, log_vmf_normalizer
from probcon_ref.special import log_vmf_normalizer_terms_working


def _log_c_shift(d: int, kappa):
    """``log C_d(kappa) - log C_d(0)``, the form the loss itself uses :eq:`eq-normalizer-shift`
    (a constant shared by all candidates cancels in the softmax)."""
    return log_vmf_normalizer_terms_working(np, d, np.asarray(kappa, dtype=np.float64)).shift


def _log_c_peak(d: int, kappa):
    """``log C_d(kappa) - log C_d(0) + kappa`` :eq:`eq-normalizer-peak`."""
    return log_vmf_normalizer_terms_working(np, d, np.asarray(kappa, dtype=np.float64)).peak


def _bisect(f, lo: float, hi: float, steps: int = 60) -> float:
    """The point where ``f`` changes sign from ``< 0`` (at ``lo``) to ``>= 0`` (at ``hi``)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi)


def _root(f, lo: float, hi: float, tol: float = 1e-14, steps: int = 200) -> float:
    """A zero of ``f`` between ``lo`` and ``hi``, where it changes sign: regula falsi with the
    Illinois modification (the bracket always holds the zero), until a step moves the
    estimate by less than ``tol`` of itself."""
    f_lo, f_hi = f(lo), f(hi)
    side, x = 0, lo
    for _ in range(steps):
        x_prev, x = x, (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        f_x = f(x)
        if f_x == 0 or abs(x - x_prev) <= tol * max(1.0, abs(x)):
            return x
        if (f_x < 0) == (f_lo < 0):
            lo, f_lo = x, f_x
            if side == -1:
                f_hi /= 2
            side = -1
        else:
            hi, f_hi = x, f_x
            if side == 1:
                f_lo /= 2
            side = 1
    raise RuntimeError(f"no convergence between {lo} and {hi}")


def _fmt(x: float) -> str:
    """``docs_content._fmt``, imported when first used: ``docs_content`` imports this module."""
    from docs_content import _fmt as fmt

    return fmt(x)


def _tex_number(x: float) -> str:
    """``docs_content._tex_number``: ``5 \\times 10^{-13}`` rather than ``5e-13``."""
    from docs_content import _tex_number as tex

    return tex(x)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """``docs_content._table``, imported when first used."""
    from docs_content import _table as table

    return table(header, rows)


# ---------------------------------------------------------------------------------------
# Step 5: the logit at large confidence
# ---------------------------------------------------------------------------------------

#: Dimensions and confidences of the table of the large-confidence form.
LARGE_KAPPA_DIMS = (32, 128)
LARGE_KAPPA_VALUES = (10.0, 100.0, 1e3, 1e4, 1e5)


def large_kappa_remainder(d: int, kappa: float, digits: int = 40) -> float:
    """``F - [kappa (c - 1) + (d-1)/2 log(kappa / 2 pi)]``, which does not depend on ``c``.

    It is ``log C_d(kappa) + kappa - (d-1)/2 log(kappa / 2 pi)`` :eq:`eq-logit-large-kappa`,
    evaluated with mpmath at ``digits`` significant digits.
    """
    import mpmath

    with mpmath.workdps(digits):
        k, nu = mpmath.mpf(kappa), mpmath.mpf(d) / 2 - 1
        log_c = nu * mpmath.log(k) - mpmath.mpf(d) / 2 * mpmath.log(2 * mpmath.pi) - mpmath.log(
            mpmath.besseli(nu, k, maxterms=10**6))
        return float(log_c + k - (mpmath.mpf(d) - 1) / 2 * mpmath.log(k / (2 * mpmath.pi)))


def large_kappa_terms(d: int, kappa: float) -> tuple[float, float]:
    """The first two terms of the remainder: ``(d-1)(d-3)/(8 kappa)`` and ``(d-1)(d-3)/(16 kappa^2)``."""
    q = (d - 1) * (d - 3)
    return q / (8 * kappa), q / (16 * kappa**2)


def large_kappa_one_nat(d: int) -> float:
    """The confidence above which the two-term form is within one nat of the logit, from the
    code's normaliser in float64 (``peak`` of :eq:`eq-normalizer-peak`), by bisection in ``log kappa``.
    """
    log_c0 = math.lgamma(d / 2) - math.log(2) - d / 2 * math.log(math.pi)

    def below_one_nat(log_k: float) -> float:  # < 0 while the remainder exceeds 1
        k = math.exp(log_k)
        return 1.0 - (float(_log_c_peak(d, k)) + log_c0 - (d - 1) / 2 * math.log(k / (2 * math.pi)))

    return math.exp(_bisect(below_one_nat, math.log(1.0), math.log(1e8)))


def logit_large_kappa_table() -> str:
    rows = []
    for d in LARGE_KAPPA_DIMS:
        for k in LARGE_KAPPA_VALUES:
            r = large_kappa_remainder(d, k)
            first, second = large_kappa_terms(d, k)
            rows.append([f"{d}", f"{k:g}", f"{r:.4g}", f"{first:.4g}", _fmt(r - first),
                         _fmt(r - first - second)])
    head = ("The remainder $R$ of the form, $F_{ab}$ less its first two terms, at 40 digits "
            "(mpmath); it does not depend on the cosine.\n\n")
    table = _table(["$d$", "$\\kappa$", "remainder $R$ (nats)", "$\\frac{(d-1)(d-3)}{8\\kappa}$",
                    "$R$ less that", "$R$ less both correction terms"], rows)
    ranges = ", ".join(f"{large_kappa_one_nat(d):.0f} at $d = {d}$" for d in LARGE_KAPPA_DIMS)
    tail = ("\nThe leading form $\\kappa_b (c_{ab} - 1) + \\frac{d-1}{2} \\log \\frac{\\kappa_b}{2\\pi}$ "
            f"is within one nat of the logit for $\\kappa$ above {ranges} (from the code's "
            "$\\log C_d$); $(d-1)(d-3)/8$ is "
            + ", ".join(f"{(d - 1) * (d - 3) / 8:g} at $d = {d}$" for d in LARGE_KAPPA_DIMS) + ".\n")
    return head + table + tail


def large_kappa_note(d: str = "32") -> str:
    """One sentence: where the large-confidence form holds to a nat in dimension ``d``."""
    d = int(d)
    return (f"At $d = {d}$ the leading form of {{eq}}`eq-logit-large-kappa`, without its "
            "corrections, is within one nat of the "
            f"logit only for $\\kappa$ above about {large_kappa_one_nat(d):.0f} (computed from the "
            f"code's $\\log C_d$ when this page was built); below that the exact logit "
            f"{{eq}}`eq-pcl-logits` is the one to read.\n")


# ---------------------------------------------------------------------------------------
# Step 6: the sizes behind the logits at large confidence
# ---------------------------------------------------------------------------------------

EPS64 = 2.0**-52
ROUNDING_DIMS = (2, 128, 4096)
ROUNDING_ROWS = 8


def _two_product(a, b):
    """``a * b = p + e`` exactly (Dekker's product with Veltkamp's split), elementwise."""
    def split(x):
        t = 134217729.0 * x  # 2^27 + 1
        hi = t - (t - x)
        return hi, x - hi

    p = a * b
    (ah, al), (bh, bl) = split(a), split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def product_rounding(mu) -> float:
    """Largest ``|fl(mu @ mu.T) - mu mu^T|`` over the entries, in units of float64's epsilon.

    The exact dot products are the correctly rounded sums (``math.fsum``) of the error-free
    products of :func:`_two_product`.
    """
    got = mu @ mu.T
    worst = 0.0
    for i in range(mu.shape[0]):
        p, e = _two_product(mu[i][None, :], mu[i:])
        terms = np.concatenate([p, e], axis=1)
        for j in range(terms.shape[0]):  # the product is symmetric: j >= i is enough
            worst = max(worst, abs(got[i, i + j] - math.fsum(terms[j])))
    return worst / EPS64


def direction_kinds(d: int, n: int = ROUNDING_ROWS, seed: int = 0) -> dict:
    """Unit directions of three kinds: Gaussian, non-negative (their absolute values) and
    spiked (one coordinate 30 times the spread of the others)."""
    from probcon_ref.loss import unit_directions

    g = np.random.default_rng([seed, d]).standard_normal((n, d))
    spike = 0.05 * g
    spike[:, 0] += 1.5
    return {kind: unit_directions(np, z)[0]
            for kind, z in (("Gaussian", g), ("non-negative", np.abs(g)), ("spiked", spike))}


def structured_rows(d: int = 4096):
    """Directions whose entries are exactly equal but one: ``(1, 2^-7, ..., 2^-7)``, twice, and
    two Gaussian directions."""
    from probcon_ref.loss import unit_directions

    v = np.array([1.0] + [2.0**-7] * (d - 1))
    g = np.random.default_rng(12).standard_normal((2, d))
    return unit_directions(np, np.stack([v, v, g[0], g[1]]))[0]


@lru_cache(maxsize=None)
def large_confidence_study() -> dict:
    from probcon_ref import _inputs
    from probcon_ref.testing.tolerances import SPEC_BOUNDS

    loss_bound = next(b.float64 for b in SPEC_BOUNDS if b.key == "loss")
    rounding = {d: {k: product_rounding(mu) for k, mu in direction_kinds(d).items()} for d in ROUNDING_DIMS}
    structured = product_rounding(structured_rows())
    peak = float(_log_c_peak(4096, 1e6))
    return {
        "kappa": 1e6, "eps_kappa": EPS64 * 1e6, "loss_bound": loss_bound,
        "rounding": rounding,
        "threshold": {d: _inputs.compensate_above(d) for d in ROUNDING_DIMS},
        "budget": _inputs.LOGIT_ROUNDING_BUDGET,
        "structured": structured,
        "structured_threshold": _inputs.LOGIT_ROUNDING_BUDGET / (structured * EPS64),
        "peak": peak, "peak_half_ulp": float(np.spacing(peak)) / 2,
    }


def large_confidence_table() -> str:
    s = large_confidence_study()
    kinds = ", ".join(s["rounding"][ROUNDING_DIMS[0]])
    rows = [["$\\varepsilon \\kappa$ at $\\kappa = 10^6$: the rounding of a logit term of size $\\kappa$",
             f"{s['eps_kappa']:.2g}, {s['eps_kappa'] / s['loss_bound']:.0f} times the contract's "
             f"{s['loss_bound']:g} for the loss"]]
    for d in ROUNDING_DIMS:
        worst = max(s["rounding"][d].values())
        rows.append([f"largest rounding of $c_{{ab}}$ by the plain product, $d = {d}$",
                     f"{worst:g} $\\varepsilon$ (bound $(2 + \\log_2 d)\\,\\varepsilon$ = "
                     f"{2 + math.log2(d):g} $\\varepsilon$)"])
    rows.append(["the same, directions $(1, 2^{-7}, \\dots, 2^{-7})$ at $d = 4096$",
                 f"{s['structured']:g} $\\varepsilon$"])
    for d in ROUNDING_DIMS:
        rows.append([f"$\\kappa$ (or $1/\\tau$) above which the logits are compensated, $d = {d}$",
                     f"{s['threshold'][d]:.0f}"])
    rows.append(["the threshold that would cover those structured directions at $d = 4096$",
                 f"{s['structured_threshold']:.0f}"])
    rows.append(["$\\mathrm{peak}_b$ at $d = 4096$, $\\kappa = 10^6$, and half its ulp",
                 f"{s['peak']:.5g}; {s['peak_half_ulp']:.2g}"])
    head = (f"Computed when this page was built. Rounding of the product: the largest error of "
            f"`mu @ mu.T` over all pairs of {ROUNDING_ROWS} directions of each kind ({kinds}), "
            "against the exact dot products (error-free products summed by `math.fsum`). "
            "Threshold: {py:func}`probcon_ref._inputs.compensate_above`, "
            f"${_tex_number(s['budget'])} / \\bigl((2 + \\log_2 d)\\,\\varepsilon\\bigr)$. Peak: the code's "
            "{eq}`eq-normalizer-peak`.\n\n")
    return head + _table(["quantity", "value"], rows)


# ---------------------------------------------------------------------------------------
# Steps 6 and the gradient page: textbook forms against the stable ones
# ---------------------------------------------------------------------------------------


def confident_batch(n: int = 4, d: int = 16, kappa: float = 60.0, noise: float = 0.05, seed: int = 1):
    """A confidently matched batch: views 2 are views 1 plus 5% noise, every ``kappa = 60``."""
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d))
    z2 = z1 + noise * rng.normal(size=(n, d))
    return z1, z2, np.full(n, kappa), np.full(n, kappa)


def ordinary_batch():
    """The batch of the finite-difference check on the gradient page (``docs_data.example_batch``)."""
    import docs_data

    return docs_data.example_batch()


def textbook_pcl(z1, z2, kappa1, kappa2):
    """The PCL written as the textbooks write it, in float64 NumPy, with the mean reduction.

    Loss ``-F_ap + logsumexp_b F_ab`` :eq:`eq-loss`; residual ``W = w (P - Y)``
    :eq:`eq-residual` with the positive's entry as written, ``w_a (P_ap - 1)``; the rest of
    the gradient as on the gradient page. The logits come from the package's ``log C_d``, so
    only the two textbook forms differ from the reference. Returns the per-anchor losses and
    the gradient blocks ``(dL/dz, dL/dkappa)`` of the stacked batch.
    """
    from scipy.special import logsumexp

    n, d = z1.shape
    z, kappa = np.concatenate([z1, z2]), np.concatenate([kappa1, kappa2])
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    mu = z / norm
    c = mu @ mu.T
    logits = log_vmf_normalizer(d, kappa)[None, :] + kappa[None, :] * c
    np.fill_diagonal(logits, -np.inf)
    rows, pos = np.arange(2 * n), (np.arange(2 * n) + n) % (2 * n)
    lse = logsumexp(logits, axis=1)
    losses = -logits[rows, pos] + lse
    prob = np.exp(logits - lse[:, None])
    onehot = np.zeros_like(prob)
    onehot[rows, pos] = 1.0
    resid = (prob - onehot) / (2 * n)
    np.fill_diagonal(resid, 0.0)
    g = resid * kappa[None, :]
    grad_mu = (g + g.T) @ mu
    grad_z = (grad_mu - np.sum(mu * grad_mu, axis=1, keepdims=True) * mu) / norm
    grad_kappa = np.sum(resid * (c - bessel_ratio(d / 2 - 1, kappa)[None, :]), axis=0)
    return losses, grad_z, grad_kappa


def naive_torch_pcl(z1, z2, kappa1, kappa2, terms: int = 400):
    """The mean PCL as a few lines of float64 PyTorch, for autograd to differentiate.

    ``log I_nu`` is the defining power series (DLMF 10.25.2), summed in logarithms; the loss
    is the textbook ``-F_ap + logsumexp_b F_ab``. Returns ``(loss, [dL/dz1, dL/dz2, dL/dkappa1,
    dL/dkappa2])`` as NumPy, the gradients from ``backward()``.
    """
    import torch

    inputs = [torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)
              for a in (z1, z2, kappa1, kappa2)]
    t1, t2, k1, k2 = inputs
    n, d = t1.shape
    nu = d / 2 - 1
    z, kappa = torch.cat([t1, t2]), torch.cat([k1, k2])
    mu = z / z.norm(dim=1, keepdim=True)
    c = mu @ mu.T
    j = torch.arange(terms, dtype=torch.float64)
    log_iv = torch.logsumexp((2 * j + nu) * torch.log(kappa / 2)[:, None]
                             - torch.lgamma(j + 1) - torch.lgamma(j + nu + 1), dim=1)
    log_c = nu * torch.log(kappa) - d / 2 * math.log(2 * math.pi) - log_iv
    logits = (log_c + kappa * c).masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
    pos = (torch.arange(2 * n) + n) % (2 * n)
    loss = (-logits[torch.arange(2 * n), pos] + torch.logsumexp(logits, dim=1)).mean()
    loss.backward()
    return float(loss.detach()), [t.grad.numpy() for t in inputs]


def _max_rel(got, want) -> float:
    """Max-norm error of a block, relative to the block's max-norm."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _worst_rel(got, want) -> float:
    """Worst entrywise relative error (every ``want`` is non-zero here)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want) / np.abs(want)))


@lru_cache(maxsize=None)
def _oracle(which: str):
    from probcon_ref.testing import oracle

    batch = confident_batch() if which == "confident" else ordinary_batch()
    return batch, oracle.pcl(*batch)


@lru_cache(maxsize=None)
def textbook_study() -> dict:
    """The confident batch through the oracle, the reference and the textbook forms."""
    batch, ref = _oracle("confident")
    losses = np.asarray(pcl_loss(*batch, reduction="none"), dtype=np.float64)
    _, grads = pcl_loss_and_grad(*batch)
    tb_losses, tb_z, tb_kappa = textbook_pcl(*batch)
    n = batch[0].shape[0]
    want_z = np.concatenate([ref.grads["z1"], ref.grads["z2"]])
    want_kappa = np.concatenate([ref.grads["kappa1"], ref.grads["kappa2"]])
    # W_{a,p(a)} = -w_a (1 - P_ap) and P_ap = exp(-loss_a): exact from the oracle's losses.
    w_pos = np.expm1(-ref.losses) / (2 * n)
    _, _, _, tb_prob_pos = _textbook_positive_probabilities(*batch)
    return {
        "batch": batch,
        "oracle": ref.losses,
        "reference": losses,
        "textbook": tb_losses,
        "w_pos": w_pos,
        "textbook_w_pos": (tb_prob_pos - 1.0) / (2 * n),
        "grad_errors": {
            "reference": (_max_rel(np.concatenate([grads.z1, grads.z2]), want_z),
                          _max_rel(np.concatenate([grads.kappa1, grads.kappa2]), want_kappa)),
            "textbook": (_max_rel(tb_z, want_z), _max_rel(tb_kappa, want_kappa)),
        },
    }


def _textbook_positive_probabilities(z1, z2, kappa1, kappa2):
    """``P_{a,p(a)}`` as the textbook softmax gives it (for the table of the residual)."""
    from scipy.special import softmax

    n, d = z1.shape
    z, kappa = np.concatenate([z1, z2]), np.concatenate([kappa1, kappa2])
    mu = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = log_vmf_normalizer(d, kappa)[None, :] + kappa[None, :] * (mu @ mu.T)
    np.fill_diagonal(logits, -np.inf)
    prob = softmax(logits, axis=1)
    pos = (np.arange(2 * n) + n) % (2 * n)
    return z, kappa, prob, prob[np.arange(2 * n), pos]


def _batch_description(batch) -> str:
    z1, _, k1, _ = batch
    n, d = z1.shape
    return (f"$N = {n}$ pairs in $d = {d}$, views 2 equal to views 1 plus 5% Gaussian noise, "
            f"every $\\kappa = {k1[0]:g}$, mean reduction, float64")


def textbook_loss_table() -> str:
    s = textbook_study()
    rows = []
    for a, (want, ref, tb) in enumerate(zip(s["oracle"], s["reference"], s["textbook"])):
        rows.append([str(a), f"{want:.6e}", f"{tb:.6e}" if tb else "0", _fmt(abs(tb - want) / want),
                     f"{ref:.6e}", _fmt(abs(ref - want) / want)])
    head = (f"A confidently matched batch ({_batch_description(s['batch'])}). Per-anchor losses: "
            "the 50-digit oracle, the textbook $-F_{a,p(a)} + \\operatorname{logsumexp}_b F_{ab}$ "
            "(SciPy's `logsumexp`, on the same logits), and {py:func}`probcon_ref.pcl_loss`, "
            "which evaluates {eq}`eq-loss-stable`; errors relative to the oracle.\n\n")
    return head + _table(["anchor $a$", "$\\ell_a$, 50 digits", "textbook", "its error",
                          "`pcl_loss`", "its error"], rows)


def textbook_gradient_table() -> str:
    s = textbook_study()
    errors = s["grad_errors"]
    zero = int(np.sum(s["textbook_w_pos"] == 0))
    n2 = len(s["w_pos"])
    rows = [
        ["$W_{a,p(a)}$, worst relative error over the anchors",
         _fmt(_worst_rel(s["textbook_w_pos"], s["w_pos"])), "(not returned)"],
        ["$\\partial L / \\partial z$, max-norm error / max-norm", _fmt(errors["textbook"][0]),
         _fmt(errors["reference"][0])],
        ["$\\partial L / \\partial \\kappa$, max-norm error / max-norm", _fmt(errors["textbook"][1]),
         _fmt(errors["reference"][1])],
    ]
    head = (f"The confidently matched batch of the derivation's step 6 ({_batch_description(s['batch'])}), "
            "against the 50-digit oracle. Textbook: the same logits and gradient formulas, with the "
            "positive's residual written $w_a (P_{a,p(a)} - 1)$ and $P$ from SciPy's `softmax`; "
            f"it is exactly 0 for {zero} of the {n2} anchors. Reference: "
            "{py:func}`probcon_ref.pcl_loss_and_grad`, which uses {eq}`eq-residual-positive`. "
            "The exact $W_{a,p(a)}$ is $w_a \\operatorname{expm1}(-\\ell_a)$, from the oracle's losses.\n\n")
    return head + _table(["quantity", "textbook", "reference"], rows)


@lru_cache(maxsize=None)
def autograd_study() -> dict:
    """Analytic gradient and naive autograd, each against the oracle, on both batches."""
    out = {}
    for which in ("ordinary", "confident"):
        batch, ref = _oracle(which)
        loss, grads = pcl_loss_and_grad(*batch)
        naive_loss, naive_grads = naive_torch_pcl(*batch)
        names = ("z1", "z2", "kappa1", "kappa2")
        want_z = np.concatenate([ref.grads["z1"], ref.grads["z2"]])
        want_k = np.concatenate([ref.grads["kappa1"], ref.grads["kappa2"]])
        mine = dict(zip(names, (np.asarray(g) for g in grads)))
        auto = dict(zip(names, naive_grads))
        out[which] = {
            "batch": batch,
            "loss": (abs(float(loss) - ref.loss) / ref.loss, abs(naive_loss - ref.loss) / ref.loss),
            "z": (_max_rel(np.concatenate([mine["z1"], mine["z2"]]), want_z),
                  _max_rel(np.concatenate([auto["z1"], auto["z2"]]), want_z)),
            "kappa": (_max_rel(np.concatenate([mine["kappa1"], mine["kappa2"]]), want_k),
                      _max_rel(np.concatenate([auto["kappa1"], auto["kappa2"]]), want_k)),
            "agreement": max(_max_rel(auto[k], mine[k]) for k in names),
            "naive_loss": naive_loss,
            "oracle_loss": ref.loss,
        }
    return out


def autograd_table() -> str:
    s = autograd_study()
    rows = []
    labels = {"loss": "loss $L$ (relative error)", "z": "$\\partial L/\\partial z$ (max-norm, relative)",
              "kappa": "$\\partial L/\\partial \\kappa$ (max-norm, relative)"}
    for which in ("ordinary", "confident"):
        for key, label in labels.items():
            mine, auto = s[which][key]
            rows.append([which, label, _fmt(mine), _fmt(auto)])
    o = s["ordinary"]["batch"]
    head = ("Errors against the 50-digit oracle. *Naive autograd*: the mean PCL as a dozen lines "
            "of float64 PyTorch (the power series of $I_\\nu$ summed in logarithms, the textbook "
            "$-F_{a,p(a)} + \\operatorname{logsumexp}_b F_{ab}$), differentiated by `backward()`. "
            f"*Ordinary*: the batch of the finite-difference check above ($N = {o[0].shape[0]}$, "
            f"$d = {o[0].shape[1]}$); *confident*: the batch of the derivation's step 6.\n\n")
    tail = (f"\nOn the ordinary batch autograd and the analytic gradient agree to "
            f"{_fmt(s['ordinary']['agreement'])} (max-norm, relative, worst block). On the "
            f"confident batch the naive loss is {s['confident']['naive_loss']:g} where the "
            f"exact one is {s['confident']['oracle_loss']:.3e}, and its gradient has lost the "
            "positive's share.\n")
    return head + _table(["batch", "quantity", "`pcl_loss_and_grad`", "naive autograd"], rows) + tail


# ---------------------------------------------------------------------------------------
# Step 7: the optimum of one anchor's loss and that of the batch loss
# ---------------------------------------------------------------------------------------

#: (d, c) of the batch-optimum study, and the other views' confidence as a multiple of kappa*.
BATCH_SETUPS = ((32, 0.9), (128, 0.95))
BATCH_PAIRS = 16
BATCH_FACTORS = (0.1, 0.3, 1.0, 2.0, 4.0)


def batch_setup(d: int, c: float, n: int = BATCH_PAIRS, seed: int = 0):
    """``n`` pairs of unit views in ``R^d``: views 1 at random directions, each view 2 at cosine
    exactly ``c`` (to rounding) from its view 1, in a random direction orthogonal to it."""
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d))
    z1 /= np.linalg.norm(z1, axis=1, keepdims=True)
    side = rng.normal(size=(n, d))
    side -= np.sum(side * z1, axis=1, keepdims=True) * z1
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    return z1, c * z1 + math.sqrt(1 - c * c) * side


class BatchColumn:
    """The summed batch loss as a function of one view's confidence ``kappa_p``, every other
    view at confidence ``others``; ``p`` is view 2 of pair 0, the positive of anchor 0.

    Only column ``p`` of the logits depends on ``kappa_p``, so the rest is computed once.
    :meth:`derivative` is ``dL/dkappa_p`` :eq:`eq-grad-kappa`, term by term in logarithms, so
    that it keeps its sign and digits where the losses themselves are far below the smallest
    float64 (:func:`log_mean_loss`): ``-(1 - P_ap)(c_ap - A_d(kappa_p))`` from the anchor of ``p``, and
    ``P_rp (c_rp - A_d(kappa_p))`` from every row ``r`` in which ``p`` is a negative.
    """

    def __init__(self, z1, z2, others: float):
        from scipy.special import logsumexp

        n, self.d = z1.shape
        mu = np.concatenate([z1, z2])
        mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
        c = mu @ mu.T
        self.p, a = n, 0
        kappa = np.full(2 * n, float(others))
        logits = _log_c_shift(self.d, kappa)[None, :] + kappa[None, :] * c
        np.fill_diagonal(logits, -np.inf)
        logits[:, self.p] = -np.inf  # column p is added per kappa_p
        rows = np.array([r for r in range(2 * n) if r != self.p])  # anchor a = 0 first
        self.cos = c[rows, self.p]  # c_rp; the first is c_ap
        self.rest = logsumexp(logits[rows], axis=1)  # log sum over b not in {r, p}

    def derivative(self, kappa_p, *, scaled: bool = True):
        """``dL/dkappa_p`` (summed loss) at each ``kappa_p``; divided by the largest term's
        magnitude when ``scaled`` (sign and root unchanged)."""
        k = np.atleast_1d(np.asarray(kappa_p, dtype=np.float64))[:, None]
        column = _log_c_shift(self.d, k) + k * self.cos[None, :]  # F_rp
        lse = np.logaddexp(self.rest[None, :], column)
        log_terms = column - lse  # log P_rp ...
        log_terms[:, 0] = self.rest[0] - lse[:, 0]  # ... and log(1 - P_ap) for the anchor of p
        factors = self.cos[None, :] - bessel_ratio(self.d / 2 - 1, k)
        factors[:, 0] *= -1.0
        top = np.max(log_terms, axis=1, keepdims=True) if scaled else 0.0
        out = np.sum(factors * np.exp(log_terms - top), axis=1)
        return out if np.ndim(kappa_p) else float(out[0])


def batch_optimum(d: int, c: float, others: float) -> float:
    """The zero of :meth:`BatchColumn.derivative` in ``kappa_p``: a scan from ``kappa*/10`` to
    ``1000 kappa*`` for the change of sign, then regula falsi in ``log kappa_p``."""
    column = BatchColumn(*batch_setup(d, c), others)
    star = float(inverse_bessel_ratio(d / 2 - 1, np.asarray(c)))
    grid = np.geomspace(star / 10, star * 1e3, 41)
    signs = column.derivative(grid)
    i = next(i for i in range(len(grid) - 1) if signs[i] < 0 <= signs[i + 1])
    return math.exp(_root(lambda x: column.derivative(math.exp(x)), math.log(grid[i]), math.log(grid[i + 1])))


def log_mean_loss(z1, z2, kappa: float) -> float:
    """``log L`` of the mean loss with every view at confidence ``kappa``, in logarithms, so that it
    is a number also where ``L`` itself is far below the smallest float64."""
    from scipy.special import logsumexp

    n, d = z1.shape
    mu = np.concatenate([z1, z2])
    mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    k = np.full(2 * n, float(kappa))
    logits = _log_c_shift(d, k)[None, :] + k[None, :] * (mu @ mu.T)
    np.fill_diagonal(logits, -np.inf)
    rows, pos = np.arange(2 * n), (np.arange(2 * n) + n) % (2 * n)
    log_all = logsumexp(logits, axis=1)
    logits[rows, pos] = -np.inf
    log_miss = logsumexp(logits, axis=1) - log_all  # log(1 - P_{a,p(a)})
    # loss_a = -log(1 - exp(log_miss)): log loss_a = log(-log1p(-e^x)), which is x for tiny e^x
    tiny = log_miss < -30
    safe = np.where(tiny, -30.0, log_miss)
    log_loss = np.where(tiny, log_miss, np.log(-np.log1p(-np.exp(safe))))
    return float(logsumexp(log_loss) - math.log(2 * n))


@lru_cache(maxsize=None)
def batch_optimum_study() -> list[dict]:
    rows = []
    for d, c in BATCH_SETUPS:
        star = float(inverse_bessel_ratio(d / 2 - 1, np.asarray(c)))
        z1, z2 = batch_setup(d, c)
        for f in BATCH_FACTORS:
            others = f * star
            best = batch_optimum(d, c, others)
            k = np.full(BATCH_PAIRS, others)
            rows.append({"d": d, "c": c, "star": star, "factor": f, "others": others, "batch": best,
                         "loss": float(pcl_loss(z1, z2, k, k)), "log_loss": log_mean_loss(z1, z2, others)})
    return rows


def batch_optimum_table() -> str:
    rows = []
    for r in batch_optimum_study():
        exact = f"$e^{{{r['log_loss']:.0f}}}$"
        rows.append([str(r["d"]), f"{r['c']:g}", f"{r['star']:.5g}", f"{r['others']:.4g}",
                     f"{r['batch']:.5g}", f"{r['batch'] / r['star']:.4f}",
                     f"{r['loss']:.2e}" if r["loss"] else "0 (underflow)", exact])
    head = (f"$N = {BATCH_PAIRS}$ pairs; views 1 at random directions, each view 2 at cosine "
            "exactly $c$ from its view 1; the view whose confidence $\\kappa_p$ varies is view 2 "
            "of pair 0, every other view has confidence $\\bar\\kappa$. Optimum of the anchor's "
            "loss: $\\kappa^* = A_d^{-1}(c)$ ({py:func}`~probcon_ref.special.inverse_bessel_ratio`). "
            "Optimum of the batch loss: the zero of $\\partial L/\\partial\\kappa_p$ "
            "{eq}`eq-dbatch-dkappa`, evaluated term by term in logarithms with the package's "
            "$\\log C_d$ and $A_d$, so that it stays exact where the losses underflow. Last two "
            "columns: the mean loss with every view at $\\bar\\kappa$, from "
            "{py:func}`probcon_ref.pcl_loss` and, in logarithms, exactly.\n\n")
    return head + _table(["$d$", "$c$", "$\\kappa^*$", "$\\bar\\kappa$", "batch optimum of $\\kappa_p$",
                          "ratio to $\\kappa^*$", "mean loss, float64", "mean loss, exact"], rows)


GENERATORS = {
    "logit_large_kappa_table": logit_large_kappa_table,
    "large_confidence_table": large_confidence_table,
    "large_kappa_note": large_kappa_note,
    "textbook_loss_table": textbook_loss_table,
    "textbook_gradient_table": textbook_gradient_table,
    "autograd_table": autograd_table,
    "batch_optimum_table": batch_optimum_table,
}
