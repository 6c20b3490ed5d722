"""Train a small encoder with the PCL on scikit-learn's handwritten digits, on one CPU core.

    python docs/examples/train_pytorch.py                # the run shown in the documentation
    python docs/examples/train_pytorch.py --bf16         # the same under torch.autocast (bfloat16)
    python docs/examples/train_pytorch.py --compile      # the step's forward and loss compiled, one graph
    python docs/examples/train_pytorch.py --memory-bank 1024   # 1024 past views as extra negatives

Two augmented views of every image go through one encoder; a projection head gives the
embeddings ``z`` of the loss and a confidence head one ``kappa`` per view. Every ``kappa``
starts at ``1/temperature``, where the PCL is NT-Xent exactly; the confidence head stays
frozen for the first epochs, then learns at a multiple of the learning rate. Each epoch
prints the mean loss and the mean, spread and rank correlation with the positive cosine of
the views' ``kappa``. At the end, ``kappa`` of fresh views of held-out images is compared
with the agreement of the two views and with the noise put into them.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from probcon_ref.torch import PCLLoss


@dataclass
class Config:
    epochs: int = 40
    warmup_epochs: int = 5  # the confidence head frozen: every kappa = 1/temperature
    batch_size: int = 256  # pairs per step
    lr: float = 2e-3
    conf_lr_mult: float = 10.0  # the confidence head's learning rate, as a multiple of lr
    temperature: float = 0.2  # kappa starts at 1/temperature
    proj_dim: int = 16  # d, the dimension of the embeddings z
    noise_max: float = 0.6  # a view's noise has a standard deviation up to this (pixels in [0, 1])
    seed: int = 0
    bf16: bool = False  # torch.autocast on CPU with bfloat16
    compile: bool = False  # torch.compile the forward pass and the loss, fullgraph=True
    memory_bank: int = 0  # past views kept as extra negatives (0: none)


# ---------------------------------------------------------------------------------------
# Data and views
# ---------------------------------------------------------------------------------------


def load_digits(seed: int, test_fraction: float = 0.2):
    """scikit-learn's digits as (n, 64) float32 in [0, 1]: a training and a held-out part."""
    from sklearn.datasets import load_digits as sklearn_digits

    x = torch.as_tensor(sklearn_digits().data, dtype=torch.float32) / 16.0
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(test_fraction * len(x))
    return x[perm[n_test:]], x[perm[:n_test]]


def augment(x, noise_max: float, gen):
    """One random view of each 8 x 8 image: a shift of up to one pixel, a brightness factor,
    and Gaussian noise of a random strength. Returns the views and each view's noise level."""
    n = x.shape[0]
    img = x.view(n, 8, 8)
    padded = nn.functional.pad(img, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2, n), generator=gen)
    rows = (torch.arange(8)[None, :] + dy[:, None])[:, :, None]
    cols = (torch.arange(8)[None, :] + dx[:, None])[:, None, :]
    shifted = padded[torch.arange(n)[:, None, None], rows, cols]
    gain = 0.7 + 0.6 * torch.rand(n, 1, 1, generator=gen)
    sigma = noise_max * torch.rand(n, generator=gen)
    noisy = shifted * gain + sigma[:, None, None] * torch.randn(n, 8, 8, generator=gen)
    return noisy.clamp(0.0, 1.0).view(n, 64), sigma


# ---------------------------------------------------------------------------------------
# The model: encoder, projection head, confidence head
# ---------------------------------------------------------------------------------------


class ConfidenceHead(nn.Module):
    """``kappa = exp(w . h + b)`` (or ``softplus``), one per view, from the encoder's features ``h``.

    ``w`` starts at zero and ``b`` where the link gives ``kappa_init``, so every view starts
    at exactly ``kappa_init``. The logit is clamped at ``log(kappa_max)``: an exp cannot
    overflow to inf (a non-finite kappa is refused by the loss).
    """

    def __init__(self, features: int, kappa_init: float, link: str = "exp", kappa_max: float = 1e4):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.link = link
        self.max_logit = math.log(kappa_max) if link == "exp" else kappa_max
        start = math.log(kappa_init) if link == "exp" else math.log(math.expm1(kappa_init))
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, start)

    def forward(self, h):
        s = self.linear(h)[:, 0].clamp(max=self.max_logit)
        return torch.exp(s) if self.link == "exp" else nn.functional.softplus(s)


class Model(nn.Module):
    """Encoder (an MLP on the 64 pixels), projection head to ``z`` and confidence head to ``kappa``."""

    def __init__(self, proj_dim: int, kappa_init: float, features: int = 128):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, features), nn.ReLU())
        self.projection = nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, proj_dim))
        self.confidence = ConfidenceHead(features, kappa_init)

    def forward(self, x):
        h = self.encoder(x)
        return self.projection(h), self.confidence(h)


def make_optimizer(model: Model, lr: float, conf_lr_mult: float) -> torch.optim.Adam:
    """Adam with two parameter groups: the confidence head at ``conf_lr_mult * lr``."""
    head = list(model.confidence.parameters())
    rest = [p for name, p in model.named_parameters() if not name.startswith("confidence.")]
    return torch.optim.Adam([{"params": rest}, {"params": head, "lr": conf_lr_mult * lr}], lr=lr)


# ---------------------------------------------------------------------------------------
# Logging kappa
# ---------------------------------------------------------------------------------------


