"""The distributed PCL over gloo processes equals the single-process loss of the whole batch."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import probcon_ref as pr  # noqa: E402


def _global_batch(n=12, d=7, seed=0):
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d)) * rng.lognormal(0, 1, size=(n, 1))
    z2 = z1 + 0.8 * rng.normal(size=(n, d))
    k1, k2 = rng.lognormal(1.5, 1.0, size=(2, n))
    return z1, z2, k1, k2


def _worker(rank, world, init_file, out_dir, splits):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        from probcon_ref.torch import distributed as pdist

        z1, z2, k1, k2 = (torch.as_tensor(a) for a in _global_batch(n=sum(splits)))
        lo = sum(splits[:rank])
        local = [t[lo:lo + splits[rank]] for t in (z1, z2, k1, k2)]
        out = {}
        for kind in ("pcl", "ntxent"):
            if kind == "pcl":
                loss, grads = pdist.pcl_loss_and_grad(*local, block_size=3)
                leaves = [t.clone().requires_grad_(True) for t in local]
                auto = pdist.pcl_loss(*leaves)
            else:
                loss, grads = pdist.ntxent_loss_and_grad(local[0], local[1], temperature=0.3)
                leaves = [t.clone().requires_grad_(True) for t in local[:2]]
                auto = pdist.ntxent_loss(*leaves, temperature=0.3)
            (2.0 * auto).backward()
            out[kind] = {"loss": loss, "grads": list(grads), "auto_loss": auto.detach(),
                         "auto_grads": [leaf.grad for leaf in leaves]}
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("splits", [(2, 7), (1, 4, 2, 5)], ids=["2-processes", "4-processes"])
def test_distributed_equals_single_process(tmp_path, splits):
    """Uneven shares on purpose; loss and every gradient block to 1e-12 in float64."""
    world = len(splits)
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path), list(splits)), nprocs=world, join=True)
    z1, z2, k1, k2 = _global_batch(n=sum(splits))
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for kind in ("pcl", "ntxent"):
        if kind == "pcl":
            ref_loss, ref = pr.pcl_loss_and_grad(z1, z2, k1, k2)
        else:
            ref_loss, ref = pr.ntxent_loss_and_grad(z1, z2, temperature=0.3)
        for res in results:
            for key in ("loss", "auto_loss"):
                assert abs(float(res[kind][key]) - float(ref_loss)) <= 1e-12 * abs(float(ref_loss))
        for i, name in enumerate(ref._fields):
            got = np.concatenate([r[kind]["grads"][i].numpy() for r in results])
            via_autograd = np.concatenate([r[kind]["auto_grads"][i].numpy() for r in results]) / 2.0
            want = getattr(ref, name)
            scale = np.max(np.abs(want))
            assert np.max(np.abs(got - want)) <= 1e-12 * scale, (kind, name)
            assert np.max(np.abs(via_autograd - want)) <= 1e-12 * scale, (kind, name)


def test_requires_initialised_group():
    from probcon_ref.torch import distributed as pdist

    z = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="not initialised"):
        pdist.ntxent_loss_and_grad(z, z)
