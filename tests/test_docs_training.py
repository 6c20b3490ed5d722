"""The training page (docs/training.md) and its examples: the loop trains, and what the page
says about the confidence head, mixed precision, torch.compile, the memory bank and distributed
training holds.

The example scripts live in ``docs/examples/`` (``train_pytorch.py``, ``train_distributed.py``);
they are imported from there, as the documentation build imports the first one.
"""

from __future__ import annotations

import datetime
import importlib.util
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
PAGE = ROOT / "docs" / "training.md"
DEADLINE_S = 240.0


def _example(name: str):
    """``docs/examples/<name>.py`` as the module ``name`` (the folder on ``sys.path``, as for a script)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tp():
    return _example("train_pytorch")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(tp, n=16, seed=0):
    torch.manual_seed(seed)
    model = tp.Model(16, kappa_init=5.0)
    x = torch.rand(2 * n, 64, generator=torch.Generator().manual_seed(seed + 1))
    return model, x


# ---------------------------------------------------------------------------------------
# The loop of the page
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def documented_run(tp):
    """The run the page shows: the script's defaults."""
    with torch.random.fork_rng():
        return tp.main([], log=lambda record: None)


def test_documented_run_trains_and_the_confidence_moves_after_the_warm_up(tp, documented_run):
    cfg, epochs, ev = documented_run["config"], documented_run["epochs"], documented_run["evaluation"]
    kappa0 = 1.0 / cfg.temperature
    assert len(epochs) == cfg.epochs
    warm, learning = epochs[:cfg.warmup_epochs], epochs[cfg.warmup_epochs:]
    # The warm-up is NT-Xent exactly: the head is untouched, every view has kappa = 1/tau.
    assert all(e["phase"] == "warm-up" and e["kappa_mean"] == kappa0 and e["kappa_std"] == 0 for e in warm)
    assert all(math.isnan(e["spearman_kappa_cos"]) for e in warm)
    # After it the confidences spread and move away from 1/tau.
    assert all(e["phase"] == "learning" and e["kappa_std"] > 0 for e in learning)
    assert abs(learning[-1]["kappa_mean"] - kappa0) > 0.2 * kappa0
    assert abs(ev["kappa_median"] - kappa0) > 0.2 * kappa0
    # The loss decreases.
    first = sum(e["loss"] for e in epochs[:5]) / 5
    last = sum(e["loss"] for e in epochs[-5:]) / 5
    assert last < first - 0.5
    # What the page reports: noisier held-out views get less confidence, agreeing views more.
    assert ev["spearman_kappa_noise"] < -0.2
    assert ev["spearman_kappa_cos"] > 0
    assert ev["spearman_cos_noise"] < 0


