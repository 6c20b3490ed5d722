"""probcon_ref.torch as people train with it: compiled steps, module options and messages,
log-kappa, a learnable temperature, the memory bank.

* ``torch._dynamo.explain`` of a step (encoder and loss) with each module shows one graph
  and no break; ``torch.compile(step, fullgraph=True)`` gives the eager loss and gradients;
* the modules' messages name ``out0, out1, kappa0, kappa1``; every option is checked when a
  module is built;
* ``kappa_is_log`` and a learnable temperature differentiate like finite differences
  (gradcheck) and like the chain rule on the analytic gradient;
* the memory bank is a FIFO queue of detached directions (and concentrations), used as the
  reference's extra candidates, updated after the forward, saved in ``state_dict``.

The distributed switch ``gather_distributed=True`` is tested with gloo processes in
tests/test_distributed.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import probcon_ref as pr


def views(torch, n=6, d=5, seed=0, dtype=None):
    g = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.float64
    z1 = torch.randn(n, d, generator=g, dtype=dtype)
    z2 = z1 + 0.6 * torch.randn(n, d, generator=g, dtype=dtype)
    k1, k2 = (torch.rand(n, generator=g, dtype=dtype) * 8 + 0.5 for _ in range(2))
    return [t.requires_grad_() for t in (z1, z2, k1, k2)]


class Encoder:
    """A two-layer encoder with a confidence head: embeddings (N, d) and kappa = softplus."""

    def __init__(self, torch, d=8, dtype=None, seed=0):
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, d + 1))
        if dtype is not None:
            self.net = self.net.to(dtype)
        self.torch, self.d = torch, d

    def __call__(self, x):
        h = self.net(x)
        return h[:, :self.d], self.torch.nn.functional.softplus(h[:, self.d]) + 0.5


def _criteria(T):
    """The modules a compiled step is checked with: (id, module, takes kappa)."""
    return [("pcl", T.PCLLoss(), True), ("pcl-none", T.PCLLoss(reduction="none"), True),
            ("pcl-log-kappa", T.PCLLoss(kappa_is_log=True), True), ("pcl-blocks", T.PCLLoss(block_size=4), True),
            ("ntxent", T.NTXentLoss(temperature=0.2), False),
            ("ntxent-learned", T.NTXentLoss(learn_temperature=True), False),
            ("pcl-bank", T.PCLLoss(memory_bank_size=24), True),
            ("ntxent-bank", T.NTXentLoss(memory_bank_size=24), False)]


def _step(torch, encoder, criterion, takes_kappa):
    def step(x1, x2):
        (z1, k1), (z2, k2) = encoder(x1), encoder(x2)
        loss = criterion(z1, z2, k1, k2) if takes_kappa else criterion(z1, z2)
        return loss.sum()
    return step


def _inputs(torch, n=16, seed=1, dtype=None):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(n, 12, generator=g)
    x2 = x1 + 0.3 * torch.randn(n, 12, generator=g)
    return (x1, x2) if dtype is None else (x1.to(dtype), x2.to(dtype))


@pytest.mark.parametrize("which", range(8), ids=lambda i: ["pcl", "pcl-none", "pcl-log-kappa", "pcl-blocks", "ntxent",
                                                            "ntxent-learned", "pcl-bank", "ntxent-bank"][i])
def test_a_step_with_each_module_is_one_graph_without_breaks(torch, T, which):
    torch._dynamo.reset()
    _, criterion, takes_kappa = _criteria(T)[which]
    encoder = Encoder(torch)
    step = _step(torch, encoder, criterion, takes_kappa)
    for _ in range(2):  # with a memory bank: the first step has an empty queue, the second not
        explained = torch._dynamo.explain(step)(*_inputs(torch))
        assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


@pytest.mark.parametrize("which", [0, 1, 2, 4, 5], ids=["pcl", "pcl-none", "pcl-log-kappa", "ntxent", "ntxent-learned"])
def test_fullgraph_compile_gives_the_eager_loss_and_gradients(torch, T, which):
    """float64 throughout: the compiled encoder may order its sums differently, so the loss and
    the parameters' gradients agree to rounding (1e-12 relative), not bit for bit."""
    torch._dynamo.reset()
    results = []
    for compiled in (False, True):
        _, criterion, takes_kappa = _criteria(T)[which]
        encoder = Encoder(torch, dtype=torch.float64)
        params = list(encoder.net.parameters()) + list(criterion.parameters())
        step = _step(torch, encoder, criterion, takes_kappa)
        if compiled:
            step = torch.compile(step, fullgraph=True)
        loss = step(*_inputs(torch, dtype=torch.float64))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in params]))
    (loss_e, grads_e), (loss_c, grads_c) = results
    assert abs(float(loss_c - loss_e)) <= 1e-12 * abs(float(loss_e))
    for a, b in zip(grads_e, grads_c):
        assert float((a - b).abs().max()) <= 1e-12 * max(1.0, float(a.abs().max()))


