"""Which implementation of the loss's elementwise steps runs: chosen once per call.

The public functions (:func:`probcon_ref.pcl_loss` and the others) ask :func:`elementwise_steps` once and pass the
answer to the mathematics of :mod:`probcon_ref.loss`, which never asks itself: CuPy arrays
take the fused kernels of :mod:`probcon_ref.cupy` (unless
:func:`probcon_ref.use_fused_kernels` turns them off), every other library the array-API
reference, :class:`probcon_ref.loss.ElementwiseSteps`. The CuPy path is imported only when
CuPy arrays arrive.
"""

from __future__ import annotations

import array_api_compat

from .loss import ElementwiseSteps

__all__ = ["elementwise_steps"]


def elementwise_steps(xp) -> ElementwiseSteps:
    """The elementwise steps for arrays of namespace ``xp``."""
    if array_api_compat.is_cupy_namespace(xp):
        from . import cupy as fused

        steps = fused.steps_for(xp)
        if steps is not None:
            return steps
    return ElementwiseSteps(xp)
