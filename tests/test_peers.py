"""Agreement with code this project did not write, and a naive PCL that fails where predicted.

NT-Xent peers (installed by the ``peers`` extra; each test skips with the reason when its
package is absent here, and CI installs them): pytorch-metric-learning's ``NTXentLoss``
wrapped in ``SelfSupervisedLoss``, info-nce-pytorch's ``info_nce`` with paired negatives,
and the ``infonce`` package's ``InfoNCE``. The adapters are in ``tests/peers/ntxent_peers.py``.
All three compute ``-log softmax`` from the logits, the textbook form of the contract, section 4: they
agree with the reference to 1e-12 wherever the loss is not tiny, and ``validate`` rejects
them, naming the textbook form, exactly where it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probcon_ref import ntxent_loss_and_grad
from probcon_ref.testing import battery, load_callable, validate

torch = pytest.importorskip("torch")

PEERS = Path(__file__).resolve().parent / "peers"
PACKAGES = {
    "pytorch_metric_learning": "pytorch_metric_learning",
    "info_nce_pytorch": "info_nce",
    "infonce": "infonce",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def peer(name):
    pytest.importorskip(PACKAGES.get(name.replace("_default", ""), name),
                        reason=f"peer package for {name} not installed (pip install -e '.[peers]')")
    return load_callable(f"{PEERS / 'ntxent_peers.py'}:{name}")


def batches(specs=((2, 3, 0.5, 0.5), (8, 16, 0.1, 0.7), (32, 128, 0.07, 1.0), (64, 32, 1.0, 0.1),
                    (5, 2, 0.2, 0.5), (16, 513, 0.05, 2.0))):
    """Random float64 batches (N, d, temperature, noise between the views), raw norms 1e-2 to 1e2."""
    out = []
    for seed, (n, d, tau, noise) in enumerate(specs):
        rng = np.random.default_rng(seed)
        z1 = rng.standard_normal((n, d)) * 10.0 ** rng.uniform(-2, 2, (n, 1))
        z2 = z1 + noise * np.abs(z1).mean(axis=1, keepdims=True) * rng.standard_normal((n, d))
        out.append((z1, z2, tau))
    return out


def peer_errors(fn, z1, z2, tau):
    """Relative errors of a peer's loss and gradient blocks (block max-norm) against the reference."""
    loss, grads = ntxent_loss_and_grad(z1, z2, temperature=tau)
    a = torch.tensor(z1, requires_grad=True)
    b = torch.tensor(z2, requires_grad=True)
    got = fn(a, b, tau)
    assert got.dtype == torch.float64
    ga, gb = torch.autograd.grad(got, [a, b])
    out = {"loss": abs(got.item() - float(loss)) / abs(float(loss)), "abs_loss": abs(got.item() - float(loss))}
    for key, g, want in (("z1", ga, grads.z1), ("z2", gb, grads.z2)):
        out[key] = float(np.max(np.abs(g.numpy() - want)) / np.max(np.abs(want)))
    return out


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_peer_ntxent_agrees_in_float64_to_1e12(name):
    fn = peer(name)
    worst = {"loss": 0.0, "z1": 0.0, "z2": 0.0}
    for z1, z2, tau in batches():
        # the comparison is meant where the losses are not tiny (see the next test)
        from probcon_ref import ntxent_loss

        assert np.min(ntxent_loss(z1, z2, temperature=tau, reduction="none")) > 1e-4
        errors = peer_errors(fn, z1, z2, tau)
        for key in worst:
            worst[key] = max(worst[key], errors[key])
    assert max(worst.values()) <= 1e-12, worst


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_peer_ntxent_with_tiny_losses_is_right_to_the_rounding_of_its_logits(name):
    """Confidently matched views (losses ~1e-8): -log softmax computed as logits minus their
    log-sum-exp keeps an absolute error of a few ulps of the logits (1/tau), not of the loss."""
    fn = peer(name)
    (z1, z2, tau), = batches(((16, 512, 0.05, 0.2),))
    from probcon_ref import ntxent_loss

    assert np.max(ntxent_loss(z1, z2, temperature=tau, reduction="none")) < 1e-6
    errors = peer_errors(fn, z1, z2, tau)
    assert errors["abs_loss"] <= 64 * np.finfo(np.float64).eps / tau, errors


