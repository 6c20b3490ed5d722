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

This module is the command: its options, and ``run`` as a sequence of named steps (the
training configuration, the trainings, the measurements, the summary, the artefacts). The
other modules hold what the steps use: ``core`` the data, degradations, models and
training; ``evaluate`` the measurements (a)-(d), with ``stats``; ``figures`` the PNG
figures; ``report`` the text report and the documentation page, filled from the Markdown
templates in ``templates/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import evaluate as ev
from .stats import finite_or_null

if TYPE_CHECKING:
    from .core import Digits, TorchLosses, TrainConfig, TrainResult

DEFAULT_OUT = "probcon-experiment"
DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
EXTREME_COUNT = 24
TITLE = "Learned confidence against human judgement of ambiguity (probcon-ref experiment)"


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``probcon-ref experiment``, in three groups: output, training, data and evaluation."""
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


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------


def run(args) -> int:
    """Run the experiment with the parsed ``args``; 0 on success.

    The steps: load the data, train PCL, NT-Xent and the ablation, measure (a)-(d) on the
    held-out images, summarise, and write the figures, ``summary.json``, ``report.txt`` and
    ``report.md``. Returns 2, with a message, when an optional dependency is missing or an
    option is invalid. PyTorch's thread count is set for the run and restored afterwards.
    """
    t_start = time.perf_counter()
    try:
        import torch

        from . import core
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
    try:
        timing = {}
        data = _timed(timing, "data", lambda: core.load_data(args.seed, args.test_fraction, args.limit))
        cfg = _train_config(args, corruptions)
        losses = core.torch_losses()
        trained = _train_models(args, data, cfg, losses, timing)
        measured = _timed(timing, "evaluation", lambda: _evaluate_models(args, data, cfg, trained, strengths))
        summary = _build_summary(args, data, cfg, losses, trained, measured)
        _write_artefacts(out, summary, data, measured, timing, t_start)
    finally:
        torch.set_num_threads(threads_before)
    return 0


def _timed(timing: dict, key: str, step):
    """``step()``, its wall time stored as ``timing[key]``."""
    t = time.perf_counter()
    result = step()
    timing[key] = time.perf_counter() - t
    return result


def _unseen(cfg: TrainConfig) -> list[str]:
    """The degradation types that the training augmentation leaves out."""
    from . import core

    return [k for k in core.DEGRADATIONS if k not in cfg.augment.corruptions]


def _train_config(args, corruptions) -> TrainConfig:
    """The training configuration (augmentation included) from the options."""
    from . import core

    aug = core.AugmentConfig(corrupt_prob=args.corrupt_prob, corruptions=corruptions)
    return core.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            proj_dim=args.proj_dim, width=args.width, temperature=args.temperature,
                            conf_lr_mult=args.conf_lr_mult, warmup_epochs=args.warmup_epochs,
                            augment=aug)


@dataclass
class _Trained:
    """The trained models: PCL, NT-Xent, and the PCL ablation (every degradation in training)."""

    pcl: TrainResult
    ntxent: TrainResult
    ablation: TrainResult | None


def _train_models(args, data: Digits, cfg: TrainConfig, losses: TorchLosses, timing: dict) -> _Trained:
    """Train PCL and NT-Xent from the same weights on the same views, then the ablation.

    The ablation (PCL with every degradation type in the augmentation) runs when ``--ablation``
    is on and some type is otherwise unseen in training.
    """
    from . import core

    progress = not args.no_progress
    if progress:
        print(f"loss from {losses.source}; {len(data.y_train)} train / {len(data.y_test)} held-out images",
              file=sys.stderr)
    pcl = core.train("pcl", data.x_train, cfg, losses, args.seed, progress)
    timing["train_pcl"] = pcl.seconds
    ntx = core.train("ntxent", data.x_train, cfg, losses, args.seed, progress)
    timing["train_ntxent"] = ntx.seconds
    abl = None
    if args.ablation and _unseen(cfg) and args.corrupt_prob > 0:
        aug_all = dataclasses.replace(cfg.augment, corruptions=core.DEGRADATIONS)
        abl = core.train("pcl", data.x_train, dataclasses.replace(cfg, augment=aug_all), losses,
                         args.seed, progress, label="train pcl, every degradation in training")
        timing["train_pcl_ablation"] = abl.seconds
    return _Trained(pcl, ntx, abl)


@dataclass
class _Measurements:
    """What the evaluation measures, for the summary, and the raw arrays the figures need."""

    degradation: dict
    degradation_raw: dict  # per type: kappa (images x strengths), the example images and their kappa
    examples: list[int]  # held-out rows of the example images
    kappa_clean: np.ndarray  # kappa of every clean held-out image
    extremes: dict
    linear_probe: dict
    pairs: dict
    pairs_raw: dict  # cosine and kappa of every view
    ablation: dict | None


def _evaluate_models(args, data: Digits, cfg: TrainConfig, trained: _Trained, strengths) -> _Measurements:
    """The measurements (a)-(d) on the held-out images, and (a) and (c) for the ablation."""
    from . import core

    nu = args.proj_dim / 2.0 - 1.0
    pcl = trained.pcl.model
    examples = _example_images(data.y_test)
    degradation, deg_raw = ev.evaluate_degradation(pcl, data.x_test, strengths, args.seed + 100, nu, examples)
    _, z_tr, _ = core.embed(pcl, data.x_train)
    _, z_te, kappa_clean = core.embed(pcl, data.x_test)
    probe, pixel_proba = _linear_probes(args.seed, data, trained)
    extremes = ev.evaluate_extremes(kappa_clean, data.y_test, pixel_proba, EXTREME_COUNT)
    extremes.update(ev.typicality(kappa_clean, data.y_test, z_te, data.y_train, z_tr))
    for key in ("lowest", "highest"):
        extremes[f"{key}_items"] = [
            {"dataset_index": int(data.test_index[i]), "label": int(data.y_test[i]), "kappa": float(kappa_clean[i])}
            for i in extremes[key]]
    pairs, pair_raw = ev.evaluate_pairs(pcl, data.x_test, cfg.augment, args.seed + 200, nu)
    ablation = None
    if trained.ablation is not None:
        ablation = _evaluate_ablation(args, data, trained.ablation, strengths, nu)
    return _Measurements(degradation, deg_raw, examples, kappa_clean, extremes, probe, pairs, pair_raw, ablation)


def _linear_probes(seed: int, data: Digits, trained: _Trained):
    """(c) the probe on each encoder and on raw pixels; and the pixel classifier's probabilities."""
    features = {}
    for name in ("pcl", "ntxent"):
        features[name] = _features(getattr(trained, name).model, data)
    features["pixels"] = (data.x_train.reshape(len(data.y_train), -1).numpy(),
                          data.x_test.reshape(len(data.y_test), -1).numpy())
    acc, clf = {}, {}
    for name, (train, test) in features.items():
        acc[name], clf[name] = ev.linear_probe(train, data.y_train, test, data.y_test, seed)
    acc["pcl_minus_ntxent_points"] = 100.0 * (acc["pcl"] - acc["ntxent"])
    return acc, clf["pixels"].predict_proba(features["pixels"][1])