def test_the_input_rules_hold_in_compiled_code(torch, T):
    """They run inside the operator, on the real tensors: a negative kappa raises there too."""
    torch._dynamo.reset()
    compiled = torch.compile(T.PCLLoss(), fullgraph=True)
    z1, z2, k1, k2 = views(torch)
    assert torch.isfinite(compiled(z1, z2, k1, k2))
    with pytest.raises(ValueError, match="kappa1 must be non-negative"):
        compiled(z1, z2, k1, -k2)


# ---------------------------------------------------------------------------------------
# The modules' names and options
# ---------------------------------------------------------------------------------------


def test_messages_name_the_modules_arguments(torch, T):
    z1, z2, k1, k2 = views(torch)
    crit = T.PCLLoss()
    with pytest.raises(ValueError, match="^kappa0 must be non-negative"):
        crit(z1, z2, -k1, k2)
    with pytest.raises(ValueError, match="^kappa1 must be non-negative"):
        crit(z1, z2, k1, -k2)
    with pytest.raises(ValueError, match="out1"):
        crit(z1, z2[:, :3], k1, k2)
    with pytest.raises(TypeError, match="^out0 must be a torch.Tensor"):
        crit(z1.detach().numpy(), z2, k1, k2)
    with pytest.raises(ValueError, match="kappa0 must have shape"):
        crit(z1, z2, k1[:, None], k2)
    with pytest.raises(ValueError, match="out0"):
        T.NTXentLoss()(torch.zeros_like(z1), z2)
    with pytest.raises(ValueError, match=r"^exp\(kappa1\) must be finite"):
        T.PCLLoss(kappa_is_log=True)(z1, z2, k1, torch.full_like(k2, 1e4))
    with pytest.raises(ValueError, match="^kappa2 must be non-negative"):  # the functions keep the reference's
        T.pcl_loss(z1, z2, k1, -k2)


