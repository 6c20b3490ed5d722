"""The figures of ``probcon-ref experiment``, as PNG files beside the report.

Each figure is drawn from the summary the command measured (and, for the scatter plots and
image grids, the raw arrays behind it); nothing is typed in. matplotlib is imported only
when a figure is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

DPI = 100
COLORS = {"noise": "tab:blue", "occlusion": "tab:orange", "blur": "tab:green",
          "pcl": "tab:red", "ntxent": "tab:gray", "pixels": "tab:olive"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return path.name


def fig_training(out: Path, summary: dict) -> str:
    plt = _plt()
    tr = summary["training"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = np.arange(1, len(tr["pcl"]["epoch_loss"]) + 1)
    a.plot(epochs, tr["pcl"]["epoch_loss"], color=COLORS["pcl"], label="PCL")
    a.plot(epochs, tr["ntxent"]["epoch_loss"], color=COLORS["ntxent"], label="NT-Xent")
    a.set_xlabel("epoch")
    a.set_ylabel("mean training loss")
    a.legend()
    a.set_title("training loss")
    b.plot(epochs, tr["pcl"]["epoch_mean_kappa"], color=COLORS["pcl"])
    b.set_xlabel("epoch")
    b.set_ylabel("mean kappa of the training views")
    b.set_title("PCL confidence during training")
    fig.tight_layout()
    return _save(fig, out / "training.png")


def fig_degradation(out: Path, summary: dict) -> str:
    plt = _plt()
    deg = summary["degradation"]
    s = np.asarray(deg["strengths"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for kind, st in deg["by_type"].items():
        c = COLORS.get(kind)
        rho = deg["spearman_by_type"][kind]
        a.plot(s, st["kappa_median"], "o-", color=c, label=f"{kind} (Spearman {rho:+.2f})")
        a.fill_between(s, st["kappa_q25"], st["kappa_q75"], color=c, alpha=0.15)
        b.plot(s, st["cos_to_clean_median"], "o-", color=c, label=kind)
    a.set_xlabel("degradation strength")
    a.set_ylabel("kappa (median, quartile band)")
    a.set_title(f"held-out kappa; pooled Spearman {deg['spearman_pooled']:+.2f}")
    a.legend(fontsize=8)
    b.set_xlabel("degradation strength")
    b.set_ylabel("cosine to the clean image (median)")
    b.set_title("how far each degradation moves the embedding")
    b.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "kappa_vs_degradation.png")


def fig_degradation_examples(out: Path, summary: dict, raw: dict, example_labels) -> str:
    plt = _plt()
    strengths = summary["degradation"]["strengths"]
    kinds = list(raw)
    n_ex = raw[kinds[0]]["images"].shape[0]
    n_s = len(strengths)
    fig = plt.figure(figsize=(1.05 * n_s * n_ex + 0.4 * n_ex, 1.2 * len(kinds) + 0.5))
    sub = fig.subfigures(1, n_ex, wspace=0.03, squeeze=False)[0]
    for e in range(n_ex):
        axes = sub[e].subplots(len(kinds), n_s, squeeze=False)
        for r, kind in enumerate(kinds):
            for j, s in enumerate(strengths):
                ax = axes[r, j]
                ax.imshow(raw[kind]["images"][e, j], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"kappa {raw[kind]['kappa_examples'][e, j]:.1f}", fontsize=7)
                if j == 0:
                    ax.set_ylabel(kind, fontsize=8)
                if r == len(kinds) - 1:
                    ax.set_xlabel(f"s = {s:g}", fontsize=8)
        sub[e].suptitle(f"held-out digit {example_labels[e]}", fontsize=9)
    return _save(fig, out / "degradation_examples.png")


def fig_extremes(out: Path, summary: dict, images: np.ndarray, kappa: np.ndarray, labels) -> str:
    plt = _plt()
    ext = summary["extremes"]
    cols = 6
    count = ext["count"]
    rows = max(1, math.ceil(count / cols))
    fig = plt.figure(figsize=(2 * 0.85 * cols + 0.4, 1.0 * rows + 0.5))
    sub = fig.subfigures(1, 2, wspace=0.04)
    for part, key, title in ((sub[0], "lowest", "lowest kappa"), (sub[1], "highest", "highest kappa")):
        axes = part.subplots(rows, cols, squeeze=False)
        for k, ax in enumerate(axes.ravel()):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.axis("off")
            if k < len(ext[key]):
                i = ext[key][k]
                ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"{labels[i]}: {kappa[i]:.1f}", fontsize=7)
        part.suptitle(f"{count} held-out images of {title} (label: kappa)", fontsize=9)
    return _save(fig, out / "kappa_extremes.png")


def fig_quintiles(out: Path, summary: dict) -> str:
    plt = _plt()
    q = summary["extremes"]["by_kappa_quintile"]
    fig, ax = plt.subplots(figsize=(5, 3))
    x = np.arange(len(q))
    ax.bar(x, [100 * v["classifier_error_rate"] for v in q], color=COLORS["pcl"], alpha=0.8)
    ax.set_xticks(x, [f"{v['kappa_range'][0]:.1f}-{v['kappa_range'][1]:.1f}" for v in q], fontsize=8)
    ax.set_xlabel("kappa quintile of the clean held-out images (range)")
    ax.set_ylabel("pixel classifier error (%)")
    ax.set_title("error of a pixel classifier, clean held-out images by kappa quintile", fontsize=9)
    fig.tight_layout()
    return _save(fig, out / "kappa_quintiles.png")


def fig_probe(out: Path, summary: dict) -> str:
    plt = _plt()
    p = summary["linear_probe"]
    names = [("pixels", "raw pixels"), ("ntxent", "NT-Xent encoder"), ("pcl", "PCL encoder")]
    fig, ax = plt.subplots(figsize=(5, 2.6))
    vals = [100 * p[k] for k, _ in names]
    ax.barh([n for _, n in names], vals, color=[COLORS[k] for k, _ in names])
    for i, v in enumerate(vals):
        ax.text(v - 0.5, i, f"{v:.1f}%", va="center", ha="right", color="white", fontsize=9)
    lo = max(0.0, min(vals) - 10)
    ax.set_xlim(lo, 100)
    ax.set_xlabel("held-out accuracy of a logistic-regression probe (%)")
    fig.tight_layout()
    return _save(fig, out / "linear_probe.png")


def fig_pairs(out: Path, summary: dict, pair_raw: dict) -> str:
    from ..special import inverse_bessel_ratio

    plt = _plt()
    pv = summary["kappa_vs_cosine"]
    cos, kappa = pair_raw["cos"], pair_raw["kappa"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(cos, kappa, s=5, alpha=0.35, color=COLORS["pcl"], label="held-out views (kappa of each view)")
    lo = max(0.02, float(np.min(cos)))
    grid = np.linspace(lo, 0.995, 200)
    ax.plot(grid, inverse_bessel_ratio(pv["nu"], grid), color="black",
            label=f"optimum A_d^-1(c), d = {int(2 * pv['nu'] + 2)}")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    top = max(float(np.max(kappa)) * 3, 10.0)
    ax.set_ylim(max(0.1, float(np.min(kappa)) / 3), top)
    ax.set_xlabel("cosine of the two views c")
    ax.set_ylabel("kappa")
    ax.set_title(f"Spearman(kappa, c) {pv['spearman_kappa_vs_cos']:+.2f}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, out / "kappa_vs_cosine.png")


def write_figures(out: Path, summary: dict, data, deg_raw: dict, kappa_clean, pair_raw, example_labels) -> dict:
    """All figures as PNG in ``out``; returns {name: file}."""
    images = data.x_test[:, 0].numpy()
    return {
        "training": fig_training(out, summary),
        "degradation_examples": fig_degradation_examples(out, summary, deg_raw, example_labels),
        "kappa_vs_degradation": fig_degradation(out, summary),
        "kappa_extremes": fig_extremes(out, summary, images, kappa_clean, data.y_test),
        "kappa_quintiles": fig_quintiles(out, summary),
        "linear_probe": fig_probe(out, summary),
        "kappa_vs_cosine": fig_pairs(out, summary, pair_raw),
    }
