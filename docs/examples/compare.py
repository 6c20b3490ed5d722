"""Compare another implementation of the PCL with the reference, block by block.

``candidate`` below is a small PyTorch port for d = 3, where the vMF normaliser has the
closed form log C_3(k) = log k - log(4 pi) - log sinh k, with gradients from autograd.
Replace it with the implementation under test: any callable taking NumPy float64 arrays
(z1, z2, kappa1, kappa2) and returning the mean loss and the four gradients as NumPy arrays.
"""

import numpy as np
import torch

from probcon_ref import pcl_loss_and_grad
from probcon_ref.testing.tolerances import TOLERANCES

# The contract's float64 bounds, from the table validate and the tests read: the loss relative,
# each gradient block max-norm relative. Dividing a block's error by its own max-norm, as
# compare() does, is never looser than the contract's measure, whose scale is at least that.
LOSS_TOL, GRAD_TOL = TOLERANCES["float64"]


def candidate(z1, z2, kappa1, kappa2):
    z1, z2, k1, k2 = (torch.tensor(a, requires_grad=True) for a in (z1, z2, kappa1, kappa2))
    mu = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    kappa = torch.cat([k1, k2])
    log_sinh = kappa + torch.log1p(-torch.exp(-2 * kappa)) - np.log(2.0)
    log_c = torch.log(kappa) - np.log(4 * np.pi) - log_sinh
    logits = log_c[None, :] + kappa[None, :] * (mu @ mu.T)
    logits = logits.masked_fill(torch.eye(len(mu), dtype=torch.bool), -torch.inf)
    n = z1.shape[0]
    positive = (torch.arange(2 * n) + n) % (2 * n)
    loss = torch.nn.functional.cross_entropy(logits, positive)
    loss.backward()
    return loss.item(), [t.grad.numpy() for t in (z1, z2, k1, k2)]


def compare(implementation, z1, z2, kappa1, kappa2):
    """Relative errors of the loss and of each gradient block against the reference."""
    ref_loss, ref_grads = pcl_loss_and_grad(z1, z2, kappa1, kappa2)
    loss, grads = implementation(z1, z2, kappa1, kappa2)
    errors = {"loss": abs(loss - float(ref_loss)) / abs(float(ref_loss))}
    for name, got, want in zip(ref_grads._fields, grads, ref_grads):
        errors[name] = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    return errors


rng = np.random.default_rng(0)
z1 = rng.normal(size=(16, 3))
z2 = z1 + 0.3 * rng.normal(size=(16, 3))
kappa1, kappa2 = rng.uniform(0.5, 20.0, size=(2, 16))

errors = compare(candidate, z1, z2, kappa1, kappa2)
for name, err in errors.items():
    tol = LOSS_TOL if name == "loss" else GRAD_TOL
    print(f"{name:7s} {err:.1e}  {'ok' if err <= tol else 'FAIL'}")
assert all(err <= (LOSS_TOL if k == "loss" else GRAD_TOL) for k, err in errors.items())
