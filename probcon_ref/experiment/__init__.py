"""``probcon-ref experiment``: does the learned confidence agree with human judgement?

Trains a small CNN on the handwritten digits that ship inside scikit-learn twice, with the
probabilistic contrastive loss (PCL, with a confidence head giving ``kappa`` per view) and
with NT-Xent, from the same initial weights on the same augmented views, then measures on
held-out images:

(a) ``kappa`` under controlled degradation (noise, occlusion, blur at several strengths):
    Spearman correlation between ``kappa`` and strength, pooled and per type;
(b) the held-out images of lowest and highest ``kappa``, as an image grid, with the error
    rate of an independent supervised classifier along ``kappa``;
(c) a linear probe (logistic regression) on the frozen encoder of both models;
(d) ``kappa`` against the cosine of two views, next to the optimum ``A_d^{-1}(c)``.

Results go to ``--out`` (default ``probcon-experiment/``): ``summary.json``, the figures as
PNG, ``report.txt`` and ``report.md`` (the same with the figures, for the documentation).
``--docs`` writes them to ``docs/experiment/`` instead, which ``docs/experiment.md``
includes. Heavy imports (PyTorch, scikit-learn, matplotlib, tqdm: the ``experiment`` extra)
happen only when the command runs.

The defaults (seed 0) finish in a few minutes on 2 CPU cores, three trainings included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_OUT = "probcon-experiment"
DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
EXTREME_COUNT = 24
QUINTILES = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output")
    g.add_argument("--out", default=DEFAULT_OUT, help="results folder (default: %(default)s)")
    g.add_argument("--docs", nargs="?", const="docs", default=None, metavar="DOCS_DIR",
                   help="write the results to DOCS_DIR/experiment/, where the documentation page "
                        "includes them (DOCS_DIR defaults to ./docs); overrides --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    t = parser.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=150, help="epochs per model (default: %(default)s)")
    t.add_argument("--batch-size", type=int, default=256, help="pairs per batch (default: %(default)s)")
    t.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default: %(default)s)")
    t.add_argument("--conf-lr-mult", type=float, default=10.0,
                   help="learning-rate multiplier of the confidence head (default: %(default)s)")
    t.add_argument("--warmup-epochs", type=int, default=10,
                   help="PCL epochs with the confidence head frozen at kappa = 1/temperature, which "
                        "is NT-Xent exactly (default: %(default)s)")
    t.add_argument("--proj-dim", type=int, default=16,
                   help="projection dimension d, the sphere of the loss (default: %(default)s)")
    t.add_argument("--width", type=int, default=16, help="channels of the first convolution (default: %(default)s)")
    t.add_argument("--temperature", type=float, default=0.2,
                   help="NT-Xent temperature; PCL starts every kappa at 1/temperature (default: %(default)s)")
    t.add_argument("--corrupt-prob", type=float, default=0.5,
                   help="probability that a training view is also degraded (default: %(default)s)")
    t.add_argument("--train-corruptions", default="noise,occlusion",
                   help="degradation types used as training augmentation, comma-separated, or 'none'; "
                        "the others are seen only at evaluation (default: %(default)s)")
    t.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True,
                   help="also train PCL with every degradation type in the augmentation and measure "
                        "(a) again (default: on)")
    d = parser.add_argument_group("data and evaluation")
    d.add_argument("--seed", type=int, default=0, help="seed of the split, weights and views (default: %(default)s)")
    d.add_argument("--test-fraction", type=float, default=0.25,
                   help="held-out fraction, stratified by class (default: %(default)s)")
    d.add_argument("--limit", type=int, default=None, help="use only this many images (quick runs)")
    d.add_argument("--strengths", default=",".join(str(s) for s in DEFAULT_STRENGTHS),
                   help="degradation strengths in [0, 1] (default: %(default)s)")
    d.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads (default: %(default)s)")


# ---------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------


def rankdata(a) -> np.ndarray:
    """Ranks from 1, ties given the average of the ranks they span."""
    a = np.asarray(a, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    return ((end - counts + 1 + end) / 2.0)[inverse]


def spearman(x, y) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks (NaN if one is constant)."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(np.sum(rx * rx)) * float(np.sum(ry * ry)))
    return float(np.sum(rx * ry) / denom) if denom > 0 else float("nan")


def _f(x) -> float:
    return float(x)


def _finite_or_null(obj):
    """The summary as strict JSON: NaN or infinity (a constant kappa, say) becomes null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def _quantiles(a) -> dict:
    q = np.quantile(a, [0.25, 0.5, 0.75])
    return {"mean": _f(np.mean(a)), "q25": _f(q[0]), "median": _f(q[1]), "q75": _f(q[2])}


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


