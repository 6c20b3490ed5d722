"""Data-parallel training with the exact PCL over all processes: one process per rank, gloo on CPU.

    torchrun --standalone --nproc-per-node 2 docs/examples/train_distributed.py --steps 20

Each rank holds its share of every batch (its own pairs, both views of each); the loss is
that of the whole batch, every anchor against the views of every rank, identical on all
ranks (``PCLLoss(gather_distributed=True)``, through ``probcon_ref.torch.distributed``). The
model, views and optimiser are those of ``train_pytorch.py``, next to this file.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from probcon_ref.torch import PCLLoss
from train_pytorch import Config, Model, augment, load_digits, make_optimizer


CRITERION = PCLLoss(gather_distributed=True)


def global_loss_step(model, opt, v1, v2, frozen: bool = False):
    """One optimiser step on this rank's pairs ``(v1, v2)``; returns the global loss and
    this rank's ``kappa``.

    The loss is the PCL of the batch of all ranks. DistributedDataParallel averages the
    parameter gradients over the ranks; ``gather_distributed=True`` makes the loss's gradient
    that of the global loss times the world size, so each parameter receives the gradient of
    the global loss after the averaging.
    """
    n = v1.shape[0]
    z, kappa = model(torch.cat([v1, v2]))
    if frozen:  # warm-up: every kappa stays 1/temperature
        kappa = kappa.detach()
    loss = CRITERION(z[:n], z[n:], kappa[:n], kappa[n:])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), kappa.detach()


def train(steps: int, cfg: Config = Config(), log=print):
    """``steps`` steps of batches of ``cfg.batch_size`` pairs, shared between the ranks."""
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(cfg.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    x_train, _ = load_digits(cfg.seed)
    # During the warm-up the confidence head gets no gradient: DDP must be told to expect that.
    model = DistributedDataParallel(Model(cfg.proj_dim, kappa_init=1.0 / cfg.temperature),
                                    find_unused_parameters=cfg.warmup_epochs > 0)
    opt = make_optimizer(model.module, cfg.lr, cfg.conf_lr_mult)
    sampler = DistributedSampler(TensorDataset(x_train), num_replicas=world, rank=rank, seed=cfg.seed,
                                 drop_last=True)
    loader = DataLoader(TensorDataset(x_train), batch_size=cfg.batch_size // world, sampler=sampler,
                        drop_last=True)
    gen = torch.Generator().manual_seed(cfg.seed + 1 + rank)  # each rank draws its own views
    losses, step, epoch = [], 0, 0
    while step < steps:
        sampler.set_epoch(epoch)
        for (xb,) in loader:
            v1, _ = augment(xb, cfg.noise_max, gen)
            v2, _ = augment(xb, cfg.noise_max, gen)
            loss, kappa = global_loss_step(model, opt, v1, v2, frozen=epoch < cfg.warmup_epochs)
            losses.append(float(loss))
            step += 1
            if rank == 0:
                log(f"step {step:3d}  epoch {epoch + 1}  loss {float(loss):.4f}  "
                    f"mean kappa of rank 0's views {float(kappa.mean()):.2f}")
            if step == steps:
                break
        epoch += 1
    return model, losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-epochs", type=int, default=Config.warmup_epochs)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # rank, world size and rendezvous from torchrun's environment
    try:
        train(args.steps, Config(warmup_epochs=args.warmup_epochs))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
