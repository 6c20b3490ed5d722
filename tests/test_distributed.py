"""The distributed PCL over gloo processes: it equals the single-process loss of the whole
batch, the processes check each other's inputs and options before any data moves, and the
autograd functions keep the single-process adapter's guards.

Every collective of the workers times out after ``COLLECTIVE_TIMEOUT`` and every group of
workers is killed past ``DEADLINE_S``, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import datetime
import json
import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import probcon_ref as pr  # noqa: E402

COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=30)
DEADLINE_S = 240.0


def _init(rank, world, init_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=COLLECTIVE_TIMEOUT)


def _spawn(fn, world, *args):
    """Run ``fn(rank, world, *args)`` in ``world`` processes; a worker's exception fails the test,
    and so does a group still running past the deadline (then its processes are killed)."""
    ctx = mp.start_processes(fn, args=(world, *args), nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail(f"the {world} workers were still running after {DEADLINE_S:.0f} s: "
                            "a collective waits for a process that is gone")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()


def _global_batch(n=12, d=7, seed=0):
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d)) * rng.lognormal(0, 1, size=(n, 1))
    z2 = z1 + 0.8 * rng.normal(size=(n, d))
    k1, k2 = rng.lognormal(1.5, 1.0, size=(2, n))
    return z1, z2, k1, k2


def _worker(rank, world, init_file, out_dir, splits):
    _init(rank, world, init_file)
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
    _spawn(_worker, world, str(tmp_path / "init"), str(tmp_path), list(splits))
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


# ---------------------------------------------------------------------------------------
# The processes check each other: every rank raises the same exception, naming the rank
# ---------------------------------------------------------------------------------------

SPLITS = (2, 3, 2)  # rank 1 deviates; ranks 0 and 2 agree
SUBGROUP = [1, 2]  # global ranks of a subgroup; in "subgroup", global rank 2 deviates

SCENARIOS = ["d", "dtype", "reduction", "temperature", "loss", "n0", "nan", "negative-kappa",
             "block-size", "not-a-tensor", "two-ranks-invalid", "subgroup"]

# scenario -> (exception type, message) on every rank; None: the single-process reference's
# message for rank 1's inputs, prefixed by "rank 1: "
EXPECTED = {
    "d": ("ValueError", "z1 and z2 must have the same dimension d on every rank of the group: "
                        "d = 7 on ranks 0, 2; d = 5 on rank 1"),
    "dtype": ("ValueError", "z1 must have the same dtype on every rank of the group: "
                            "torch.float64 on ranks 0, 2; torch.float32 on rank 1"),
    "reduction": ("ValueError", "reduction must be the same on every rank of the group: "
                                "'mean' on ranks 0, 2; 'sum' on rank 1"),
    "temperature": ("ValueError", "temperature must be the same on every rank of the group: "
                                  "0.5 on ranks 0, 2; 0.3 on rank 1"),
    "loss": ("ValueError", "the loss (PCL or NT-Xent) must be the same on every rank of the group: "
                           "PCL on ranks 0, 2; NT-Xent on rank 1"),
    "n0": ("ValueError", None),
    "nan": ("ValueError", None),
    "negative-kappa": ("ValueError", None),
    "block-size": ("ValueError", "rank 1: block_size must be a positive integer or None, got 0"),
    "not-a-tensor": ("TypeError", "rank 1: z1 must be a torch.Tensor, got ndarray"),
    "two-ranks-invalid": ("ValueError", None),
    "subgroup": ("ValueError", "z1 and z2 must have the same dimension d on every rank of the group: "
                               "d = 7 on rank 1; d = 5 on rank 2"),
}


def _local(rank, splits=SPLITS):
    z1, z2, k1, k2 = (torch.as_tensor(a) for a in _global_batch(n=sum(splits)))
    lo = sum(splits[:rank])
    return [t[lo:lo + splits[rank]] for t in (z1, z2, k1, k2)]


def _call_of(rank, scenario):
    """``(loss, inputs, options)`` of the call ``rank`` makes in ``scenario``."""
    z1, z2, k1, k2 = _local(rank)
    loss, options = "pcl", {}
    odd = rank == (2 if scenario == "subgroup" else 1)
    if scenario in ("d", "subgroup") and odd:
        z1, z2 = z1[:, :5], z2[:, :5]
    elif scenario == "dtype" and odd:
        z1 = z1.float()
    elif scenario == "reduction" and odd:
        options["reduction"] = "sum"
    elif scenario == "temperature":
        loss, options["temperature"] = "ntxent", 0.3 if odd else 0.5
    elif scenario == "loss" and odd:
        loss = "ntxent"
    elif (scenario == "n0" and odd) or (scenario == "two-ranks-invalid" and rank == 1):
        z1, z2, k1, k2 = (t[:0] for t in (z1, z2, k1, k2))
    elif scenario == "nan" and odd:
        z2 = z2.clone()
        z2[0, 0] = float("nan")
    elif scenario == "two-ranks-invalid" and rank == 0:
        z1 = z1.clone()
        z1[1, 2] = float("inf")
    elif scenario == "negative-kappa" and odd:
        k1 = k1.clone()
        k1[0] = -1.0
    elif scenario == "block-size" and odd:
        options["block_size"] = 0
    elif scenario == "not-a-tensor" and odd:
        z1 = z1.numpy()
    return loss, ([z1, z2, k1, k2] if loss == "pcl" else [z1, z2]), options


def _scenario_worker(rank, world, init_file, out_dir):
    _init(rank, world, init_file)
    from probcon_ref.torch import distributed as pdist

    results = {}
    try:
        subgroup = dist.new_group(SUBGROUP)  # every process takes part in creating it
        for scenario in SCENARIOS:
            for api in ("loss_and_grad", "autograd"):
                loss, inputs, options = _call_of(rank, scenario)
                if api == "autograd":
                    inputs = [t.clone().requires_grad_() if isinstance(t, torch.Tensor) else t for t in inputs]
                fn = getattr(pdist, f"{loss}_loss_and_grad" if api == "loss_and_grad" else f"{loss}_loss")
                if scenario == "subgroup":
                    options["group"] = subgroup
                result = {"type": None}
                if scenario != "subgroup" or rank in SUBGROUP:
                    try:
                        fn(*inputs, **options)
                    except Exception as exc:
                        cause = exc.__cause__
                        result = {"type": type(exc).__name__, "message": str(exc),
                                  "cause": None if cause is None else [type(cause).__name__, str(cause)]}
                # the group is still in step: every process makes a valid call
                loss_after, _ = pdist.pcl_loss_and_grad(*_local(rank))
                result["after"] = float(loss_after)
                results[f"{scenario}/{api}"] = result
                with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
                    json.dump(results, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def scenario_results(tmp_path_factory):
    """Every scenario on 3 gloo processes; the results they wrote, and how the group ended."""
    out = tmp_path_factory.mktemp("scenarios")
    world = len(SPLITS)
    try:
        _spawn(_scenario_worker, world, str(out / "init"), str(out))
        ended = "cleanly"
    except (Exception, pytest.fail.Exception) as exc:  # reported by each test that lacks its result
        ended = f"with {type(exc).__name__}: {exc}"
    results = []
    for r in range(world):
        path = out / f"rank{r}.json"
        results.append(json.loads(path.read_text()) if path.exists() else {})
    return results, ended


def _reference_message(scenario, rank):
    loss, inputs, options = _call_of(rank, scenario)
    fn = pr.pcl_loss if loss == "pcl" else pr.ntxent_loss
    with pytest.raises(ValueError) as info:
        fn(*inputs, **options)
    return f"rank {rank}: {info.value}"


@pytest.mark.parametrize("api", ["loss_and_grad", "autograd"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rank_raises_the_same_error_naming_the_rank(scenario_results, scenario, api):
    """No rank crashes, hangs or returns a wrong loss: each raises the same exception with the
    same message, naming the argument and the rank; the rank at fault chains its own
    exception; afterwards the group still computes the right loss."""
    results, ended = scenario_results
    key = f"{scenario}/{api}"
    for rank, res in enumerate(results):
        if key not in res:
            pytest.fail(f"rank {rank} wrote no result for {key}; the workers ended {ended}")
    want_type, want = EXPECTED[scenario]
    if want is None:
        if scenario == "two-ranks-invalid":
            want = "\n".join(_reference_message(scenario, r) for r in (0, 1))
        else:
            want = _reference_message(scenario, 1)
    involved = SUBGROUP if scenario == "subgroup" else range(len(SPLITS))
    for rank in involved:
        got = results[rank][key]
        assert (got["type"], got["message"]) == (want_type, want), (rank, got)
        at_fault = want.startswith(f"rank {rank}:") or f"\nrank {rank}:" in want
        if at_fault:  # its own exception, with its own message, is the cause
            assert got["cause"] is not None and f"rank {rank}: {got['cause'][1]}" in want
        else:
            assert got["cause"] is None
    ref = float(pr.pcl_loss(*(torch.cat(parts) for parts in zip(*(_local(r) for r in range(len(SPLITS)))))))
    for rank, res in enumerate(results):
        assert res[key]["after"] == pytest.approx(ref, rel=1e-12), rank


def test_rank_lists_are_compressed_to_runs():
    from probcon_ref.torch.distributed import _rank_list

    assert _rank_list([3]) == "rank 3"
    assert _rank_list([8, 0, 1, 2, 5, 7]) == "ranks 0-2, 5, 7-8"


# ---------------------------------------------------------------------------------------
# The single-process adapter's guards: autocast, half precision, create_graph, NaN upstream
# ---------------------------------------------------------------------------------------


def _guards_worker(rank, world, init_file):
    _init(rank, world, init_file)
    try:
        from probcon_ref.torch import distributed as pdist

        splits = (2, 3)
        f32 = [t.float() for t in _local(rank, splits)]

        # autocast is switched off inside: the loss equals the one computed outside it
        outside = pdist.pcl_loss(*f32)
        outside_nt = pdist.ntxent_loss(f32[0], f32[1])
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            assert (f32[0] @ f32[1].T).dtype == torch.bfloat16  # autocast is on around the call
            inside = pdist.pcl_loss(*f32)
            inside_nt = pdist.ntxent_loss(f32[0], f32[1])
        assert inside.dtype == torch.float32 and torch.equal(inside, outside)
        assert torch.equal(inside_nt, outside_nt)

        # half inputs: computed in float32, the loss rounded once, the gradients scaled by
        # the incoming gradient before they are rounded to the input dtype
        for half in (torch.float16, torch.bfloat16):
            low = [t.to(half).requires_grad_() for t in f32]
            wide = [t.detach().float().requires_grad_() for t in low]
            loss, ref = pdist.pcl_loss(*low), pdist.pcl_loss(*wide)
            assert loss.dtype == half and torch.equal(loss.detach(), ref.detach().to(half))
            scale = 1000.0  # not a power of two: rounding before scaling would differ
            (loss * scale).backward()
            (ref * scale).backward()
            for t, w in zip(low, wide):
                assert t.grad.dtype == half and torch.equal(t.grad, w.grad.to(half))
            nt = pdist.ntxent_loss(low[0].detach(), low[1].detach())
            assert nt.dtype == half

        # mixed dtypes: the loss in the promoted dtype, each gradient in its input's
        mixed = [f32[0].half().requires_grad_(), f32[1].half().requires_grad_(),
                 f32[2].clone().requires_grad_(), f32[3].clone().requires_grad_()]
        loss = pdist.pcl_loss(*mixed)
        assert loss.dtype == torch.float32
        loss.backward()
        assert [t.grad.dtype for t in mixed] == [torch.float16, torch.float16, torch.float32, torch.float32]

        # differentiable once: a graph of the gradient is refused, not silently missing
        leaves = [t.clone().requires_grad_() for t in _local(rank, splits)]
        for loss in (pdist.pcl_loss(*leaves), pdist.ntxent_loss(leaves[0], leaves[1])):
            try:
                torch.autograd.grad(loss, leaves[0], create_graph=True)
            except RuntimeError as exc:
                assert "differentiable once" in str(exc)
            else:
                raise AssertionError("create_graph=True was accepted")

        # a non-finite incoming gradient propagates, it does not raise
        for bad in (float("nan"), float("inf")):
            leaves = [t.clone().requires_grad_() for t in _local(rank, splits)]
            (pdist.pcl_loss(*leaves) * bad).backward()
            assert all(not bool(torch.isfinite(t.grad).any()) for t in leaves), bad
    finally:
        dist.destroy_process_group()


def test_autograd_functions_keep_the_single_process_guards(tmp_path):
    _spawn(_guards_worker, 2, str(tmp_path / "init"))


def _module_worker(rank, world, init_file, out_dir):
    """The modules' ``gather_distributed=True`` under DDP: a linear encoder, uneven shares."""
    _init(rank, world, init_file)
    try:
        from torch.nn.parallel import DistributedDataParallel

        from probcon_ref.torch import NTXentLoss, PCLLoss

        g = torch.Generator().manual_seed(0)
        x1 = torch.randn(9, 6, generator=g, dtype=torch.float64)
        x2 = x1 + 0.3 * torch.randn(9, 6, generator=g, dtype=torch.float64)
        lo, hi = [(0, 4), (4, 9)][rank]
        out = {}
        for name, crit in (("pcl", PCLLoss(gather_distributed=True, kappa_is_log=True)),
                           ("ntxent", NTXentLoss(temperature=0.3, gather_distributed=True))):
            torch.manual_seed(1)
            model = DistributedDataParallel(torch.nn.Linear(6, 5).double())
            h1, h2 = model(x1[lo:hi]), model(x2[lo:hi])
            loss = crit(h1[:, :4], h2[:, :4], h1[:, 4], h2[:, 4]) if name == "pcl" else crit(h1, h2)
            loss.backward()
            out[name] = {"loss": loss.detach(), "grads": [p.grad.clone() for p in model.module.parameters()]}
        # errors in the module's names, on every rank
        bad = -torch.ones(hi - lo, dtype=torch.float64) if rank == 1 else torch.ones(hi - lo, dtype=torch.float64)
        try:
            PCLLoss(gather_distributed=True)(x1[lo:hi], x2[lo:hi], torch.ones(hi - lo, dtype=torch.float64), bad)
        except ValueError as exc:
            out["error"] = str(exc)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gather_distributed_modules_give_the_global_gradient_under_ddp(tmp_path):
    """The loss of the concatenated batch on every rank, and after DDP's averaging the
    parameters' gradient of that loss in one process, to 1e-12 (float64); a bad input on one
    rank raises on both, in the module's argument names."""
    from probcon_ref.torch import NTXentLoss, PCLLoss

    _spawn(_module_worker, 2, str(tmp_path / "init"), str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(9, 6, generator=g, dtype=torch.float64)
    x2 = x1 + 0.3 * torch.randn(9, 6, generator=g, dtype=torch.float64)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, crit in (("pcl", PCLLoss(kappa_is_log=True)), ("ntxent", NTXentLoss(temperature=0.3))):
        torch.manual_seed(1)
        model = torch.nn.Linear(6, 5).double()
        h1, h2 = model(x1), model(x2)
        loss = crit(h1[:, :4], h2[:, :4], h1[:, 4], h2[:, 4]) if name == "pcl" else crit(h1, h2)
        loss.backward()
        for res in results:
            assert abs(float(res[name]["loss"] - loss)) <= 1e-12 * abs(float(loss))
            for got, p in zip(res[name]["grads"], model.parameters()):
                assert float((got - p.grad).abs().max()) <= 1e-12 * float(p.grad.abs().max())
    for res in results:
        assert res["error"].startswith("rank 1: kappa1 must be non-negative"), res["error"]


def _confident_batch(n=6, d=8):
    """Rank 1's pairs 2 and 3 are near copies of rank 0's pairs 0 and 1, with huge
    concentrations: rank 0's own concentrations are ordinary, yet the logits of its anchors
    against those copies are in the compensated product's regime."""
    rng = np.random.default_rng(3)
    z1 = rng.normal(size=(n, d))
    z1[2:4] = z1[0:2] + 1e-3 * rng.normal(size=(2, d))
    z2 = z1 + 1e-3 * rng.normal(size=(n, d))
    k = np.concatenate([rng.uniform(1, 5, size=2), rng.uniform(2e4, 5e4, size=n - 2)])
    return z1, z2, k, k.copy()


def _confident_worker(rank, world, init_file, out_dir):
    _init(rank, world, init_file)
    try:
        from probcon_ref.torch import distributed as pdist

        z1, z2, k1, k2 = (torch.as_tensor(a) for a in _confident_batch())
        lo, hi = [(0, 2), (2, 6)][rank]
        loss, grads = pdist.pcl_loss_and_grad(*(t[lo:hi] for t in (z1, z2, k1, k2)), reduction="sum")
        torch.save({"loss": loss, "grads": list(grads)}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_the_logits_are_compensated_where_any_process_calls_for_it(tmp_path):
    """Rank 0's own concentrations are ordinary, but its anchors meet rank 1's huge ones: the
    loss is that of one process, which compensates, to 4e-15 (the plain product is off by
    about 3e-14 here); the gradients to 1e-12 of their blocks (the ranks add the column sums
    in another order)."""
    _spawn(_confident_worker, 2, str(tmp_path / "init"), str(tmp_path))
    z1, z2, k1, k2 = _confident_batch()
    ref_loss, ref = pr.pcl_loss_and_grad(z1, z2, k1, k2, reduction="sum")
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for res in results:
        assert abs(float(res["loss"]) - float(ref_loss)) <= 4e-15 * abs(float(ref_loss))
    for i, name in enumerate(ref._fields):
        got = np.concatenate([res["grads"][i].numpy() for res in results])
        want = getattr(ref, name)
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want)), name
