"""Generators of the training page (``docs/training.md``): the example run during the build.

The example script ``docs/examples/train_pytorch.py`` is imported and its ``main`` run, so
the log, the evaluation and the dtypes on the page are what the script does with the
installed PyTorch, not numbers typed in. The runs happen once per build (cached), on one
thread, with PyTorch's global random state restored afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import time
from functools import lru_cache
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
SCRIPT = DOCS / "examples" / "train_pytorch.py"


@lru_cache(maxsize=None)
def example():
    """``docs/examples/train_pytorch.py`` as the module ``train_pytorch``."""
    spec = importlib.util.spec_from_file_location("train_pytorch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_pytorch"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _run(argv: list[str]) -> dict:
    """``main(argv)`` of the example: its result, what it printed, and its wall time."""
    import torch

    out = io.StringIO()
    with torch.random.fork_rng(), contextlib.redirect_stdout(out):
        t0 = time.perf_counter()
        result = example().main(argv)
        result["seconds"] = time.perf_counter() - t0
    result["printed"] = out.getvalue()
    return result


#: The options of the compiled, mixed-precision, memory-bank run of the page.
FULL_OPTIONS = ["--compile", "--bf16", "--memory-bank", "1024"]


@lru_cache(maxsize=None)
def runs() -> dict:
    """The documented run (the script's defaults), the same without the warm-up, and the same
    compiled, under bfloat16 autocast, with a memory bank."""
    return {"default": _run([]), "no_warmup": _run(["--warmup-epochs", "0"]), "full": _run(FULL_OPTIONS)}


def experiment_defaults() -> dict:
    """The defaults of ``probcon-ref experiment``'s training options."""
    import argparse

    from probcon_ref.experiment import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args([]))


def _steps_per_epoch(cfg) -> int:
    x_train, _ = example().load_digits(cfg.seed)
    return len(x_train) // cfg.batch_size


# ---------------------------------------------------------------------------------------
# The generators
# ---------------------------------------------------------------------------------------


def training_settings() -> str:
    """The warm-up and the head's learning rate: the experiment's defaults and this example's."""
    cfg = example().Config()
    exp = experiment_defaults()
    return (
        f"`probcon-ref experiment` ({{doc}}`experiment`) freezes the confidence head for the first "
        f"{exp['warmup_epochs']} of its {exp['epochs']} epochs (`--warmup-epochs`, default "
        f"{exp['warmup_epochs']}) and then trains it at {exp['conf_lr_mult']:g} times the learning rate "
        f"(`--conf-lr-mult`, default {exp['conf_lr_mult']:g}). This example keeps the multiplier, "
        f"`conf_lr_mult = {cfg.conf_lr_mult:g}`, and, being shorter, freezes the head for its first "
        f"{cfg.warmup_epochs} of {cfg.epochs} epochs ({_steps_per_epoch(cfg)} steps each), with "
        f"`temperature = {cfg.temperature:g}`: every $\\kappa$ starts at {1 / cfg.temperature:g}.\n"
    )


def training_log() -> str:
    """What the script printed in this build, and how long it took."""
    r = runs()["default"]
    cfg = r["config"]
    steps = _steps_per_epoch(cfg) * cfg.epochs
    train_s = sum(e["seconds"] for e in r["epochs"])
    return (
        "```text\n" + r["printed"] + "```\n\n"
        f"{steps} steps of {cfg.batch_size} pairs: {train_s:.1f} s of training on one thread "
        f"({r['seconds']:.1f} s with the data and the evaluation), in this build.\n"
    )


def training_result() -> str:
    """The held-out evaluation of the documented run, beside the same run without warm-up."""
    from docs_content import _table  # here: docs_content imports this module when it loads

    both = runs()
    cfg = both["default"]["config"]
    ev = {k: v["evaluation"] for k, v in both.items()}
    last = {k: v["epochs"][-1]["loss"] for k, v in both.items()}
    first = both["default"]["epochs"][0]["loss"]
    rows = [
        ["loss, last epoch", *(f"{last[k]:.4f}" for k in both)],
        ["$\\kappa$: min / median / max",
         *(f"{e['kappa_min']:.2f} / {e['kappa_median']:.2f} / {e['kappa_max']:.2f}" for e in ev.values())],
        ["Spearman($\\kappa$, noise of the view)", *(f"{e['spearman_kappa_noise']:+.3f}" for e in ev.values())],
        ["Spearman($\\kappa$, positive cosine)", *(f"{e['spearman_kappa_cos']:+.3f}" for e in ev.values())],
        ["Spearman(positive cosine, noise of the view)", *(f"{e['spearman_cos_noise']:+.3f}" for e in ev.values())],
    ]
    d, w = ev["default"], ev["no_warmup"]
    noise_word = "less" if d["spearman_kappa_noise"] < 0 else "*more*"
    cos_word = "more" if d["spearman_kappa_cos"] > 0 else "*less*"
    strength = "weaker" if abs(d["spearman_kappa_cos"]) < abs(d["spearman_kappa_noise"]) else "stronger"
    change = max(abs(d[k] - w[k]) for k in ("spearman_kappa_noise", "spearman_kappa_cos"))
    early = both["no_warmup"]["epochs"][0]["spearman_kappa_cos"]
    return (
        f"Two fresh views of each of the {d['views'] // 2} held-out images, after training "
        f"(the loss fell from {first:.4f} in the first epoch to {last['default']:.4f} in the last):\n\n"
        + _table(["", f"warm-up of {cfg.warmup_epochs} epochs (the run above)", "no warm-up"], rows)
        + "\n"
        f"Every $\\kappa$ started at {1 / cfg.temperature:g}; at the end they span "
        f"{d['kappa_min']:.2f} to {d['kappa_max']:.2f}. The rank correlation of a view's $\\kappa$ with "
        f"the noise put into it is {d['spearman_kappa_noise']:+.3f}: noisier views get {noise_word} "
        f"confidence. With the agreement of the two views, their cosine, it is "
        f"{d['spearman_kappa_cos']:+.3f} (views that agree get {cos_word} confidence), {strength} than with "
        "the noise. A view's $\\kappa$ is computed from that view alone, while the cosine also depends "
        "on the noise of the other view: the last row is how well the noise of one view predicts "
        "the cosine.\n\n"
        f"Without the warm-up the correlations at the end differ from those with it by at most "
        f"{change:.3f}"
        + (": in this small example the warm-up changes little. " if change < 0.1 else ". ")
        + f"In that run's first epoch, while the encoder had barely started to learn, the correlation of "
        f"$\\kappa$ with the cosine was {early:+.3f}.\n"
    )