def _features(model, data: Digits):
    """The frozen encoder features of the training and the held-out images."""
    from . import core

    return core.embed(model, data.x_train)[0], core.embed(model, data.x_test)[0]


def _evaluate_ablation(args, data: Digits, abl: TrainResult, strengths, nu: float) -> dict:
    """(a) and (c) again, for the PCL model trained with every degradation type."""
    from . import core

    deg, _ = ev.evaluate_degradation(abl.model, data.x_test, strengths, args.seed + 100, nu)
    train, test = _features(abl.model, data)
    return {
        "train_corruptions": list(core.DEGRADATIONS),
        "spearman_pooled": deg["spearman_pooled"],
        "spearman_by_type": deg["spearman_by_type"],
        "within_image_spearman_mean": deg["within_image_spearman_mean"],
        "kappa_median_by_type": {k: v["kappa_median"] for k, v in deg["by_type"].items()},
        "cos_to_clean_median_by_type": {k: v["cos_to_clean_median"] for k, v in deg["by_type"].items()},
        "linear_probe": ev.linear_probe(train, data.y_train, test, data.y_test, args.seed)[0],
        "final_epoch_loss": abl.epoch_loss[-1],
    }


def _build_summary(args, data: Digits, cfg: TrainConfig, losses: TorchLosses, trained: _Trained,
                   measured: _Measurements) -> dict:
    """The summary (``summary.json`` less its figures and timing) from the results."""
    summary = {
        "title": TITLE,
        "command": _command_line(args),
        "torch_integration": losses.source,
        "environment": _environment(),
        "config": _config_summary(args, cfg),
        "data": {
            "name": "scikit-learn digits (sklearn.datasets.load_digits), 8x8 grey levels 0-16",
            "images": int(len(data.y_train) + len(data.y_test)),
            "train": int(len(data.y_train)), "held_out": int(len(data.y_test)),
            "test_fraction": args.test_fraction, "limit": args.limit,
        },
        "training": {
            "pcl": {"epoch_loss": trained.pcl.epoch_loss, "epoch_mean_kappa": trained.pcl.epoch_kappa},
            "ntxent": {"epoch_loss": trained.ntxent.epoch_loss},
        },
        "degradation": measured.degradation,
        "extremes": measured.extremes,
        "linear_probe": measured.linear_probe,
        "kappa_vs_cosine": measured.pairs,
        "ablation_every_degradation_in_training": measured.ablation,
        "clean_kappa_quantiles_10_50_90": [float(v) for v in np.quantile(measured.kappa_clean, [0.1, 0.5, 0.9])],
    }
    summary["criteria"] = {
        "spearman_pooled_at_most_minus_0.5": bool(measured.degradation["spearman_pooled"] <= -0.5),
        "probe_pcl_within_2_points_of_ntxent": bool(abs(measured.linear_probe["pcl_minus_ntxent_points"]) <= 2.0),
    }
    return summary


