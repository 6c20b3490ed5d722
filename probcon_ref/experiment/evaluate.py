"""The four measurements of ``probcon-ref experiment``, on the held-out images.

(a) :func:`evaluate_degradation`, (b) :func:`evaluate_extremes` and :func:`typicality`,
(c) :func:`linear_probe`, (d) :func:`evaluate_pairs`. Each returns the numbers of the
summary (plain floats and lists) and, where a figure needs them, the raw arrays. PyTorch and
scikit-learn are imported inside the functions, so that this module imports without them.
"""

from __future__ import annotations

import numpy as np

from .stats import quantiles, spearman

QUINTILES = 5


def _unit(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _degradation_of_kind(model, x, kind, strengths, gen, u_clean, nu, examples):
    """One degradation type at every strength: its summary row and its raw arrays."""
    from ..special import inverse_bessel_ratio
    from . import core

    ks, cs, shown = [], [], []
    for s in strengths:
        xd = core.degrade(x, kind, float(s), gen)
        shown.append(xd[list(examples), 0].numpy())
        _, z, k = core.embed(model, xd)
        ks.append(k)
        cs.append(np.sum(_unit(z) * u_clean, axis=1))
    kappa = np.stack(ks, axis=1)  # (images, strengths)
    cos_med = np.median(np.stack(cs, axis=1), axis=0)
    stats = [quantiles(kappa[:, j]) for j in range(len(strengths))]
    row = {
        "kappa_mean": [st["mean"] for st in stats],
        "kappa_q25": [st["q25"] for st in stats],
        "kappa_median": [st["median"] for st in stats],
        "kappa_q75": [st["q75"] for st in stats],
        "cos_to_clean_median": [float(c) for c in cos_med],
        "optimal_kappa_at_median_cos": [
            float(inverse_bessel_ratio(nu, np.asarray(min(float(c), 1 - 1e-6)))) for c in cos_med
        ],
        "fraction_images_kappa_lower_at_max_than_clean": float(np.mean(kappa[:, -1] < kappa[:, 0])),
    }
    raw = {"kappa": kappa, "images": np.stack(shown, axis=1),  # (examples, strengths, 8, 8)
           "kappa_examples": kappa[list(examples)]}
    return row, raw


def evaluate_degradation(model, x, strengths, seed: int, nu: float, examples=(0,)):
    """(a) kappa of every held-out image under each degradation at each strength.

    Returns the summary and, per type, the kappa array (images x strengths) and the
    degraded images of the ``examples`` (for the figure).
    """
    import torch

    from . import core

    gen = torch.Generator().manual_seed(seed)
    _, z_clean, _ = core.embed(model, x)
    u_clean = _unit(z_clean)
    out = {"strengths": list(strengths), "by_type": {}, "spearman_by_type": {},
           "within_image_spearman_mean": {}}
    pooled_k, pooled_s, raw = [], [], {}
    for kind in core.DEGRADATIONS:
        out["by_type"][kind], raw[kind] = _degradation_of_kind(model, x, kind, strengths, gen, u_clean,
                                                               nu, examples)
        kappa = raw[kind]["kappa"]
        s_grid = np.broadcast_to(np.asarray(strengths, dtype=np.float64), kappa.shape)
        within = np.asarray([spearman(row, strengths) for row in kappa])
        out["spearman_by_type"][kind] = spearman(kappa.ravel(), s_grid.ravel())
        out["within_image_spearman_mean"][kind] = float(within[np.isfinite(within)].mean()) \
            if np.isfinite(within).any() else float("nan")
        pooled_k.append(kappa.ravel())
        pooled_s.append(s_grid.ravel())
    out["spearman_pooled"] = spearman(np.concatenate(pooled_k), np.concatenate(pooled_s))
    out["pairs_pooled"] = int(sum(len(k) for k in pooled_k))
    return out, raw


def evaluate_extremes(kappa, y, pixel_proba, count: int):
    """(b) lowest and highest kappa among clean held-out images; classifier error by quintile."""
    order = np.argsort(kappa, kind="stable")
    count = min(count, len(order) // 2)
    p_true = pixel_proba[np.arange(len(y)), y]
    wrong = np.argmax(pixel_proba, axis=1) != y
    quint = []
    for members in np.array_split(order, QUINTILES):  # equal-count groups by rank of kappa
        quint.append({
            "kappa_range": [float(kappa[members].min()), float(kappa[members].max())],
            "images": int(len(members)),
            "classifier_error_rate": float(wrong[members].mean()),
            "classifier_mean_p_true": float(p_true[members].mean()),
        })
    return {
        "count": int(count),
        "lowest": [int(i) for i in order[:count]],
        "highest": [int(i) for i in order[::-1][:count]],
        "by_kappa_quintile": quint,
        "spearman_kappa_vs_classifier_p_true": spearman(kappa, p_true),
        "classifier_errors_total": int(wrong.sum()),
    }


def typicality(kappa, y_test, z_test, y_train, z_train) -> dict:
    """How typical of its class each clean held-out image is, against its kappa.

    Typicality: the mean cosine of the image's projection to the projections of the training
    images of its class. Instance discrimination treats those images as negatives, and a
    negative ``a`` with ``c_ab > A_d(kappa_b)`` pushes ``kappa_b`` down (the contract, section :ref:`4 <contract-gradient>`), so
    the typical members of a tight class are expected to get the lower kappa.
    """
    cos = _unit(z_test) @ _unit(z_train).T
    same = y_test[:, None] == y_train[None, :]
    typ = np.sum(np.where(same, cos, 0.0), axis=1) / np.maximum(same.sum(axis=1), 1)
    classes = sorted(set(int(c) for c in y_test))
    return {
        "spearman_kappa_vs_typicality": spearman(kappa, typ),
        "kappa_median_by_class": {str(c): float(np.median(kappa[y_test == c])) for c in classes},
    }


def linear_probe(train_features, y_train, test_features, y_test, seed: int):
    """(c) logistic regression on standardised frozen features: (held-out accuracy, classifier)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    clf.fit(train_features, y_train)
    return float(clf.score(test_features, y_test)), clf


def _kappa_by_cosine_bin(cos, kappa) -> list[dict]:
    """Median kappa in ten equal bins of the cosine, from min(0, lowest cosine) to 1."""
    edges = np.linspace(min(0.0, float(cos.min())), 1.0, 11)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (cos >= lo) & (cos < hi) if hi < 1.0 else (cos >= lo)
        if m.any():
            bins.append({"cos_range": [float(lo), float(hi)], "views": int(m.sum()),
                         "kappa_median": float(np.median(kappa[m]))})
    return bins


def evaluate_pairs(model, x, aug_cfg, seed: int, nu: float):
    """(d) two augmented views of each held-out image: their cosine and each view's kappa."""
    import torch

    from ..special import inverse_bessel_ratio
    from . import core

    gen = torch.Generator().manual_seed(seed)
    v1 = core.augment(x, aug_cfg, gen)
    v2 = core.augment(x, aug_cfg, gen)
    _, z1, k1 = core.embed(model, v1)
    _, z2, k2 = core.embed(model, v2)
    c = np.sum(_unit(z1) * _unit(z2), axis=1)
    cos = np.concatenate([c, c])
    kappa = np.concatenate([k1, k2])
    pos = cos > 0
    opt = np.full_like(cos, np.nan)
    opt[pos] = inverse_bessel_ratio(nu, np.minimum(cos[pos], 1 - 1e-9))
    summary = {
        "nu": nu,
        "views": int(len(cos)),
        "cos_quantiles_10_50_90": [float(v) for v in np.quantile(c, [0.1, 0.5, 0.9])],
        "kappa_quantiles_10_50_90": [float(v) for v in np.quantile(kappa, [0.1, 0.5, 0.9])],
        "spearman_kappa_vs_cos": spearman(kappa, cos),
        "median_ratio_kappa_to_optimum": float(np.median(kappa[pos] / opt[pos])) if pos.any() else float("nan"),
        "fraction_below_optimum": float(np.mean(kappa[pos] < opt[pos])) if pos.any() else float("nan"),
        "bins": _kappa_by_cosine_bin(cos, kappa),
    }
    return summary, {"cos": cos, "kappa": kappa}