def spearman(a, b) -> float:
    """Rank correlation of two 1-D tensors (NaN when one of them is constant)."""
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    if bool((a == a[0]).all()) or bool((b == b[0]).all()):
        return math.nan
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def positive_cosine(z1, z2):
    """The cosine of each pair's two views, once per view (view 1 first): shape (2N,)."""
    c = nn.functional.cosine_similarity(z1.float(), z2.float(), dim=1)
    return torch.cat([c, c])


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def views_loss(model, criterion, v1, v2, bf16: bool, frozen: bool):
    """The loss of two batches of views, with the embeddings and confidences it was computed
    from: what ``--compile`` compiles, as one graph (``fullgraph=True``)."""
    n = v1.shape[0]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # the forward pass and the loss
        z, kappa = model(torch.cat([v1, v2]))
        if frozen:  # warm-up: no gradient reaches the head, every kappa stays 1/temperature
            kappa = kappa.detach()
        loss = criterion(z[:n], z[n:], kappa[:n], kappa[n:])
    return loss, z, kappa


def train_step(loss_fn, opt, xb, cfg: Config, gen, frozen: bool):
    """One step on a batch of images; returns (loss, kappa of the 2N views, their positive cosines)."""
    n = xb.shape[0]
    v1, _ = augment(xb, cfg.noise_max, gen)
    v2, _ = augment(xb, cfg.noise_max, gen)
    loss, z, kappa = loss_fn(v1, v2, frozen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), kappa.detach(), positive_cosine(z[:n].detach(), z[n:].detach())


def train(cfg: Config, log=print):
    """Train with ``cfg``; ``log`` receives one dict per epoch. Returns (model, held-out images, records)."""
    torch.manual_seed(cfg.seed)
    x_train, x_test = load_digits(cfg.seed)
    model = Model(cfg.proj_dim, kappa_init=1.0 / cfg.temperature)
    opt = make_optimizer(model, cfg.lr, cfg.conf_lr_mult)
    criterion = PCLLoss(memory_bank_size=cfg.memory_bank)

    def loss_fn(v1, v2, frozen):
        return views_loss(model, criterion, v1, v2, cfg.bf16, frozen)

    if cfg.compile:
        loss_fn = torch.compile(loss_fn, fullgraph=True)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    steps = len(x_train) // cfg.batch_size
    records = []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        frozen = epoch < cfg.warmup_epochs
        perm = torch.randperm(len(x_train), generator=gen)
        losses, kappas, cosines = [], [], []
        for s in range(steps):
            xb = x_train[perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]]
            loss, kappa, cos = train_step(loss_fn, opt, xb, cfg, gen, frozen)
            losses.append(float(loss))
            kappas.append(kappa.float())
            cosines.append(cos)
        kappa, cos = torch.cat(kappas), torch.cat(cosines)
        record = {"epoch": epoch + 1, "phase": "warm-up" if frozen else "learning",
                  "loss": sum(losses) / steps, "kappa_mean": float(kappa.mean()),
                  "kappa_std": float(kappa.std()), "spearman_kappa_cos": spearman(kappa, cos),
                  "seconds": time.perf_counter() - t0}
        records.append(record)
        log(record)
    return model, x_test, records


@torch.no_grad()
def evaluate(model: Model, x_test, cfg: Config) -> dict:
    """``kappa`` of two fresh views of each held-out image, against their agreement and their noise."""
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    v1, s1 = augment(x_test, cfg.noise_max, gen)
    v2, s2 = augment(x_test, cfg.noise_max, gen)
    n = len(x_test)
    z, kappa = model(torch.cat([v1, v2]))
    cos = positive_cosine(z[:n], z[n:])
    noise = torch.cat([s1, s2])
    return {"views": 2 * n, "kappa_min": float(kappa.min()), "kappa_median": float(kappa.median()),
            "kappa_max": float(kappa.max()), "spearman_kappa_cos": spearman(kappa, cos),
            "spearman_kappa_noise": spearman(kappa, noise), "spearman_cos_noise": spearman(cos, noise)}


def print_record(r: dict) -> None:
    print(f"epoch {r['epoch']:3d} {r['phase']:8s} loss {r['loss']:.4f}  kappa mean {r['kappa_mean']:7.2f} "
          f"std {r['kappa_std']:6.2f}  spearman(kappa, cos) {r['spearman_kappa_cos']:+.3f}  {r['seconds']:.2f} s")


def main(argv=None, log=print_record) -> dict:
    """Run the example with the command-line options ``argv``; returns the epochs and the evaluation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Config()
    for name in ("epochs", "warmup_epochs", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--conf-lr-mult", type=float, default=defaults.conf_lr_mult)
    parser.add_argument("--bf16", action="store_true", help="torch.autocast on CPU with bfloat16")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward pass and the loss")
    parser.add_argument("--memory-bank", type=int, default=defaults.memory_bank,
                        help="past views kept as extra negatives (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default: %(default)s)")
    args = parser.parse_args(argv)
    cfg = Config(epochs=args.epochs, warmup_epochs=args.warmup_epochs, seed=args.seed,
                 conf_lr_mult=args.conf_lr_mult, bf16=args.bf16, compile=args.compile,
                 memory_bank=args.memory_bank)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        model, x_test, records = train(cfg, log=log)
        result = evaluate(model, x_test, cfg)
    finally:
        torch.set_num_threads(threads)
    print(f"held-out views: {result['views']}, kappa from {result['kappa_min']:.1f} to {result['kappa_max']:.1f}; "
          f"spearman(kappa, cos) {result['spearman_kappa_cos']:+.3f}, "
          f"spearman(kappa, noise) {result['spearman_kappa_noise']:+.3f}, "
          f"spearman(cos, noise) {result['spearman_cos_noise']:+.3f}")
    return {"config": cfg, "epochs": records, "evaluation": result}


if __name__ == "__main__":
    main()