@pytest.mark.parametrize("make, bad, exc, pattern", [
    ("pcl", {"memory_bank_size": -1}, ValueError, "^memory_bank_size must be a non-negative integer, got -1$"),
    ("pcl", {"memory_bank_size": 2.5}, TypeError, "^memory_bank_size must be a non-negative integer, got float$"),
    ("ntxent", {"memory_bank_size": True}, TypeError, "^memory_bank_size must be a non-negative integer, got bool$"),
    ("pcl", {"kappa_is_log": 1}, TypeError, "^kappa_is_log must be True or False, got int$"),
    ("pcl", {"gather_distributed": "yes"}, TypeError, "^gather_distributed must be True or False, got str$"),
    ("ntxent", {"learn_temperature": None}, TypeError, "^learn_temperature must be True or False, got NoneType$"),
    ("pcl", {"gather_distributed": True, "memory_bank_size": 8}, ValueError, "gather_distributed=True with a memory"),
    ("ntxent", {"temperature": [0.5]}, TypeError, "^temperature must be a real"),
    ("pcl", {"block_size": 0}, ValueError, "^block_size must be a positive integer or None, got 0$"),
])
def test_every_option_is_checked_when_a_module_is_built(torch, T, make, bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        (T.PCLLoss if make == "pcl" else T.NTXentLoss)(**bad)


def test_a_temperature_tensor_must_be_0d_and_floating(torch, T):
    with pytest.raises(ValueError, match="0-d and floating"):
        T.NTXentLoss(temperature=torch.tensor([0.5]))
    with pytest.raises(ValueError, match="0-d and floating"):
        T.ntxent_loss(*views(torch)[:2], temperature=torch.tensor(1))


# ---------------------------------------------------------------------------------------
# log-kappa and a learnable temperature
# ---------------------------------------------------------------------------------------


def test_log_kappa_is_the_loss_of_exp_and_its_gradient_the_chain_rule(torch, T):
    z1, z2, k1, k2 = views(torch, seed=3)
    s1, s2 = (torch.log(k).detach().requires_grad_() for k in (k1, k2))
    for reduction in ("mean", "none"):
        via_log = T.pcl_loss(z1, z2, s1, s2, kappa_is_log=True, reduction=reduction)
        direct = T.pcl_loss(z1, z2, torch.exp(s1), torch.exp(s2), reduction=reduction)
        assert float((via_log - direct).abs().max()) <= 1e-15 * float(direct.abs().max())
        g_log = torch.autograd.grad(via_log.sum(), (s1, s2))
        g_kappa = torch.autograd.grad(T.pcl_loss(z1, z2, k1, k2, reduction=reduction).sum(), (k1, k2))
        for gl, gk, k in zip(g_log, g_kappa, (k1, k2)):
            assert float((gl - gk * k.detach()).abs().max()) <= 1e-14 * float(gl.abs().max())
    assert torch.autograd.gradcheck(lambda a, b, c, e: T.pcl_loss(a, b, c, e, kappa_is_log=True),
                                    (z1, z2, s1, s2))


def test_a_learnable_temperature_passes_gradcheck(torch, T):
    z1, z2, *_ = views(torch, seed=4)
    tau = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(lambda a, b, t: T.ntxent_loss(a, b, temperature=t, reduction=reduction),
                                        (z1, z2, tau))
    fixed = T.ntxent_loss(z1, z2, temperature=0.3)
    learned = T.ntxent_loss(z1, z2, temperature=tau)
    assert abs(float(fixed - learned)) <= 1e-15 * float(fixed)


def test_clip_style_temperature_is_learned_in_log_scale(torch, T):
    """``learn_temperature=True``: the parameter is log tau, its gradient tau dL/dtau."""
    z1, z2, *_ = views(torch, seed=5)
    crit = T.NTXentLoss(temperature=0.25, learn_temperature=True).double()
    assert [n for n, _ in crit.named_parameters()] == ["log_temperature"]
    # exact by construction: the parameter is the float32 rounding of log(0.25), widened
    assert float(crit.log_temperature) == float(torch.tensor(math.log(0.25)))
    loss = crit(z1, z2)
    loss.backward()
    tau = crit.current_temperature().detach().requires_grad_()
    (dtau,) = torch.autograd.grad(T.ntxent_loss(z1, z2, temperature=tau), tau)
    assert abs(float(crit.log_temperature.grad) - float(tau) * float(dtau)) <= 1e-14 * abs(float(dtau))
    opt = torch.optim.SGD(crit.parameters(), lr=0.1)
    opt.step()
    assert float(crit.current_temperature().detach()) != 0.25


# ---------------------------------------------------------------------------------------
# The memory bank
# ---------------------------------------------------------------------------------------


def _unit(torch, z):
    return z / torch.linalg.vector_norm(z, dim=1, keepdim=True)


def _batches(torch, count, n=8, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
        z2 = z1 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
        k1, k2 = (torch.rand(n, generator=g, dtype=torch.float64) * 10 + 0.5 for _ in range(2))
        out.append([t.requires_grad_() for t in (z1, z2, k1, k2)])
    return out


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_the_bank_is_the_references_extra_candidates_of_past_views(torch, T, reduction):
    """Size 40, pushes of 16 rows: the queue wraps around. Each loss and gradient is the
    reference's with the views pushed before it as extra candidates (float64, to rounding:
    the candidates' order differs), and nothing flows to them."""
    crit = T.PCLLoss(memory_bank_size=40, reduction=reduction)
    seen_z, seen_k = [], []
    for z1, z2, k1, k2 in _batches(torch, 5):
        loss = crit(z1, z2, k1, k2)
        got = torch.autograd.grad(loss.sum(), (z1, z2, k1, k2))
        extra = {}
        if seen_z:
            extra = {"extra_z": torch.cat(seen_z)[-40:], "extra_kappa": torch.cat(seen_k)[-40:]}
        want, grads = pr.pcl_loss_and_grad(*(t.detach() for t in (z1, z2, k1, k2)), reduction="sum", **extra)
        want_loss = pr.pcl_loss(*(t.detach() for t in (z1, z2, k1, k2)), reduction=reduction, **extra)
        assert float((loss.detach() - want_loss).abs().max()) <= 1e-14 * float(want_loss.abs().max())
        for g, w in zip(got, grads):
            scale = float(w.abs().max())
            if reduction == "mean":
                g = g * 16  # the mean over 2N = 16 anchors
            assert float((g - w).abs().max()) <= 1e-13 * scale
        seen_z.append(_unit(torch, torch.cat([z1, z2]).detach()))
        seen_k.append(torch.cat([k1, k2]).detach())
    bank = crit.memory_bank
    assert bank.filled == 40 and bank.directions.shape == (40, 5) and not bank.directions.requires_grad
    # exact by construction: the same division of the same rows, written at (16 p + i) mod 40
    order = [(16 * p + i) % 40 for p in range(5) for i in range(16)]
    rows = torch.cat(seen_z)
    for slot in range(40):
        last = max(j for j, o in enumerate(order) if o == slot)
        assert torch.equal(bank.directions[slot], rows[last])
        assert torch.equal(bank.kappa[slot], torch.cat(seen_k)[last])


def test_the_bank_holds_the_last_rows_of_a_batch_larger_than_itself(torch, T):
    crit = T.NTXentLoss(memory_bank_size=6)
    (z1, z2, _, _), = _batches(torch, 1)
    crit(z1, z2)
    assert crit.memory_bank.filled == 6 and crit.memory_bank.kappa.shape == (0,)
    assert torch.equal(crit.memory_bank.directions, _unit(torch, torch.cat([z1, z2]).detach())[-6:])


def test_the_ntxent_bank_matches_the_reference(torch, T):
    crit = T.NTXentLoss(temperature=0.3, memory_bank_size=24)
    (a1, a2, _, _), (b1, b2, _, _) = _batches(torch, 2, seed=2)
    crit(a1, a2)
    loss = crit(b1, b2)
    want = pr.ntxent_loss(b1.detach(), b2.detach(), temperature=0.3,
                          extra_z=_unit(torch, torch.cat([a1, a2]).detach()))
    assert abs(float(loss - want)) <= 1e-14 * float(want)


def test_the_bank_is_updated_in_training_mode_only(torch, T):
    crit = T.PCLLoss(memory_bank_size=32)
    batches = _batches(torch, 2)
    crit(*batches[0])
    crit.eval()
    crit(*batches[1])
    assert crit.memory_bank.filled == 16
    crit.train()
    crit(*batches[1])
    assert crit.memory_bank.filled == 32


def test_the_bank_travels_with_the_state_dict(torch, T):
    crit = T.PCLLoss(memory_bank_size=20)
    batches = _batches(torch, 3, seed=5)
    for b in batches[:2]:
        crit(*b)
    state = crit.state_dict()
    assert set(state) == {"memory_bank.directions", "memory_bank.kappa", "memory_bank._extra_state"}
    fresh = T.PCLLoss(memory_bank_size=20)
    fresh.load_state_dict(state)
    assert fresh.memory_bank.state.tolist() == crit.memory_bank.state.tolist() == [20, 12]
    assert torch.equal(fresh(*batches[2]), crit(*batches[2]))  # the same queue: the same computation


def test_half_inputs_fill_a_float32_queue(torch, T):
    crit = T.PCLLoss(memory_bank_size=16)
    z1, z2, k1, k2 = (t.detach().to(torch.bfloat16) for t in _batches(torch, 1)[0])
    crit(z1, z2, k1, k2)
    loss = crit(z1, z2, k1, k2)
    assert crit.memory_bank.directions.dtype == torch.float32 and loss.dtype == torch.bfloat16


def test_a_compiled_step_with_a_bank_compiles_twice_and_matches_eager(torch, T):
    """Once before the queue exists and once after: its shapes are fixed and the filled count
    is read inside the operators, so filling it does not recompile the step."""
    torch._dynamo.reset()
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        encoder = Encoder(torch, dtype=torch.float64)
        crit = T.PCLLoss(memory_bank_size=40)
        step = _step(torch, encoder, crit, True)
        if compiled:
            step = torch.compile(step, backend=counting, fullgraph=True)
        losses[compiled] = []
        for i in range(6):
            loss = step(*_inputs(torch, n=8, seed=10 + i, dtype=torch.float64))
            loss.backward()
            losses[compiled].append(float(loss.detach()))
    torch._dynamo.reset()
    assert len(graphs) == 2
    for a, b in zip(losses[False], losses[True]):
        assert abs(a - b) <= 1e-12 * abs(a)