def _unit(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def evaluate_degradation(core, model, x, strengths, seed: int, nu: float, examples=(0,)):
    """(a) kappa of every held-out image under each degradation at each strength.

    Returns the summary and, per type, the kappa array (images x strengths) and the
    degraded images of the ``examples`` (for the figure).
    """
    import torch

    from ..special import inverse_bessel_ratio

    gen = torch.Generator().manual_seed(seed)
    _, z_clean, _ = core.embed(model, x)
    u_clean = _unit(z_clean)
    out = {"strengths": list(strengths), "by_type": {}, "spearman_by_type": {},
           "within_image_spearman_mean": {}}
    pooled_k, pooled_s, raw = [], [], {}
    for kind in core.DEGRADATIONS:
        ks, cs, shown = [], [], []
        for s in strengths:
            xd = core.degrade(x, kind, float(s), gen)
            shown.append(xd[list(examples), 0].numpy())
            _, z, k = core.embed(model, xd)
            ks.append(k)
            cs.append(np.sum(_unit(z) * u_clean, axis=1))
        kappa = np.stack(ks, axis=1)  # (images, strengths)
        cos = np.stack(cs, axis=1)
        raw[kind] = {"kappa": kappa, "images": np.stack(shown, axis=1),  # (examples, strengths, 8, 8)
                     "kappa_examples": kappa[list(examples)]}
        s_grid = np.broadcast_to(np.asarray(strengths, dtype=np.float64), kappa.shape)
        rho = spearman(kappa.ravel(), s_grid.ravel())
        within = np.asarray([spearman(row, strengths) for row in kappa])
        cos_med = np.median(cos, axis=0)
        stats = [_quantiles(kappa[:, j]) for j in range(len(strengths))]
        out["by_type"][kind] = {
            "kappa_mean": [st["mean"] for st in stats],
            "kappa_q25": [st["q25"] for st in stats],
            "kappa_median": [st["median"] for st in stats],
            "kappa_q75": [st["q75"] for st in stats],
            "cos_to_clean_median": [_f(c) for c in cos_med],
            "optimal_kappa_at_median_cos": [
                _f(inverse_bessel_ratio(nu, np.asarray(min(float(c), 1 - 1e-6)))) for c in cos_med
            ],
            "fraction_images_kappa_lower_at_max_than_clean": _f(np.mean(kappa[:, -1] < kappa[:, 0])),
        }
        out["spearman_by_type"][kind] = rho
        out["within_image_spearman_mean"][kind] = _f(within[np.isfinite(within)].mean()) \
            if np.isfinite(within).any() else float("nan")
        pooled_k.append(kappa.ravel())
        pooled_s.append(s_grid.ravel())
    out["spearman_pooled"] = spearman(np.concatenate(pooled_k), np.concatenate(pooled_s))
    out["pairs_pooled"] = int(sum(len(k) for k in pooled_k))
    return out, raw


def evaluate_extremes(kappa, y, x_test_np, pixel_proba, count: int):
    """(b) lowest and highest kappa among clean held-out images; classifier error by quintile."""
    order = np.argsort(kappa, kind="stable")
    count = min(count, len(order) // 2)
    p_true = pixel_proba[np.arange(len(y)), y]
    wrong = np.argmax(pixel_proba, axis=1) != y
    quint = []
    for members in np.array_split(order, QUINTILES):  # equal-count groups by rank of kappa
        quint.append({
            "kappa_range": [_f(kappa[members].min()), _f(kappa[members].max())],
            "images": int(len(members)),
            "classifier_error_rate": _f(wrong[members].mean()),
            "classifier_mean_p_true": _f(p_true[members].mean()),
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
    negative ``a`` with ``c_ab > A_d(kappa_b)`` pushes ``kappa_b`` down (SPEC section 4), so
    the typical members of a tight class are expected to get the lower kappa.
    """
    cos = _unit(z_test) @ _unit(z_train).T
    same = y_test[:, None] == y_train[None, :]
    typ = np.sum(np.where(same, cos, 0.0), axis=1) / np.maximum(same.sum(axis=1), 1)
    classes = sorted(set(int(c) for c in y_test))
    return {
        "spearman_kappa_vs_typicality": spearman(kappa, typ),
        "kappa_median_by_class": {str(c): _f(np.median(kappa[y_test == c])) for c in classes},
    }


def linear_probe(train_features, y_train, test_features, y_test, seed: int):
    """(c) logistic regression on standardised frozen features: (held-out accuracy, classifier)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    clf.fit(train_features, y_train)
    return float(clf.score(test_features, y_test)), clf


def evaluate_pairs(core, model, x, aug_cfg, seed: int, nu: float):
    """(d) two augmented views of each held-out image: their cosine and each view's kappa."""
    import torch

    from ..special import inverse_bessel_ratio

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
    edges = np.linspace(min(0.0, float(cos.min())), 1.0, 11)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (cos >= lo) & (cos < hi) if hi < 1.0 else (cos >= lo)
        if m.any():
            bins.append({"cos_range": [_f(lo), _f(hi)], "views": int(m.sum()),
                         "kappa_median": _f(np.median(kappa[m]))})
    summary = {
        "nu": nu,
        "views": int(len(cos)),
        "cos_quantiles_10_50_90": [_f(v) for v in np.quantile(c, [0.1, 0.5, 0.9])],
        "kappa_quantiles_10_50_90": [_f(v) for v in np.quantile(kappa, [0.1, 0.5, 0.9])],
        "spearman_kappa_vs_cos": spearman(kappa, cos),
        "median_ratio_kappa_to_optimum": _f(np.median(kappa[pos] / opt[pos])) if pos.any() else float("nan"),
        "fraction_below_optimum": _f(np.mean(kappa[pos] < opt[pos])) if pos.any() else float("nan"),
        "bins": bins,
    }
    return summary, {"cos": cos, "kappa": kappa}


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------


def _parse_strengths(text: str) -> list[float]:
    vals = [float(v) for v in text.split(",") if v.strip()]
    if len(vals) < 2 or any(not 0.0 <= v <= 1.0 for v in vals) or sorted(set(vals)) != vals:
        raise ValueError("--strengths: at least two increasing, distinct values in [0, 1]")
    return vals


def _parse_corruptions(text: str, known) -> tuple[str, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    kinds = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [k for k in kinds if k not in known]
    if bad:
        raise ValueError(f"--train-corruptions: unknown {bad}; known: {list(known)}")
    return kinds


def _command_line(args) -> str:
    parts = ["probcon-ref", "experiment"]
    if args.docs is not None:
        parts.append("--docs")
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    ref = vars(defaults.parse_args([]))
    for key, value in vars(args).items():
        if key in ("out", "docs", "command", "_module", "no_progress") or key not in ref:
            continue
        if value != ref[key]:
            parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)


def _example_images(y, digits=(2, 7)) -> list[int]:
    """The first held-out image of each of ``digits`` (or of any class), for the example figure."""
    picked = []
    for dgt in digits:
        hits = np.flatnonzero(y == dgt)
        picked.append(int(hits[0]) if len(hits) else len(picked))
    return picked


def run(args) -> int:
    t_start = time.perf_counter()
    try:
        import torch

        from . import core
        from . import report
    except ImportError as exc:  # the optional dependencies of the command
        print(f"probcon-ref experiment needs the 'experiment' extra and PyTorch: {exc}", file=sys.stderr)
        return 2
    try:
        strengths = _parse_strengths(args.strengths)
        corruptions = _parse_corruptions(args.train_corruptions, core.DEGRADATIONS)
    except ValueError as exc:
        print(f"probcon-ref experiment: {exc}", file=sys.stderr)
        return 2

    out = Path(args.docs) / "experiment" if args.docs is not None else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, args.threads))
    progress = not args.no_progress
    try:
        timing = {}
        t = time.perf_counter()
        data = core.load_data(args.seed, args.test_fraction, args.limit)
        timing["data"] = time.perf_counter() - t

        aug = core.AugmentConfig(corrupt_prob=args.corrupt_prob, corruptions=corruptions)
        cfg = core.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               proj_dim=args.proj_dim, width=args.width, temperature=args.temperature,
                               conf_lr_mult=args.conf_lr_mult, warmup_epochs=args.warmup_epochs,
                               augment=aug)
        losses = core.torch_losses()
        if progress:
            print(f"loss from {losses.source}; {len(data.y_train)} train / {len(data.y_test)} held-out images",
                  file=sys.stderr)
        pcl = core.train("pcl", data.x_train, cfg, losses, args.seed, progress)
        timing["train_pcl"] = pcl.seconds
        ntx = core.train("ntxent", data.x_train, cfg, losses, args.seed, progress)
        timing["train_ntxent"] = ntx.seconds
        unseen = [k for k in core.DEGRADATIONS if k not in corruptions]
        abl = None
        if args.ablation and unseen and args.corrupt_prob > 0:
            aug_all = dataclasses.replace(aug, corruptions=core.DEGRADATIONS)
            abl = core.train("pcl", data.x_train, dataclasses.replace(cfg, augment=aug_all), losses,
                             args.seed, progress, label="train pcl, every degradation in training")
            timing["train_pcl_ablation"] = abl.seconds

        t = time.perf_counter()
        nu = args.proj_dim / 2.0 - 1.0
        examples = _example_images(data.y_test)
        degradation, deg_raw = evaluate_degradation(core, pcl.model, data.x_test, strengths,
                                                    args.seed + 100, nu, examples)
        h_tr_p, _, _ = core.embed(pcl.model, data.x_train)
        h_te_p, _, kappa_clean = core.embed(pcl.model, data.x_test)
        h_tr_n, _, _ = core.embed(ntx.model, data.x_train)
        h_te_n, _, _ = core.embed(ntx.model, data.x_test)
        px_tr = data.x_train.reshape(len(data.y_train), -1).numpy()
        px_te = data.x_test.reshape(len(data.y_test), -1).numpy()
        acc_p, _ = linear_probe(h_tr_p, data.y_train, h_te_p, data.y_test, args.seed)
        acc_n, _ = linear_probe(h_tr_n, data.y_train, h_te_n, data.y_test, args.seed)
        acc_px, clf_px = linear_probe(px_tr, data.y_train, px_te, data.y_test, args.seed)
        extremes = evaluate_extremes(kappa_clean, data.y_test, px_te, clf_px.predict_proba(px_te),
                                     EXTREME_COUNT)
        _, z_tr_p, _ = core.embed(pcl.model, data.x_train)
        _, z_te_p, _ = core.embed(pcl.model, data.x_test)
        extremes.update(typicality(kappa_clean, data.y_test, z_te_p, data.y_train, z_tr_p))
        extremes["lowest_items"] = [
            {"dataset_index": int(data.test_index[i]), "label": int(data.y_test[i]), "kappa": _f(kappa_clean[i])}
            for i in extremes["lowest"]]
        extremes["highest_items"] = [
            {"dataset_index": int(data.test_index[i]), "label": int(data.y_test[i]), "kappa": _f(kappa_clean[i])}
            for i in extremes["highest"]]
        pairs, pair_raw = evaluate_pairs(core, pcl.model, data.x_test, aug, args.seed + 200, nu)
        ablation = None
        if abl is not None:
            abl_deg, _ = evaluate_degradation(core, abl.model, data.x_test, strengths, args.seed + 100, nu)
            h_tr_a, _, _ = core.embed(abl.model, data.x_train)
            h_te_a, _, _ = core.embed(abl.model, data.x_test)
            ablation = {
                "train_corruptions": list(core.DEGRADATIONS),
                "spearman_pooled": abl_deg["spearman_pooled"],
                "spearman_by_type": abl_deg["spearman_by_type"],
                "within_image_spearman_mean": abl_deg["within_image_spearman_mean"],
                "kappa_median_by_type": {k: v["kappa_median"] for k, v in abl_deg["by_type"].items()},
                "cos_to_clean_median_by_type": {k: v["cos_to_clean_median"] for k, v in abl_deg["by_type"].items()},
                "linear_probe": linear_probe(h_tr_a, data.y_train, h_te_a, data.y_test, args.seed)[0],
                "final_epoch_loss": abl.epoch_loss[-1],
            }
        timing["evaluation"] = time.perf_counter() - t

        summary = {
            "title": "Learned confidence against human judgement of ambiguity (probcon-ref experiment)",
            "command": _command_line(args),
            "torch_integration": losses.source,
            "environment": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
            },
            "config": {
                "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                "conf_lr_mult": args.conf_lr_mult, "warmup_epochs": args.warmup_epochs,
                "proj_dim": args.proj_dim, "nu": nu,
                "width": args.width, "features": cfg.features, "temperature": args.temperature,
                "kappa_init": 1.0 / args.temperature, "kappa_min": cfg.kappa_min,
                "augment": {
                    "rotation_deg": aug.rotation_deg, "scale": list(aug.scale),
                    "translate_px": aug.translate_px, "brightness": list(aug.brightness),
                    "corrupt_prob": aug.corrupt_prob, "corruptions": list(aug.corruptions),
                },
                "degradations_unseen_in_training": unseen,
                "degradation_max": {
                    "noise_sigma": core.NOISE_SIGMA_MAX, "occlusion_side_px": core.OCCLUSION_SIDE_MAX,
                    "blur_sigma_px": core.BLUR_SIGMA_MAX,
                },
            },
            "data": {
                "name": "scikit-learn digits (sklearn.datasets.load_digits), 8x8 grey levels 0-16",
                "images": int(len(data.y_train) + len(data.y_test)),
                "train": int(len(data.y_train)), "held_out": int(len(data.y_test)),
                "test_fraction": args.test_fraction, "limit": args.limit,
            },
            "training": {
                "pcl": {"epoch_loss": pcl.epoch_loss, "epoch_mean_kappa": pcl.epoch_kappa},
                "ntxent": {"epoch_loss": ntx.epoch_loss},
            },
            "degradation": degradation,
            "extremes": extremes,
            "linear_probe": {
                "pcl": acc_p, "ntxent": acc_n, "pixels": acc_px,
                "pcl_minus_ntxent_points": 100.0 * (acc_p - acc_n),
            },
            "kappa_vs_cosine": pairs,
            "ablation_every_degradation_in_training": ablation,
            "clean_kappa_quantiles_10_50_90": [_f(v) for v in np.quantile(kappa_clean, [0.1, 0.5, 0.9])],
        }
        summary["criteria"] = {
            "spearman_pooled_at_most_minus_0.5": bool(degradation["spearman_pooled"] <= -0.5),
            "probe_pcl_within_2_points_of_ntxent": bool(abs(summary["linear_probe"]["pcl_minus_ntxent_points"]) <= 2.0),
        }

        t = time.perf_counter()
        figures = report.write_figures(out, summary, data, deg_raw, kappa_clean, pair_raw,
                                       [int(data.y_test[i]) for i in examples])
        timing["figures"] = time.perf_counter() - t
        timing["total"] = time.perf_counter() - t_start
        summary["figures"] = figures
        summary["timing_s"] = {k: round(v, 2) for k, v in timing.items()}
        (out / "summary.json").write_text(json.dumps(_finite_or_null(summary), indent=1) + "\n")
        text = report.text_report(summary)
        (out / "report.txt").write_text(text)
        (out / "report.md").write_text(report.report_markdown(summary))
        print(text)
        print(f"results written to {out}")
    finally:
        torch.set_num_threads(threads_before)
    return 0