TEXTBOOK = {"tiny-loss", "gradient:positive-weight"}


def textbook_runs(report) -> set:
    return set().union(*(set(f.runs) for f in report.findings if f.signature in TEXTBOOK))


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_validate_passes_peer_but_where_its_textbook_form_loses_a_tiny_loss(name):
    """Every run passes except where the loss is tiny; those fail, every one named as the
    textbook form (loss, and the positive's weight under autograd), and nothing else."""
    report = validate(peer(name), loss="ntxent", framework="torch", target=name)
    assert {r.gradients for r in report.results} == {"autograd"}
    bad = report.runs("fail") | report.runs("error")
    assert set(report.signatures) <= TEXTBOOK and textbook_runs(report) == bad
    assert ("small-tau", "float64") in bad
    for r in report.results:
        if r.run in bad:
            assert np.max(r._ref.losses) < 1e-3, r.run  # the regime the contract, section 4 warns of
    assert len(report.runs("pass")) >= len(report.results) - 6


def test_validate_names_pytorch_metric_learning_default_temperature():
    """NTXentLoss() without a temperature uses 0.07; validating it at 0.5 says so."""
    report = validate(peer("pytorch_metric_learning_default"), loss="ntxent", framework="torch",
                      temperature=0.5, dtypes=["float64"])
    assert not report.passed
    assert report.signatures == ["temperature=0.07"]


def test_validate_names_info_nce_default_convention():
    """info_nce(z1, z2) alone is one direction with the other view as candidates: not NT-Xent."""
    report = validate(peer("info_nce_pytorch_default"), loss="ntxent", framework="torch")
    assert not report.passed
    assert report.signatures == ["cross-view-only+one-direction"]
    (finding,) = report.findings
    assert set(finding.runs) == report.runs("fail")


def test_naive_pcl_fails_exactly_where_the_special_functions_predict():
    """SciPy's ive in a PyTorch PCL: right everywhere except where the contract, section 5 says it breaks,
    and, since its loss is ``F.cross_entropy``, where the loss is tiny (the contract, section 4)."""
    pytest.importorskip("scipy")
    naive = load_callable(f"{PEERS / 'naive_pcl.py'}:pcl_loss")
    report = validate(naive, framework="torch")
    assert not report.passed
    assert report.signatures == ["tiny-loss", "gradient:positive-weight", "bessel-underflow", "kappa-zero"]
    predicted = {r.run for r in report.results
                 if r._ref.facts.get("kappa_zero") or _ive_underflows(r._ref.facts, r.dtype)}
    tiny = {(c.name, dt) for c in battery("pcl") if "tiny-loss" in c.tags for dt in ("float64", "float32")}
    assert textbook_runs(report) <= tiny
    assert report.runs("fail") == predicted | textbook_runs(report)
    assert ("confident", "float64") in textbook_runs(report)
    # float64 and float32 both show it, and plenty passes
    assert {dt for _, dt in predicted} == {"float64", "float32"}
    assert len(report.runs("pass")) >= len(report.results) // 2
    underflow = report.findings[2]
    assert underflow.summary.startswith("Bessel underflow")
    assert {c for c, _ in underflow.runs} >= {"large-d", "large-order-tiny-kappa"}
    assert "ive(2047" in underflow.detail and "contract page, section 5" in underflow.detail


def _ive_underflows(facts, dtype):
    from probcon_ref.testing.diagnose import LOG_TINY

    value = facts.get("min_log_ive")
    return value is not None and value[0] < LOG_TINY[dtype]


def test_naive_pcl_regimes_are_in_the_battery():
    """The battery holds cases on both sides of the float64 ive threshold at order 2047."""
    cases = {c.name: c for c in battery("pcl")}
    assert cases["large-d"].d == 4096 and max(cases["large-d"].inputs["kappa1"]) < 2500
    assert min(cases["large-d-huge-kappa"].inputs["kappa1"]) > 3000
