"""Data, augmentations, degradations, models and training for ``probcon-ref experiment``.

Everything here is plain PyTorch (no torchvision): images are tensors of shape
(n, 1, 8, 8) with values in [0, 1]. The loss comes from :mod:`probcon_ref.torch` when that
module exists, otherwise from a private :class:`torch.autograd.Function` that wraps
:func:`probcon_ref.pcl_loss_and_grad` (the backward multiplies the analytic gradients by
the incoming gradient).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIDE = 8  # the digits are 8 x 8 pixels
DEGRADATIONS = ("noise", "occlusion", "blur")
NOISE_SIGMA_MAX = 0.5  # strength 1: Gaussian noise of standard deviation 0.5 (images in [0, 1])
OCCLUSION_SIDE_MAX = 6  # strength 1: a 6 x 6 grey square (56% of the image)
BLUR_SIGMA_MAX = 1.5  # strength 1: Gaussian blur of standard deviation 1.5 pixels
OCCLUDER_VALUE = 0.5


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


@dataclass
class Digits:
    """The scikit-learn digits, scaled to [0, 1], split into train and held-out parts."""

    x_train: torch.Tensor
    y_train: np.ndarray
    x_test: torch.Tensor
    y_test: np.ndarray
    test_index: np.ndarray  # row of each held-out image in ``load_digits()``


def load_data(seed: int, test_fraction: float, limit: int | None = None) -> Digits:
    """Load the 1,797 digits shipped inside scikit-learn; stratified split, fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    index = np.arange(len(y))
    if limit is not None and limit < len(y):
        index, _ = train_test_split(index, train_size=limit, stratify=y, random_state=seed)
        index = np.sort(index)
    tr, te = train_test_split(index, test_size=test_fraction, stratify=y[index], random_state=seed)
    tr, te = np.sort(tr), np.sort(te)
    as_tensor = lambda i: torch.from_numpy(x[i][:, None, :, :].copy())  # noqa: E731
    return Digits(as_tensor(tr), y[tr], as_tensor(te), y[te], te)


# ---------------------------------------------------------------------------------------
# Degradations (evaluation and training) and augmentations (training)
# ---------------------------------------------------------------------------------------