def _environment() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def _config_summary(args, cfg: TrainConfig) -> dict:
    from . import core

    aug = cfg.augment
    return {
        "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "conf_lr_mult": args.conf_lr_mult, "warmup_epochs": args.warmup_epochs,
        "proj_dim": args.proj_dim, "nu": args.proj_dim / 2.0 - 1.0,
        "width": args.width, "features": cfg.features, "temperature": args.temperature,
        "kappa_init": 1.0 / args.temperature, "kappa_min": cfg.kappa_min,
        "augment": {
            "rotation_deg": aug.rotation_deg, "scale": list(aug.scale),
            "translate_px": aug.translate_px, "brightness": list(aug.brightness),
            "corrupt_prob": aug.corrupt_prob, "corruptions": list(aug.corruptions),
        },
        "degradations_unseen_in_training": _unseen(cfg),
        "degradation_max": {
            "noise_sigma": core.NOISE_SIGMA_MAX, "occlusion_side_px": core.OCCLUSION_SIDE_MAX,
            "blur_sigma_px": core.BLUR_SIGMA_MAX,
        },
    }


def _write_artefacts(out: Path, summary: dict, data: Digits, measured: _Measurements, timing: dict,
                     t_start: float) -> None:
    """The figures, ``summary.json``, ``report.txt`` and ``report.md`` in ``out``."""
    from . import figures, report

    labels = [int(data.y_test[i]) for i in measured.examples]
    summary["figures"] = _timed(timing, "figures", lambda: figures.write_figures(
        out, summary, data, measured.degradation_raw, measured.kappa_clean, measured.pairs_raw, labels))
    timing["total"] = time.perf_counter() - t_start
    summary["timing_s"] = {k: round(v, 2) for k, v in timing.items()}
    (out / "summary.json").write_text(json.dumps(finite_or_null(summary), indent=1) + "\n")
    text = report.text_report(summary)
    (out / "report.txt").write_text(text)
    (out / "report.md").write_text(report.report_markdown(summary))
    print(text)
    print(f"results written to {out}")


def _example_images(y, digits=(2, 7)) -> list[int]:
    """The first held-out image of each of ``digits`` (or of any class), for the example figure."""
    picked = []
    for dgt in digits:
        hits = np.flatnonzero(y == dgt)
        picked.append(int(hits[0]) if len(hits) else len(picked))
    return picked
