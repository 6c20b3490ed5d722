"""Figures, text report and documentation page of ``probcon-ref experiment``.

Every number written here is read from the summary the command measured; nothing is typed in.
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


# ---------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _mets(flag: bool) -> str:
    return "met" if flag else "NOT met"


def text_report(s: dict) -> str:
    deg, probe, pv, ext = s["degradation"], s["linear_probe"], s["kappa_vs_cosine"], s["extremes"]
    q = ext["by_kappa_quintile"]
    t = s["timing_s"]
    ok = s["criteria"]
    unseen = s["config"]["degradations_unseen_in_training"]
    abl = s.get("ablation_every_degradation_in_training")
    by_class = ", ".join(f"{c}: {v:.1f}" for c, v in ext["kappa_median_by_class"].items())
    lines = [
        s["title"],
        "=" * len(s["title"]),
        f"command: {s['command']}",
        f"data: {s['data']['name']}; {s['data']['train']} train / {s['data']['held_out']} held-out images",
        f"loss in PyTorch from: {s['torch_integration']}",
        f"run time: {t['total']:.0f} s on {s['environment']['threads']} threads ("
        + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in t.items() if k != "total") + ")",
        "",
        "(a) kappa under degradation of held-out images (Spearman with strength)",
        f"    pooled over {deg['pairs_pooled']} (image, type, strength) pairs: {deg['spearman_pooled']:+.3f}"
        f"   [criterion <= -0.5: {_mets(ok['spearman_pooled_at_most_minus_0.5'])}]",
    ]
    for kind, rho in deg["spearman_by_type"].items():
        st = deg["by_type"][kind]
        lines.append(
            f"    {kind:<9} {rho:+.3f}  (mean within-image {deg['within_image_spearman_mean'][kind]:+.3f};"
            f" median kappa {st['kappa_median'][0]:.1f} -> {st['kappa_median'][-1]:.1f};"
            f" cosine to clean {st['cos_to_clean_median'][-1]:.3f} at strength {deg['strengths'][-1]:g})"
            + ("  [never seen in training]" if kind in unseen else "")
        )
    if abl is not None:
        lines.append(
            f"    ablation, every type in training: pooled {abl['spearman_pooled']:+.3f}; "
            + ", ".join(f"{k} {v:+.3f}" for k, v in abl["spearman_by_type"].items())
            + f"; probe {_pct(abl['linear_probe'])}"
        )
    lines += [
        "",
        f"(b) clean held-out images by kappa ({ext['count']} lowest and highest in kappa_extremes.png)",
        f"    pixel logistic-regression error, lowest kappa quintile: {_pct(q[0]['classifier_error_rate'])};"
        f" highest: {_pct(q[-1]['classifier_error_rate'])}"
        f" (all quintiles: {', '.join(_pct(v['classifier_error_rate']) for v in q)})",
        f"    Spearman(kappa, classifier probability of the true label): "
        f"{ext['spearman_kappa_vs_classifier_p_true']:+.3f}",
        f"    Spearman(kappa, typicality = mean cosine to the training images of the same class): "
        f"{ext['spearman_kappa_vs_typicality']:+.3f}",
        f"    median kappa by class: {by_class}",
        "",
        "(c) linear probe on the frozen encoder (held-out accuracy)",
        f"    PCL {_pct(probe['pcl'])}, NT-Xent {_pct(probe['ntxent'])}, raw pixels {_pct(probe['pixels'])};"
        f" PCL - NT-Xent = {probe['pcl_minus_ntxent_points']:+.2f} points"
        f"   [criterion within 2 points: {_mets(ok['probe_pcl_within_2_points_of_ntxent'])}]",
        "",
        f"(d) kappa against the cosine of two augmented views ({pv['views']} held-out views, d = {int(2 * pv['nu'] + 2)})",
        f"    Spearman(kappa, cosine) {pv['spearman_kappa_vs_cos']:+.3f};"
        f" median kappa / optimum A_d^-1(c) {pv['median_ratio_kappa_to_optimum']:.3g};"
        f" below the optimum: {_pct(pv['fraction_below_optimum'])}",
        "",
    ]
    return "\n".join(lines)


def _join(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def report_markdown(s: dict) -> str:
    """The report as a Markdown fragment (MyST), figures linked relative to its own folder.

    The documentation page ``docs/experiment.md`` includes ``docs/experiment/report.md``
    under a second-level heading, so the sections here are third-level. The sentences that
    interpret a number are chosen by the number (a sign, a threshold), so the text stays true
    when a rerun measures something else.
    """
    deg, probe, pv, ext, cfg = (s["degradation"], s["linear_probe"], s["kappa_vs_cosine"], s["extremes"],
                                s["config"])
    fig = s["figures"]
    q = ext["by_kappa_quintile"]
    t = s["timing_s"]
    aug = cfg["augment"]
    dm = cfg["degradation_max"]
    unseen = cfg["degradations_unseen_in_training"]
    abl = s.get("ablation_every_degradation_in_training")
    kinds = list(deg["spearman_by_type"])
    weakest = max(kinds, key=lambda k: deg["spearman_by_type"][k])
    strongest = min(kinds, key=lambda k: deg["spearman_by_type"][k])
    ok = s["criteria"]
    d = cfg["proj_dim"]

    def img(key, alt):
        return f"![{alt}]({fig[key]})"

    def seen(kind):
        return "no" if kind in unseen else "yes"

    rows = "\n".join(
        f"| {k} | {seen(k)} | {deg['spearman_by_type'][k]:+.3f} | {deg['within_image_spearman_mean'][k]:+.3f} | "
        f"{deg['by_type'][k]['kappa_median'][0]:.1f} | {deg['by_type'][k]['kappa_median'][-1]:.1f} | "
        f"{deg['by_type'][k]['cos_to_clean_median'][-1]:.3f} |"
        for k in kinds
    )
    qrows = "\n".join(
        f"| {i + 1} | {v['kappa_range'][0]:.1f} - {v['kappa_range'][1]:.1f} | {v['images']} | "
        f"{100 * v['classifier_error_rate']:.1f} | {v['classifier_mean_p_true']:.3f} |"
        for i, v in enumerate(q)
    )
    class_rows = " | ".join(f"{v:.1f}" for v in ext["kappa_median_by_class"].values())
    class_head = " | ".join(ext["kappa_median_by_class"])
    corr = _join(aug["corruptions"]) if aug["corruptions"] else "none"
    unseen_text = (f"{_join(unseen)} never appears in training, so it measures whether the confidence "
                   "generalises to a degradation the model has not met" if unseen else
                   "every degradation type also appears in training")

    rho_p = ext["spearman_kappa_vs_classifier_p_true"]
    rho_n = ext["spearman_kappa_vs_typicality"]
    if rho_p >= 0.2:
        b_verdict = ("On clean images the confidence agrees with the classifier: images of low `kappa` are "
                     "the ones it finds harder.")
    elif rho_p > -0.2:
        b_verdict = ("On clean images the confidence barely tracks the classifier: low `kappa` does not pick "
                     "out the images it finds hard.")
    else:
        b_verdict = ("On clean images the confidence runs against the classifier: low `kappa` goes with images "
                     "it finds easy.")
    typ_text = (f"Spearman correlation between `kappa` and typicality (the mean cosine of an image's "
                f"projection to the training images of its class): {rho_n:+.3f}.")
    if rho_n <= -0.2:
        b_why = (typ_text + " The more typical an image of its class, the lower its confidence. The loss "
                 "offers a reason. By SPEC section 4, `dL/dkappa_b = sum_a W_ab (c_ab - A_d(kappa_b))`, and in "
                 "instance discrimination every other image `a`, of the same class too, is a negative "
                 "(`W_ab > 0`). Where negatives lie closer than `A_d(kappa_b)`, the gradient lowers "
                 "`kappa_b`: a neatly written digit of a tight class sits among many near-identical "
                 "negatives and loses confidence, an unusual one stands apart and keeps it. Without "
                 "labels, the confidence measures how well a view can be told apart from other images, "
                 "which on clean images is not how legible it is.")
    else:
        b_why = typ_text
    unseen_note = ""
    for u in unseen:
        cos_end = {k: deg["by_type"][k]["cos_to_clean_median"][-1] for k in kinds}
        if u == weakest and cos_end[u] == min(cos_end.values()):
            unseen_note = (f" {u.capitalize()}, never seen in training, moves the projection furthest from the "
                           f"clean one yet lowers `kappa` least: the confidence head learned what a degraded "
                           f"view looks like from {corr}, and carries it over to {u} only in part.")
    abl_section = ""
    if abl is not None:
        abl_rows = "\n".join(
            f"| {k} | {deg['spearman_by_type'][k]:+.3f} | {abl['spearman_by_type'][k]:+.3f} | "
            f"{deg['by_type'][k]['cos_to_clean_median'][-1]:.3f} | {abl['cos_to_clean_median_by_type'][k][-1]:.3f} |"
            for k in kinds
        )
        changed = [k for k in unseen if abl["spearman_by_type"][k] > deg["spearman_by_type"][k]
                   and abl["cos_to_clean_median_by_type"][k][-1] > deg["by_type"][k]["cos_to_clean_median"][-1]]
        abl_text = ""
        if changed:
            abl_text = (f"Training on {_join(changed)} as well weakens the response to it: the encoder learns "
                        "to map those views close to their clean version (the cosine to clean stays higher), "
                        "the views agree, and by the optimality condition of SPEC section 3 they keep their "
                        "confidence. The confidence reflects the disagreement the model cannot remove, so "
                        "an augmentation used in training is, for the confidence, no longer a degradation.")
        abl_section = f"""
