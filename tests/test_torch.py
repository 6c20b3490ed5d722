"""probcon_ref.torch: autograd functions with the analytic backward, modules, autocast, training.

Every test runs on the CPU and, marked ``gpu``, on a CUDA device; a missing PyTorch or GPU is
a skip with the reason (a failure for the names in ``PROBCON_REQUIRE_BACKENDS``).
"""

from __future__ import annotations

import numpy as np
import pytest

import probcon_ref as pr

from conftest import require

DEVICES = [pytest.param("cpu", id="torch-cpu"),
           pytest.param("cuda", id="torch-cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request):
    require(f"torch-{request.param}")
    return request.param


def batch(torch, device, dtype, *, n=5, d=6, seed=0, requires_grad=True):
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(n, d)) * rng.lognormal(0.0, 1.0, size=(n, 1))
    z2 = z1 + 0.7 * rng.normal(size=(n, d)) * np.abs(z1).mean(axis=1, keepdims=True)
    k1, k2 = rng.uniform(0.5, 6.0, size=(2, n))
    out = [torch.tensor(a, dtype=dtype, device=device) for a in (z1, z2, k1, k2)]
    for t in out:
        t.requires_grad_(requires_grad)
    return out


# ---------------------------------------------------------------------------------------
# The backward is the analytic gradient, scaled by the incoming gradient
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pcl_passes_gradcheck_in_float64(torch, T, device, reduction):
    inputs = tuple(batch(torch, device, torch.float64))
    assert torch.autograd.gradcheck(
        lambda *a: T.pcl_loss(*a, reduction=reduction), inputs, eps=1e-6, atol=1e-8, rtol=1e-6
    )


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_in_blocks_of_anchors(torch, T, device, reduction):
    inputs = tuple(batch(torch, device, torch.float64, seed=4))
    assert torch.autograd.gradcheck(
        lambda *a: T.pcl_loss(*a, reduction=reduction, block_size=3), inputs, eps=1e-6, atol=1e-8, rtol=1e-6
    )
    assert torch.autograd.gradcheck(
        lambda a, b: T.NTXentLoss(reduction=reduction, block_size=4)(a, b), inputs[:2],
        eps=1e-6, atol=1e-8, rtol=1e-6,
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ntxent_passes_gradcheck_in_float64(torch, T, device, reduction):
    z1, z2, _, _ = batch(torch, device, torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, b: T.ntxent_loss(a, b, temperature=0.3, reduction=reduction), (z1, z2),
        eps=1e-6, atol=1e-8, rtol=1e-6,
    )


def test_backward_is_the_reference_gradient_times_the_incoming_one(torch, T, device):
    z1, z2, k1, k2 = batch(torch, device, torch.float64)
    loss = T.pcl_loss(z1, z2, k1, k2)
    (2.5 * loss).backward()
    want_loss, want = pr.pcl_loss_and_grad(z1.detach(), z2.detach(), k1.detach(), k2.detach())
    assert torch.equal(loss.detach(), want_loss)
    for got, ref in zip((z1.grad, z2.grad, k1.grad, k2.grad), want):
        torch.testing.assert_close(got, 2.5 * ref, rtol=1e-15, atol=0)


def test_reduction_none_backward_uses_the_incoming_gradient_as_weights(torch, T, device):
    z1, z2, k1, k2 = batch(torch, device, torch.float64, seed=1)
    v = torch.linspace(-1.0, 2.0, 2 * z1.shape[0], dtype=torch.float64, device=device)
    per_anchor = T.pcl_loss(z1, z2, k1, k2, reduction="none")
    assert per_anchor.shape == (2 * z1.shape[0],)
    (per_anchor * v).sum().backward()
    _, want = pr.pcl_loss_and_grad(*(t.detach() for t in (z1, z2, k1, k2)), weights=v)
    for got, ref in zip((z1.grad, z2.grad, k1.grad, k2.grad), want):
        torch.testing.assert_close(got, ref, rtol=1e-14, atol=1e-16)

    a, b = (t.detach().requires_grad_() for t in (z1, z2))
    (T.ntxent_loss(a, b, reduction="none") * v).sum().backward()
    _, want = pr.ntxent_loss_and_grad(z1.detach(), z2.detach(), weights=v)
    torch.testing.assert_close(a.grad, want.z1, rtol=1e-14, atol=1e-16)
    torch.testing.assert_close(b.grad, want.z2, rtol=1e-14, atol=1e-16)


def test_gradients_flow_only_where_asked_and_through_upstream_graphs(torch, T, device):
    z1, z2, k1, k2 = batch(torch, device, torch.float64, requires_grad=False)
    z1.requires_grad_()
    raw = torch.zeros_like(k1, requires_grad=True)
    kappa = torch.nn.functional.softplus(raw) + k1  # a non-leaf kappa
    T.pcl_loss(z1, z2, kappa, k2).backward()
    _, want = pr.pcl_loss_and_grad(z1.detach(), z2, kappa.detach(), k2)
    torch.testing.assert_close(z1.grad, want.z1, rtol=1e-15, atol=0)
    torch.testing.assert_close(raw.grad, want.kappa1 * torch.sigmoid(raw.detach()), rtol=1e-15, atol=0)
    assert z2.grad is None and k2.grad is None


def test_no_grad_and_detached_inputs_give_the_same_loss(torch, T, device):
    inputs = batch(torch, device, torch.float32)
    with_grad = T.pcl_loss(*inputs)
    with torch.no_grad():
        without = T.pcl_loss(*inputs)
    assert not without.requires_grad and with_grad.requires_grad
    assert torch.equal(with_grad.detach(), without)


def test_double_backward_is_refused(torch, T, device):
    """The backward is analytic and differentiable once: asking for a graph of the gradient
    (a second derivative, a gradient penalty) is an error, never a silently missing term."""
    z1, z2, k1, k2 = batch(torch, device, torch.float64)
    for reduction in ("mean", "none"):
        loss = T.pcl_loss(z1, z2, k1, k2, reduction=reduction).sum()
        with pytest.raises(RuntimeError, match="differentiable once"):
            torch.autograd.grad(loss, z1, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(T.ntxent_loss(z1, z2), z2, create_graph=True)
    # without create_graph the same call is fine
    (g,) = torch.autograd.grad(T.pcl_loss(z1, z2, k1, k2), z1)
    assert g.shape == z1.shape


@pytest.mark.parametrize("bad", ["nan", "inf"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_a_non_finite_incoming_gradient_propagates_whatever_the_reduction(torch, T, device, reduction, bad):
    """One rule, as through PyTorch's own losses (what a gradient scaler's overflow check
    relies on): non-finite input gradients, never an exception about weights the caller did
    not pass."""
    for dtype in (torch.float64, torch.float16):
        z1, z2, k1, k2 = batch(torch, device, dtype, seed=5)
        for loss, leaves in ((T.pcl_loss(z1, z2, k1, k2, reduction=reduction), (z1, z2, k1, k2)),
                             (T.ntxent_loss(z1, z2, reduction=reduction), (z1, z2))):
            upstream = torch.ones_like(loss)
            upstream.view(-1)[-1] = float(bad)  # one anchor's entry for "none"
            loss.backward(upstream)
            for t in leaves:
                assert t.grad.dtype == dtype and not bool(torch.isfinite(t.grad).any()), (dtype, t.shape)
                t.grad = None


def test_a_finite_incoming_gradient_is_unchanged_by_the_non_finite_rule(torch, T, device):
    """The rule adds nothing to finite weights: the gradient is the reference's, to the bit."""
    z1, z2, k1, k2 = batch(torch, device, torch.float64, seed=6)
    v = torch.linspace(-3.0, 1.0, 2 * z1.shape[0], dtype=torch.float64, device=device)
    T.pcl_loss(z1, z2, k1, k2, reduction="none").backward(v)
    _, want = pr.pcl_loss_and_grad(*(t.detach() for t in (z1, z2, k1, k2)), weights=v)
    for got, ref in zip((z1.grad, z2.grad, k1.grad, k2.grad), want):
        assert torch.equal(got, ref)


# ---------------------------------------------------------------------------------------
# Device, dtype, half precision and autocast
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_outputs_keep_device_and_dtype(torch, T, device, dtype):
    dt = getattr(torch, dtype)
    z1, z2, k1, k2 = batch(torch, device, dt)
    for reduction in ("mean", "none"):
        loss = T.pcl_loss(z1, z2, k1, k2, reduction=reduction)
        assert loss.device == z1.device and loss.dtype == dt
        loss.sum().backward()
        for t in (z1, z2, k1, k2):
            assert t.grad.device == t.device and t.grad.dtype == dt and bool(torch.isfinite(t.grad).all())
            t.grad = None
    loss = T.ntxent_loss(z1, z2)
    assert loss.device == z1.device and loss.dtype == dt


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_inputs_are_computed_in_float32_and_scaled_before_rounding(torch, T, device, half):
    """Half inputs: the loss and the gradients are the float32 results rounded once, and the
    incoming gradient (a gradient scaler's factor) multiplies before that rounding."""
    dt = getattr(torch, half)
    inputs = batch(torch, device, dt, seed=2)
    wide = [t.detach().float().requires_grad_() for t in inputs]
    loss = T.pcl_loss(*inputs)
    ref = T.pcl_loss(*wide)
    assert torch.equal(loss.detach(), ref.detach().to(dt))
    scale = 1000.0  # not a power of two: rounding before scaling would differ in the last bit
    (loss * scale).backward()
    (ref * scale).backward()
    for t, w in zip(inputs, wide):
        assert torch.equal(t.grad, w.grad.to(dt))


def test_mixed_half_and_float32_inputs_promote(torch, T, device):
    z1, z2, k1, k2 = batch(torch, device, torch.float16)
    k1 = k1.detach().float().requires_grad_()
    k2 = k2.detach().float().requires_grad_()
    loss = T.pcl_loss(z1, z2, k1, k2)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z1.grad.dtype == torch.float16 and k1.grad.dtype == torch.float32


def _autocast_dtypes(torch, device):
    out = [torch.bfloat16]
    if device == "cuda" or torch.amp.autocast_mode.is_autocast_available("cpu"):
        out.append(torch.float16)
    return out


def test_autocast_is_switched_off_inside(torch, T, device):
    """Under autocast the loss equals the loss computed outside it, bit for bit: inside, the
    matrix products run in the inputs' precision, not in the autocast dtype."""
    inputs = batch(torch, device, torch.float32, seed=3)
    outside = T.pcl_loss(*inputs)
    outside_nt = T.ntxent_loss(inputs[0], inputs[1])
    for cast in _autocast_dtypes(torch, device):
        with torch.autocast(device_type=device, dtype=cast):
            inside = T.pcl_loss(*inputs)
            inside_nt = T.ntxent_loss(inputs[0], inputs[1])
            assert (inputs[0] @ inputs[1].T).dtype == cast  # autocast is on around the call
        assert inside.dtype == torch.float32 and torch.equal(inside, outside)
        assert torch.equal(inside_nt, outside_nt)


def test_autocast_training_step_returns_a_float32_loss(torch, T, device):
    """A linear layer under autocast produces half embeddings; the loss is computed in float32
    and, as PyTorch's own losses under autocast, returned in float32 (not rounded to the half
    dtype); the gradients come back in each input's dtype, finite for the layer."""
    g = torch.Generator(device="cpu").manual_seed(0)
    layer = torch.nn.Linear(12, 6).to(device)
    head = torch.nn.Linear(12, 1).to(device)
    x1 = torch.randn(16, 12, generator=g).to(device)
    x2 = x1 + 0.1 * torch.randn(16, 12, generator=g).to(device)
    for cast in _autocast_dtypes(torch, device):
        with torch.autocast(device_type=device, dtype=cast):
            z1, z2 = layer(x1), layer(x2)
            # exp runs in float32 under CUDA autocast; the cast makes kappa half like z
            k1, k2 = (torch.exp(head(x).squeeze(-1)).to(cast) for x in (x1, x2))
            assert z1.dtype == cast and k1.dtype == cast
            loss = T.pcl_loss(z1, z2, k1, k2)
        assert loss.dtype == torch.float32
        want = pr.pcl_loss(*(t.detach().float() for t in (z1, z2, k1, k2)))
        assert torch.equal(loss.detach(), want)  # the same float32 computation, nothing rounded after it
        grads = torch.autograd.grad(loss, (z1, k1), retain_graph=True)
        assert [g.dtype for g in grads] == [cast, cast]
        loss.backward()
        for p in (*layer.parameters(), *head.parameters()):
            assert bool(torch.isfinite(p.grad).all())
            p.grad = None


# ---------------------------------------------------------------------------------------
# Modules and input rules
# ---------------------------------------------------------------------------------------


def test_modules_follow_the_familiar_calling_convention(torch, T, device):
    z1, z2, k1, k2 = batch(torch, device, torch.float64)
    crit = T.PCLLoss()
    assert "reduction='mean'" in repr(crit)
    assert torch.equal(crit(z1, z2, k1, k2), T.pcl_loss(z1, z2, k1, k2))
    assert crit(z1, z2, k1, k2).shape == ()
    assert T.PCLLoss(reduction="none")(z1, z2, k1, k2).shape == (2 * z1.shape[0],)
    nt = T.NTXentLoss()
    assert nt.temperature == 0.5  # the default people know from lightly
    assert torch.equal(nt(z1, z2), T.ntxent_loss(z1, z2, temperature=0.5))
    # kappa = 1/tau everywhere is NT-Xent(tau) exactly
    tau = 0.2
    k = torch.full_like(k1, 1 / tau)
    torch.testing.assert_close(crit(z1, z2, k, k), T.NTXentLoss(temperature=tau)(z1, z2), rtol=1e-13, atol=0)


def test_bad_arguments_fail_clearly(torch, T):
    z1, z2, k1, k2 = batch(torch, "cpu", torch.float64)
    with pytest.raises(TypeError, match="kappa2 must be a torch.Tensor"):
        T.pcl_loss(z1, z2, k1, k2.detach().numpy())
    with pytest.raises(TypeError, match="z1 must be a torch.Tensor"):
        T.ntxent_loss([[1.0, 0.0]], z2)
    with pytest.raises(ValueError, match="reduction must be one of"):
        T.PCLLoss(reduction="avg")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        T.NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="kappa1 must have shape"):
        T.pcl_loss(z1, z2, k1[:, None], k2)  # a (N, 1) confidence head must be squeezed
    with pytest.raises(ValueError, match="kappa2 must be non-negative"):
        T.pcl_loss(z1, z2, k1, -k2)
    with pytest.raises(TypeError, match="z1 must have a real floating dtype"):
        T.ntxent_loss(z1.detach().long(), z2.detach().long())


def test_options_are_checked_when_a_module_is_built(torch, T):
    """Not at the first forward: every option, with the argument named."""
    for make in (lambda **o: T.PCLLoss(**o), lambda **o: T.NTXentLoss(**o)):
        for bad in (0, -2):
            with pytest.raises(ValueError, match=f"^block_size must be a positive integer or None, got {bad}$"):
                make(block_size=bad)
        for bad, name in ((True, "bool"), (torch.tensor(True), "bool"), (2.0, "float"), ("4", "str")):
            with pytest.raises(TypeError, match=f"^block_size must be a positive integer or None, got {name}$"):
                make(block_size=bad)
        with pytest.raises(ValueError, match="^reduction must be one of .*, got 'avg'$"):
            make(reduction="avg")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="^temperature must be a finite number > 0"):
            T.NTXentLoss(temperature=bad)
    with pytest.raises(TypeError, match="^temperature must be a real .*got str$"):
        T.NTXentLoss(temperature="0.5")


def test_functions_check_block_size_before_computing(torch, T):
    z1, z2, k1, k2 = batch(torch, "cpu", torch.float64)
    with pytest.raises(ValueError, match="^block_size must be a positive integer or None, got 0$"):
        T.pcl_loss(z1, z2, k1, k2, block_size=0)
    with pytest.raises(TypeError, match="^block_size must be a positive integer or None, got bool$"):
        T.ntxent_loss(z1, z2, block_size=False)


def test_block_size_of_any_integer_type_is_accepted(torch, T):
    z1, z2, k1, k2 = batch(torch, "cpu", torch.float64, seed=7)
    want = T.PCLLoss(block_size=3)(z1, z2, k1, k2)
    for size in (np.int64(3), np.uint8(3), torch.tensor(3)):
        crit = T.PCLLoss(block_size=size)
        assert type(crit.block_size) is int and crit.block_size == 3
        assert torch.equal(crit(z1, z2, k1, k2), want)
        assert type(T.NTXentLoss(block_size=size).block_size) is int
    assert torch.equal(T.pcl_loss(z1, z2, k1, k2, block_size=np.int32(3)), want)
    assert "block_size=3" in repr(T.PCLLoss(block_size=np.int64(3)))


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def _train(torch, T, device, positive: str, steps: int = 120):
    """A tiny encoder with a confidence head on clustered data, a quarter of the samples
    heavily corrupted. Returns the losses, the kappas seen and the model."""
    g = torch.Generator(device="cpu").manual_seed(0)
    protos = 2.0 * torch.randn(8, 16, generator=g)

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU())
            self.proj = torch.nn.Linear(32, 8)
            self.confidence = torch.nn.Linear(32, 1)

        def forward(self, x):
            h = self.body(x)
            c = self.confidence(h).squeeze(-1)
            kappa = torch.nn.functional.softplus(c) if positive == "softplus" else torch.exp(c)
            return self.proj(h), kappa

    torch.manual_seed(0)
    model = Encoder().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    crit = T.PCLLoss()
    losses, kappas = [], []
    head_before = model.confidence.weight.detach().clone()
    for _ in range(steps):
        labels = torch.randint(0, 8, (64,), generator=g)
        noise = torch.where(torch.arange(64) < 16, 2.0, 0.2)[:, None]
        x = protos[labels]
        v1 = (x + noise * torch.randn(64, 16, generator=g)).to(device)
        v2 = (x + noise * torch.randn(64, 16, generator=g)).to(device)
        (z1, k1), (z2, k2) = model(v1), model(v2)
        loss = crit(z1, z2, k1, k2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert bool(torch.isfinite(loss)), "the loss became NaN or infinite"
        losses.append(float(loss.detach()))
        kappas.append(torch.cat([k1, k2]).detach().cpu().numpy())
    head_moved = float((model.confidence.weight.detach() - head_before).abs().max())
    return np.array(losses), np.array(kappas), head_moved


@pytest.mark.parametrize("positive", ["softplus", "exp"])
def test_training_decreases_the_loss(torch, T, device, positive):
    losses, kappas, head_moved = _train(torch, T, device, positive)
    first, last = losses[:10].mean(), losses[-10:].mean()
    assert np.all(np.isfinite(losses)) and np.all(np.isfinite(kappas))
    assert last < 0.75 * first, f"loss went from {first:.3f} to {last:.3f}"
    assert head_moved > 1e-3, "the confidence head received no gradient"
    assert np.all(kappas > 0) and kappas[-1].std() > 0  # confidences differ between views


def test_half_precision_loss_beyond_its_range_is_an_overflow_error(torch, T):
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float16)
    k = torch.full((2,), 4e4, dtype=torch.float16)
    wide = float(T.pcl_loss(z.double(), -z.double(), k.double(), k.double()))
    assert wide > torch.finfo(torch.float16).max  # the claim the message makes
    with pytest.raises(OverflowError, match="the loss is not representable in torch.float16"):
        T.PCLLoss()(z, -z, k, k)
    assert torch.isfinite(T.PCLLoss()(z, z, k, k))  # representable results stay finite