def test_bf16_run_trains(tp):
    with torch.random.fork_rng():
        run = tp.main(["--bf16", "--epochs", "6", "--warmup-epochs", "2"], log=lambda record: None)
    epochs = run["epochs"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert epochs[1]["kappa_std"] == 0 and epochs[-1]["kappa_std"] > 0


def test_confidence_head_starts_at_one_over_tau_for_both_links(tp):
    h = torch.randn(7, 12)
    for link in ("exp", "softplus"):
        for kappa_init in (5.0, 1 / 0.07):
            head = tp.ConfidenceHead(12, kappa_init, link=link)
            torch.testing.assert_close(head(h), torch.full((7,), kappa_init), rtol=2e-7, atol=0)
    head = tp.ConfidenceHead(12, 5.0)
    assert torch.equal(head(h), torch.full((7,), 5.0))  # the example's start, exactly
    with torch.no_grad():
        head.linear.bias.fill_(1e3)  # far beyond the clamp: exp would overflow to inf
    capped = head(h)
    assert bool(torch.isfinite(capped).all())
    torch.testing.assert_close(capped, torch.full((7,), 1e4), rtol=1e-6, atol=0)


def test_kappa_rules_the_page_states(tp):
    """kappa = 0 is accepted; a negative or an infinite kappa is a ValueError."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 4, 8, generator=g)
    zero = torch.zeros(4)
    assert bool(torch.isfinite(tp.PCLLoss()(z1, z2, zero, zero)))
    for bad in (-1.0, math.inf):
        k = torch.tensor([1.0, bad, 1.0, 1.0])
        with pytest.raises(ValueError, match="kappa0"):  # the module's name of its third argument
            tp.PCLLoss()(z1, z2, k, zero)


def test_frozen_head_receives_no_gradient_and_adam_leaves_it(tp):
    model, x = _batch(tp)
    opt = tp.make_optimizer(model, 1e-2, 10.0)
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 1e-1]
    assert opt.param_groups[1]["params"] == list(model.confidence.parameters())
    before = [p.detach().clone() for p in model.confidence.parameters()]
    cfg = tp.Config()
    def loss_fn(v1, v2, frozen):
        return tp.views_loss(model, tp.PCLLoss(), v1, v2, False, frozen)

    loss, kappa, _ = tp.train_step(loss_fn, opt, x, cfg, torch.Generator().manual_seed(0), frozen=True)
    assert all(p.grad is None for p in model.confidence.parameters())
    assert all(torch.equal(p, b) for p, b in zip(model.confidence.parameters(), before))
    assert torch.equal(kappa, torch.full_like(kappa, 1 / cfg.temperature))
    tp.train_step(loss_fn, opt, x, cfg, torch.Generator().manual_seed(0), frozen=False)
    assert all(p.grad is not None for p in model.confidence.parameters())


# ---------------------------------------------------------------------------------------
# Mixed precision
# ---------------------------------------------------------------------------------------


def _autocast_step(tp, as_float32: bool):
    model, x = _batch(tp)
    n = x.shape[0] // 2
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the forward pass and the loss, as on the page
        z, kappa = model(x)
        z.retain_grad()
        kappa.retain_grad()
        zi, ki = (z.float(), kappa.float()) if as_float32 else (z, kappa)
        loss = tp.PCLLoss()(zi[:n], zi[n:], ki[:n], ki[n:])
    loss.backward()
    return model, z, kappa, loss


def test_autocast_dtypes_as_the_page_states(tp):
    """bfloat16 embeddings and confidences; the loss in float32, as PyTorch's losses under
    autocast; the gradients reaching them in bfloat16, the parameters' in float32."""
    model, z, kappa, loss = _autocast_step(tp, as_float32=False)
    assert z.dtype == kappa.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert z.grad.dtype == kappa.grad.dtype == torch.bfloat16
    assert {p.grad.dtype for p in model.parameters()} == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # Computed in float32 either way: the same loss as for float32 copies of the same inputs,
    # and the same bfloat16 gradients reach the model (exact: one float32 computation, the
    # gradients rounded to bfloat16 once, by the loss or at the cast).
    model32, z32, kappa32, loss32 = _autocast_step(tp, as_float32=True)
    assert torch.equal(loss.detach(), loss32.detach())
    assert torch.equal(z.grad, z32.grad) and torch.equal(kappa.grad, kappa32.grad)
    for p, q in zip(model.parameters(), model32.parameters()):
        assert torch.equal(p.grad, q.grad)
    assert torch.finfo(torch.bfloat16).max > 0.99 * torch.finfo(torch.float32).max


# ---------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def _assert_grads_close(got, want, rtol=1e-4):
    for g, w in zip(got, want):
        scale = float(w.abs().max()) or 1.0
        assert float((g - w).abs().max()) <= rtol * scale


def _page_step(tp, model, criterion, bf16=False):
    def loss_fn(v1, v2):
        return tp.views_loss(model, criterion, v1, v2, bf16, False)[0]
    return loss_fn


@pytest.mark.parametrize("bank", [0, 48], ids=["plain", "memory-bank"])
def test_the_page_step_is_one_graph_without_breaks(tp, bank):
    torch._dynamo.reset()
    model, x = _batch(tp)
    n = x.shape[0] // 2
    step = _page_step(tp, model, tp.PCLLoss(memory_bank_size=bank), bf16=True)
    for _ in range(2):  # with a bank: empty, then holding the first batch
        explained = torch._dynamo.explain(step)(x[:n], x[n:])
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    torch._dynamo.reset()


def test_the_warm_up_and_the_learning_phase_are_two_graphs(tp):
    """What the page's timing of the compiled run says: one compile with the head detached,
    one without, and none after."""
    torch._dynamo.reset()
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model, x = _batch(tp)
    n = x.shape[0] // 2
    criterion = tp.PCLLoss(memory_bank_size=48)
    compiled = torch.compile(lambda v1, v2, frozen: tp.views_loss(model, criterion, v1, v2, True, frozen)[0],
                             backend=counting, fullgraph=True)
    for frozen in (True, True, False, False, False):
        compiled(x[:n], x[n:], frozen).backward()
    torch._dynamo.reset()
    # the first call has no queue yet: with a bank, one more graph for the frozen phase
    assert len(graphs) == 3


@pytest.mark.slow
@pytest.mark.parametrize("bank", [0, 48], ids=["plain", "memory-bank"])
def test_the_compiled_page_step_matches_eager(tp, bank):
    """``fullgraph=True``, bfloat16 autocast, three steps (a bank fills): the losses and the
    gradients of the compiled step are those of the eager one, to bfloat16's rounding of the
    compiled encoder's different order of operations."""
    torch._dynamo.reset()
    runs = []
    for compiled in (False, True):
        model, x = _batch(tp, seed=3)
        n = x.shape[0] // 2
        step = _page_step(tp, model, tp.PCLLoss(memory_bank_size=bank), bf16=True)
        step = torch.compile(step, fullgraph=True) if compiled else step
        out = []
        for i in range(3):
            model.zero_grad(set_to_none=True)
            loss = step(x[:n] * (1 + 0.1 * i), x[n:] * (1 - 0.1 * i))
            loss.backward()
            out.append((loss.detach(), _grads(model)))
        runs.append(out)
    torch._dynamo.reset()
    for (le, ge), (lc, gc) in zip(*runs):
        assert le.dtype == lc.dtype == torch.float32
        torch.testing.assert_close(lc, le, rtol=2e-2, atol=0)
        _assert_grads_close(gc, ge, rtol=5e-2)


# ---------------------------------------------------------------------------------------
# Distributed training
# ---------------------------------------------------------------------------------------


def _exactness_worker(rank, world, init_file, out_dir, examples):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    try:
        sys.path.insert(0, examples)
        import train_pytorch as tp
        from train_distributed import global_loss_step
        from torch.nn.parallel import DistributedDataParallel

        x_train, _ = tp.load_digits(0)
        gen = torch.Generator().manual_seed(5)
        xb = x_train[:24]
        v1, _ = tp.augment(xb, 0.6, gen)
        v2, _ = tp.augment(xb, 0.6, gen)
        shares = [(0, 10), (10, 24)]  # uneven shares, as the page allows
        lo, hi = shares[rank]
        torch.manual_seed(0)
        model = DistributedDataParallel(tp.Model(16, kappa_init=5.0))
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the step leaves the gradients to compare
        loss, _ = global_loss_step(model, opt, v1[lo:hi], v2[lo:hi])
        out = {"loss": loss, "grads": [p.grad.clone() for p in model.module.parameters()]}
        # The same batch in one process.
        torch.manual_seed(0)
        single = tp.Model(16, kappa_init=5.0)
        z, kappa = single(torch.cat([v1, v2]))
        n = xb.shape[0]
        ref = tp.PCLLoss()(z[:n], z[n:], kappa[:n], kappa[n:])
        ref.backward()
        out["ref_loss"] = ref.detach()
        out["ref_grads"] = [p.grad.clone() for p in single.parameters()]
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_distributed_step_gives_the_gradient_of_the_global_loss(tmp_path):
    """``global_loss_step`` of the page under DDP, 2 gloo processes with uneven shares: the loss
    and every parameter gradient are those of the whole batch in one process."""
    ctx = mp.start_processes(_exactness_worker, args=(2, str(tmp_path / "init"), str(tmp_path), str(EXAMPLES)),
                             nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail("the distributed workers were still running at the deadline")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(out["loss"], out["ref_loss"], rtol=1e-6, atol=0)
        _assert_grads_close(out["grads"], out["ref_grads"], rtol=1e-5)


@pytest.mark.slow
def test_distributed_example_runs_with_torchrun(tmp_path):
    """The command on the page, through the warm-up into the learning phase."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(EXAMPLES / "train_distributed.py"), "--steps", "7", "--warmup-epochs", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = re.findall(r"^step +(\d+) +epoch (\d+) +loss (\S+) +mean kappa of rank 0's views (\S+)$",
                       proc.stdout, re.M)
    assert [int(s) for s, *_ in lines] == list(range(1, 8)), proc.stdout
    losses = [float(l) for _, _, l, _ in lines]
    kappas = {int(e): [] for _, e, _, _ in lines}
    for _, e, _, k in lines:
        kappas[int(e)].append(float(k))
    assert all(math.isfinite(v) for v in losses)
    assert set(kappas[1]) == {5.0}  # the warm-up epoch: every kappa is 1/tau
    assert kappas[2][-1] != 5.0  # the head learns after it


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------


def test_page_cites_the_contract_by_link():
    text = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"SPEC section", text)
    assert "<contract-inputs>" in text


def test_page_shows_the_run_of_the_build(built_site):
    proc, html = built_site
    page = (html / "training.html").read_text(encoding="utf-8")
    assert "epoch   1 warm-up" in page and "held-out views:" in page
    assert "Spearman" in page and "bfloat16" in page
    assert "memory_bank_size=1024" in page and "1 graph, 0 breaks" in page  # the graph counts
    assert page.count("epoch  40 learning") == 2  # the logs of the documented run and of the compiled one with a bank
    assert "training.md" not in proc.stderr