#### Ablation: every degradation type in training

The same PCL run with {_join(abl['train_corruptions'])} all in the training augmentation
(the command's `--ablation`, on by default): pooled Spearman **{abl['spearman_pooled']:+.3f}**,
linear probe {100 * abl['linear_probe']:.1f}%.

| type | Spearman, default | Spearman, every type in training | cosine to clean at strength {deg['strengths'][-1]:g}, default | same, every type in training |
| --- | --- | --- | --- | --- |
{abl_rows}

{abl_text}
"""

    return f"""Measured by `{s['command']}`: every number and figure below comes from that run.
All values are in `summary.json` beside this report, a short text version in `report.txt`.

Li, Xu & Hooi ([arXiv:2112.01642](https://arxiv.org/abs/2112.01642)) report that the
confidence learned with the probabilistic contrastive loss has properties that "agree with
human-like predictions". In this project's terms (SPEC section 3) the optimal confidence of a
view is `A_d^{{-1}}(c)`, increasing in the cosine `c` to its positive: views that agree earn
confidence and ambiguous ones lose it. The experiment asks whether that holds on real images:
does `kappa` fall when a held-out image is made harder to read, are the images it doubts the
ones a person would doubt, and what does the confidence cost in accuracy?

### Summary

* (a) Degraded held-out images: Spearman correlation between `kappa` and degradation strength
  **{deg['spearman_pooled']:+.3f}** pooled (target at most -0.5: {'met' if ok['spearman_pooled_at_most_minus_0.5'] else 'not met'});
  {', '.join(f"{k} {deg['spearman_by_type'][k]:+.3f}" for k in kinds)}.
* (b) Clean held-out images: Spearman correlation between `kappa` and a pixel classifier's
  probability of the true label {rho_p:+.3f}; between `kappa` and typicality within the class
  {rho_n:+.3f}.
* (c) Linear probe: PCL {100 * probe['pcl']:.1f}%, NT-Xent {100 * probe['ntxent']:.1f}%
  ({probe['pcl_minus_ntxent_points']:+.2f} points; target within 2: {'met' if ok['probe_pcl_within_2_points_of_ntxent'] else 'not met'}).
* (d) Two views: Spearman correlation between `kappa` and their cosine {pv['spearman_kappa_vs_cos']:+.3f}.

### Setup

* **Data.** The handwritten digits shipped inside scikit-learn
  ([`load_digits`](https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html):
  8x8 images, grey levels 0-16, 10 classes), so nothing is downloaded at run time.
  {s['data']['images']} images, split with a fixed seed and stratified by class into
  {s['data']['train']} for training and {s['data']['held_out']} held out. Labels are used only by
  the linear probe and the reference classifier.
* **Model.** A small convolutional encoder (three 3x3 convolutions with batch normalisation,
  one 2x2 pooling, a dense layer to {cfg['features']} features), a projection head to the
  sphere of dimension d = {d}, and for PCL a linear confidence head on the encoder features,
  `kappa = {cfg['kappa_min']:g} + exp(w . h + b)`, one `kappa` per view.
* **Views.** SimCLR-style augmentation (Chen et al., [arXiv:2002.05709](https://arxiv.org/abs/2002.05709))
  in plain PyTorch: a random affine map (rotation up to {aug['rotation_deg']:g} degrees, scale
  {aug['scale'][0]:g}-{aug['scale'][1]:g}, shift up to {aug['translate_px']:g} pixel), a brightness
  factor {aug['brightness'][0]:g}-{aug['brightness'][1]:g}, and with probability
  {aug['corrupt_prob']:g} one of the degradations below ({corr}) at a uniformly random
  strength; {unseen_text}.
* **Training.** {cfg['epochs']} epochs of batches of {cfg['batch_size']} pairs, Adam (learning rate
  {cfg['lr']:g}, cosine decay). PCL and the NT-Xent baseline (temperature {cfg['temperature']:g})
  start from the same weights and see the same views. Every `kappa` starts at
  `1/tau = {cfg['kappa_init']:g}`, where PCL is NT-Xent exactly (SPEC section 3), and the
  confidence head stays frozen for the first {cfg['warmup_epochs']} epoch(s); it then learns with a
  learning rate {cfg['conf_lr_mult']:g} times the base rate. The losses enter PyTorch through
  `{s['torch_integration']}`, whose backward is the analytic gradient of SPEC section 4.
* **Degradations** of held-out images at strength `s` in {deg['strengths']}: Gaussian noise of
  standard deviation `{dm['noise_sigma']:g} s` (images in [0, 1], clipped); a grey square of side
  `round({dm['occlusion_side_px']} s)` pixels at a random place; Gaussian blur of standard
  deviation `{dm['blur_sigma_px']:g} s` pixels. Strength 0 is the clean image.
* **Run time** {t['total']:.0f} s on {s['environment']['threads']} CPU threads, both trainings
  and the ablation included (PCL {t['train_pcl']:.0f} s, NT-Xent {t['train_ntxent']:.0f} s).

{img('training', 'training loss and mean kappa per epoch')}

### (a) Confidence under controlled degradation

Spearman correlation between `kappa` and degradation strength on the held-out images, pooled
over {deg['pairs_pooled']} (image, type, strength) pairs: **{deg['spearman_pooled']:+.3f}**
(target: at most -0.5; {'met' if ok['spearman_pooled_at_most_minus_0.5'] else 'not met'}).

| type | in training | Spearman (pooled over images) | mean within-image Spearman | median kappa, clean | median kappa, strength {deg['strengths'][-1]:g} | cosine to clean at strength {deg['strengths'][-1]:g} |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

The pooled correlation also carries the differences in `kappa` between clean images; the
within-image column removes them. The strongest response is to {strongest}, the weakest to
{weakest}. The right panel shows how far each degradation moves the projection away from the
clean image's.{unseen_note}

{img('kappa_vs_degradation', 'kappa against degradation strength')}

{img('degradation_examples', 'two held-out digits under each degradation, with kappa')}
{abl_section}
### (b) The least and the most confident held-out images

The clean held-out images with the lowest and the highest `kappa`, for the reader to judge.

{img('kappa_extremes', 'held-out digits of lowest and highest kappa')}

As a measurable stand-in for human judgement, a logistic-regression classifier on raw pixels
(trained with labels on the training part; it never sees the PCL model) is scored on each
`kappa` quintile of the clean held-out images. Spearman correlation between `kappa` and the
classifier's probability of the true label: {rho_p:+.3f}. {b_verdict}

| quintile | kappa range | images | classifier error (%) | mean probability of true label |
| --- | --- | --- | --- | --- |
{qrows}

{img('kappa_quintiles', 'classifier error by kappa quintile')}

{b_why}

Median `kappa` of the clean held-out images by class:

| {class_head} |
| {' | '.join('---' for _ in ext['kappa_median_by_class'])} |
| {class_rows} |

### (c) Linear probe: what the confidence costs

Logistic regression on the standardised, frozen encoder features of clean images, fitted on
the training part and scored on the held-out part:

| features | held-out accuracy |
| --- | --- |
| PCL encoder | {100 * probe['pcl']:.1f}% |
| NT-Xent encoder | {100 * probe['ntxent']:.1f}% |
| raw pixels | {100 * probe['pixels']:.1f}% |

PCL minus NT-Xent: {probe['pcl_minus_ntxent_points']:+.2f} points (target: within 2 points;
{'met' if ok['probe_pcl_within_2_points_of_ntxent'] else 'not met'}).

{img('linear_probe', 'linear probe accuracies')}

### (d) Confidence against the agreement of two views

Two augmented views of every held-out image; each view's `kappa` against the cosine `c` of
the pair, with the optimum `A_d^{{-1}}(c)` (`probcon_ref.special.inverse_bessel_ratio` with
`nu = d/2 - 1 = {pv['nu']:g}`). Spearman(kappa, c) = {pv['spearman_kappa_vs_cos']:+.3f}; median
ratio of `kappa` to the optimum {pv['median_ratio_kappa_to_optimum']:.3g};
{100 * pv['fraction_below_optimum']:.0f}% of the views lie below it. The optimum is where the
gradient from the view's own positive vanishes; the negatives add their own term (see (b)),
so the comparison is of the trend, `kappa` rising with `c`, more than of the level.

{img('kappa_vs_cosine', 'kappa against the cosine of two views, with the optimum')}

### Reproduce

```console
pip install -e ".[experiment,torch]"
{s['command']}
```

`--docs` writes the results into `docs/experiment/`, where this page picks them up; without
it they go to `probcon-experiment/` (or `--out DIR`). The seeds are fixed; a rerun gives the
same numbers up to the nondeterminism of multithreaded CPU arithmetic.
"""
