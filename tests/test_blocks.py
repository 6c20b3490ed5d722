"""Processing anchors in row blocks gives the unblocked results to rounding (memory O(block x 2N))."""

from __future__ import annotations

import numpy as np
import pytest

import probcon_ref as pr


def _batch(n=37, d=9, seed=3):
    rng = np.random.default_rng(seed)
    z1, z2 = rng.normal(size=(2, n, d))
    k1, k2 = rng.lognormal(1.0, 1.5, size=(2, n))
    return z1, z2, k1, k2


@pytest.mark.parametrize("block_size", [1, 5, 36, 37, 73, 74, 1000])
def test_blocked_equals_unblocked(block_size):
    args = _batch()
    loss, g = pr.pcl_loss_and_grad(*args)
    loss_b, g_b = pr.pcl_loss_and_grad(*args, block_size=block_size)
    assert abs(float(loss_b) - float(loss)) <= 1e-14 * abs(float(loss))
    for name in g._fields:
        ref = getattr(g, name)
        assert np.max(np.abs(getattr(g_b, name) - ref)) <= 1e-13 * np.max(np.abs(ref)), name
    per = pr.pcl_loss(*args, reduction="none")
    np.testing.assert_allclose(pr.pcl_loss(*args, reduction="none", block_size=block_size), per, rtol=1e-14)
    lt, gt = pr.ntxent_loss_and_grad(*args[:2], temperature=0.3)
    lt_b, gt_b = pr.ntxent_loss_and_grad(*args[:2], temperature=0.3, block_size=block_size)
    assert abs(float(lt_b) - float(lt)) <= 1e-14 * abs(float(lt))
    assert np.max(np.abs(gt_b.z1 - gt.z1)) <= 1e-13 * np.max(np.abs(gt.z1))


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-3, ValueError), (np.int64(0), ValueError),
                                      (2.5, TypeError), (True, TypeError), ("8", TypeError)])
def test_block_size_must_be_positive_int(bad, exc):
    with pytest.raises(exc, match="block_size must be a positive integer or None, got"):
        pr.pcl_loss(*_batch(), block_size=bad)


@pytest.mark.parametrize("size", [np.int64(3), np.int32(3), np.array(3)])
def test_block_size_takes_any_integer_type(size):
    args = _batch()
    assert float(pr.pcl_loss(*args, block_size=size)) == pytest.approx(float(pr.pcl_loss(*args)), rel=1e-14)


def test_blocked_memory_is_bounded_by_the_block():
    """Peak extra memory of loss+gradient at 2N = 8192 (float32) with 128-row blocks.

    One full (2N x 2N) float32 matrix is 256 MiB; the blocked pass keeps a handful of
    (128 x 8192) matrices (4 MiB each) plus O(2N d) vectors. Measured in a child process.
    """
    from probcon_ref.tools.bench import peak_extra_memory

    full_matrix = 8192 * 8192 * 4
    blocked = peak_extra_memory("numpy-pcl", 8192, 32, "float32", block_size=128)
    assert blocked < full_matrix / 4, f"{blocked / 2**20:.1f} MiB"