def _per_image(strength, n: int, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(strength, dtype=like.dtype)
    return s.expand(n).clone() if s.ndim == 0 else s


def add_noise(x, strength, gen):
    """Additive Gaussian noise, standard deviation ``NOISE_SIGMA_MAX * strength``, clipped to [0, 1]."""
    s = _per_image(strength, x.shape[0], x).view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return (x + NOISE_SIGMA_MAX * s * noise).clamp(0.0, 1.0)


def occlude(x, strength, gen):
    """A grey square of side ``round(OCCLUSION_SIDE_MAX * strength)`` at a random place."""
    n = x.shape[0]
    side = torch.floor(OCCLUSION_SIDE_MAX * _per_image(strength, n, x) + 0.5).long()
    u = torch.rand((n, 2), generator=gen)
    top = torch.floor(u[:, 0] * (SIDE - side + 1).float()).long()
    left = torch.floor(u[:, 1] * (SIDE - side + 1).float()).long()
    grid = torch.arange(SIDE)
    rows = (grid[None, :] >= top[:, None]) & (grid[None, :] < (top + side)[:, None])
    cols = (grid[None, :] >= left[:, None]) & (grid[None, :] < (left + side)[:, None])
    mask = (rows[:, :, None] & cols[:, None, :])[:, None, :, :]
    return torch.where(mask, torch.full_like(x, OCCLUDER_VALUE), x)


def blur(x, strength, gen=None):
    """Gaussian blur of standard deviation ``BLUR_SIGMA_MAX * strength`` pixels (7 x 7 kernel)."""
    n = x.shape[0]
    sigma = (BLUR_SIGMA_MAX * _per_image(strength, n, x)).clamp_min(1e-3)
    r = torch.arange(-3, 4, dtype=x.dtype)
    k1 = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    kernel = (k1[:, :, None] * k1[:, None, :])[:, None, :, :]  # (n, 1, 7, 7)
    out = F.conv2d(x.reshape(1, n, SIDE, SIDE), kernel, padding=3, groups=n)
    return out.reshape(n, 1, SIDE, SIDE)


DEGRADE = {"noise": add_noise, "occlusion": occlude, "blur": blur}


def degrade(x, kind: str, strength, gen):
    """Apply one degradation at a strength in [0, 1] (a number, or one per image); 0 is the identity."""
    return DEGRADE[kind](x, strength, gen)


@dataclass
class AugmentConfig:
    """SimCLR-style augmentation for 8 x 8 digits.

    A random affine map (rotation, scale, translation), a brightness change, and with
    probability ``corrupt_prob`` one of the degradations in ``corruptions`` at a uniform
    random strength. By default blur is left out: it is then a degradation the model meets
    only at evaluation.
    """

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    translate_px: float = 1.0
    brightness: tuple[float, float] = (0.6, 1.4)
    corrupt_prob: float = 0.5
    corruptions: tuple[str, ...] = ("noise", "occlusion")


def augment(x, cfg: AugmentConfig, gen):
    """One random view of every image in ``x``."""
    n = x.shape[0]
    u = torch.rand((n, 6), generator=gen, dtype=x.dtype)
    angle = math.radians(cfg.rotation_deg) * (2 * u[:, 0] - 1)
    scale = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[:, 1]
    shift = (2 * cfg.translate_px / SIDE) * (2 * u[:, 2:4] - 1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gain = cfg.brightness[0] + (cfg.brightness[1] - cfg.brightness[0]) * u[:, 4]
    v = (v * gain.view(-1, 1, 1, 1)).clamp(0.0, 1.0)
    if cfg.corrupt_prob > 0 and cfg.corruptions:
        hit = u[:, 5] < cfg.corrupt_prob
        which = torch.randint(len(cfg.corruptions), (n,), generator=gen)
        strength = torch.rand((n,), generator=gen, dtype=x.dtype)
        for i, kind in enumerate(cfg.corruptions):
            sel = hit & (which == i)
            if bool(sel.any()):
                v[sel] = degrade(v[sel], kind, strength[sel], gen)
    return v


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """A small CNN for 8 x 8 images: three 3 x 3 convolutions, one pooling, one dense layer."""

    def __init__(self, width: int = 32, features: int = 128):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * w * (SIDE // 2) ** 2, features), nn.BatchNorm1d(features), nn.ReLU(),
        )

    def forward(self, x):
        return self.body(x)


class ContrastiveModel(nn.Module):
    """Encoder, projection head and (for PCL) a confidence head giving ``kappa`` per view.

    ``kappa = kappa_min + exp(w . h + b)`` with ``h`` the encoder features: a linear
    confidence head (a hidden layer adds nothing measurable here and can die at the larger
    learning rate the head needs). ``w`` starts at zero and ``b`` at
    ``log(kappa_init - kappa_min)``, so every view starts at exactly ``kappa_init``.
    """

    def __init__(self, proj_dim: int, width: int, features: int, confidence: bool,
                 kappa_init: float = 5.0, kappa_min: float = 0.1, log_kappa_max: float = 10.0):
        super().__init__()
        self.encoder = Encoder(width, features)
        self.projection = nn.Sequential(
            nn.Linear(features, features), nn.ReLU(), nn.Linear(features, proj_dim)
        )
        self.kappa_min = kappa_min
        self.log_kappa_max = log_kappa_max
        self.confidence = None
        if confidence:
            self.confidence = nn.Linear(features, 1)
            nn.init.zeros_(self.confidence.weight)
            nn.init.constant_(self.confidence.bias, math.log(kappa_init - kappa_min))

    def forward(self, x):
        h = self.encoder(x)
        z = self.projection(h)
        kappa = None
        if self.confidence is not None:
            s = self.confidence(h)[:, 0].clamp(max=self.log_kappa_max)
            kappa = self.kappa_min + torch.exp(s)
        return h, z, kappa


# ---------------------------------------------------------------------------------------
# The losses in PyTorch
# ---------------------------------------------------------------------------------------


@dataclass
class TorchLosses:
    """The two losses as differentiable PyTorch functions, and where they come from."""

    pcl: object
    ntxent: object
    source: str


def torch_losses() -> TorchLosses:
    """The PCL and NT-Xent of :mod:`probcon_ref.torch` (analytic backward), mean over 2N."""
    from .. import torch as pr_torch

    return TorchLosses(
        pcl=lambda z1, z2, k1, k2: pr_torch.pcl_loss(z1, z2, k1, k2, reduction="mean"),
        ntxent=lambda z1, z2, t: pr_torch.ntxent_loss(z1, z2, temperature=t, reduction="mean"),
        source="probcon_ref.torch",
    )


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    epochs: int = 150
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-5
    proj_dim: int = 16
    width: int = 16
    features: int = 128
    temperature: float = 0.2
    kappa_min: float = 0.1
    conf_lr_mult: float = 10.0  # learning-rate multiplier of the confidence head
    warmup_epochs: int = 10  # PCL: epochs with the confidence head frozen (every kappa = 1/temperature)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainResult:
    model: ContrastiveModel
    epoch_loss: list[float]
    epoch_kappa: list[float]  # mean kappa of the views seen in each epoch (PCL only)
    seconds: float


def _optimizer(model: ContrastiveModel, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam, with the confidence head (if any) at ``conf_lr_mult`` times the learning rate.

    The level of kappa has far to go (the optimum A_d^{-1}(c) is in the tens for d = 16),
    and Adam moves log(kappa) by about one learning rate per step: the head learns faster.
    """
    head = list(model.confidence.parameters()) if model.confidence is not None else []
    ids = {id(p) for p in head}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]}]
    if head:
        groups.append({"params": head, "lr": cfg.lr * cfg.conf_lr_mult})
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _epoch(model, x, loss_name: str, cfg: TrainConfig, losses: TorchLosses, opt, sched, gen,
           batch: int, steps: int, frozen: bool) -> tuple[float, float]:
    """One epoch of ``steps`` batches: (mean loss, mean kappa of the views; 0 for NT-Xent)."""
    perm = torch.randperm(x.shape[0], generator=gen)
    total, kap = 0.0, 0.0
    for s in range(steps):
        xb = x[perm[s * batch:(s + 1) * batch]]
        v1 = augment(xb, cfg.augment, gen)
        v2 = augment(xb, cfg.augment, gen)
        _, z, kappa = model(torch.cat([v1, v2]))
        z1, z2 = z[: len(xb)], z[len(xb):]
        if loss_name == "pcl":
            if frozen:  # the head is untouched: kappa = 1/temperature, PCL = NT-Xent exactly
                kappa = kappa.detach()
            loss = losses.pcl(z1, z2, kappa[: len(xb)], kappa[len(xb):])
            kap += float(kappa.detach().mean())
        else:
            loss = losses.ntxent(z1, z2, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach())
    return total / steps, kap / steps


def train(loss_name: str, x: torch.Tensor, cfg: TrainConfig, losses: TorchLosses, seed: int,
          progress: bool = True, label: str | None = None) -> TrainResult:
    """Train one model with ``loss_name`` in {"pcl", "ntxent"}.

    The encoder and projection head are initialised from ``seed`` before the confidence
    head, and the batches and augmentations come from a generator seeded with ``seed``, so
    the two losses start from the same weights and see the same views.
    """
    import time

    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    model = ContrastiveModel(cfg.proj_dim, cfg.width, cfg.features, confidence=(loss_name == "pcl"),
                             kappa_init=1.0 / cfg.temperature, kappa_min=cfg.kappa_min)
    opt = _optimizer(model, cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    n = x.shape[0]
    batch = min(cfg.batch_size, n)
    steps = max(1, n // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
    epoch_loss, epoch_kappa = [], []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=label or f"train {loss_name}", disable=not progress, leave=True,
               mininterval=1.0)
    model.train()
    for epoch in bar:
        loss, kappa = _epoch(model, x, loss_name, cfg, losses, opt, sched, gen, batch, steps,
                             frozen=epoch < cfg.warmup_epochs)
        epoch_loss.append(loss)
        if loss_name == "pcl":
            epoch_kappa.append(kappa)
            bar.set_postfix(loss=f"{loss:.3f}", kappa=f"{kappa:.1f}")
        else:
            bar.set_postfix(loss=f"{loss:.3f}")
    bar.close()
    model.eval()
    return TrainResult(model, epoch_loss, epoch_kappa, time.perf_counter() - t0)


@torch.no_grad()
def embed(model: ContrastiveModel, x: torch.Tensor, chunk: int = 1024):
    """Encoder features, projections and kappa (None without a confidence head), eval mode."""
    model.eval()
    hs, zs, ks = [], [], []
    for i in range(0, x.shape[0], chunk):
        h, z, k = model(x[i:i + chunk])
        hs.append(h)
        zs.append(z)
        if k is not None:
            ks.append(k)
    h, z = torch.cat(hs), torch.cat(zs)
    return h.numpy(), z.numpy(), (torch.cat(ks).numpy() if ks else None)