def training_amp_dtypes() -> str:
    """The dtypes of one step of the example's model and loss under CPU autocast (bfloat16)."""
    import torch
    from docs_content import _table

    ex = example()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ex.Model(16, kappa_init=5.0)
        x = torch.rand(32, 64)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = model.encoder(x)
            loss, z, kappa = ex.views_loss(model, ex.PCLLoss(), x[:16], x[16:], True, False)
        z.retain_grad()
        kappa.retain_grad()
        loss.backward()
    rows = [
        ["encoder features `h`", str(h.dtype)],
        ["embeddings `z`", str(z.dtype)],
        ["confidences `kappa`", str(kappa.dtype)],
        ["loss", str(loss.dtype)],
        ["gradient of the loss with respect to `z`, `kappa`", f"{z.grad.dtype}, {kappa.grad.dtype}"],
        ["gradients of the parameters (`.grad`)",
         ", ".join(sorted({str(p.grad.dtype) for p in model.parameters()}))],
    ]
    return (f"One step of the example's model under `torch.autocast(\"cpu\", dtype=torch.bfloat16)`, "
            f"PyTorch {torch.__version__}:\n\n" + _table(["tensor", "dtype"], rows))


def training_graphs() -> str:
    """What dynamo makes of the page's ``views_loss``, with and without a memory bank, measured
    in this build with ``torch._dynamo.explain``."""
    import torch
    from docs_content import _table

    ex = example()
    rows = []
    with torch.random.fork_rng():
        for bank in (0, 1024):
            torch._dynamo.reset()
            torch.manual_seed(0)
            model, criterion = ex.Model(16, kappa_init=5.0), ex.PCLLoss(memory_bank_size=bank)
            x = torch.rand(64, 64)
            counts = []
            for _ in range(2):  # with a bank: an empty queue, then one holding a batch
                explained = torch._dynamo.explain(ex.views_loss)(model, criterion, x[:32], x[32:], True, False)
                counts.append(f"{explained.graph_count} graph, {explained.graph_break_count} breaks")
            rows.append([f"`PCLLoss(memory_bank_size={bank})`", *counts])
        torch._dynamo.reset()
    return (f"`torch._dynamo.explain` of `views_loss` (bfloat16 autocast, warm-up off), PyTorch "
            f"{torch.__version__}, in this build:\n\n"
            + _table(["loss", "first call", "second call"], rows))


def training_full_run() -> str:
    """The compiled, mixed-precision, memory-bank run: its log, and how it compares."""
    from docs_content import _table

    both = runs()
    full, default = both["full"], both["default"]
    epochs, warm = full["epochs"], full["config"].warmup_epochs

    def median_epoch(r) -> float:
        return sorted(e["seconds"] for e in r["epochs"])[len(r["epochs"]) // 2]

    rows = [[name, f"{r['epochs'][-1]['loss']:.4f}",
             f"{r['evaluation']['kappa_min']:.1f} / {r['evaluation']['kappa_median']:.1f} / "
             f"{r['evaluation']['kappa_max']:.1f}",
             f"{r['evaluation']['spearman_kappa_noise']:+.3f}", f"{median_epoch(r):.2f}"]
            for name, r in (("the run above", default), ("`" + " ".join(FULL_OPTIONS) + "`", full))]
    grew = full["evaluation"]["kappa_median"] > 10 * default["evaluation"]["kappa_median"]
    return (
        "```text\n" + full["printed"] + "```\n\n"
        f"The first epoch took {epochs[0]['seconds']:.1f} s and the first learning epoch "
        f"{epochs[warm]['seconds']:.1f} s, against a median epoch of {median_epoch(full):.2f} s: "
        "those two include compiling: the step is compiled for the empty queue and for the filled one "
        "with the head detached, then once more without (three graphs in all, which the tests count). The loss "
        "with more candidates per anchor is not comparable with the plain one; the held-out "
        "confidences are:\n\n"
        + _table(["run", "loss, last epoch", "$\\kappa$: min / median / max", "Spearman($\\kappa$, noise)",
                  "median epoch (s)"], rows)
        + ("\nWith the memory bank the confidences of this small example did not settle: their "
           "median ended more than ten times that of the run without it. The run shows the "
           "mechanics (one compiled graph, bfloat16, a queue of past views) and is not a recipe: "
           "the example's settings were chosen without a queue, and this page does not tune them "
           "for one.\n"
           if grew else "")
    )


GENERATORS = {
    "training_settings": training_settings,
    "training_log": training_log,
    "training_result": training_result,
    "training_amp_dtypes": training_amp_dtypes,
    "training_graphs": training_graphs,
    "training_full_run": training_full_run,
}

DEPENDENCIES = {name: (SCRIPT,) for name in GENERATORS}
