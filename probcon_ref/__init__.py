"""probcon_ref: the reference implementation of the probabilistic contrastive loss.

Li, Xu & Hooi, "Probabilistic Contrastive Loss for Self-Supervised Learning",
arXiv:2112.01642. One implementation, written against the Python array API standard,
runs on NumPy, PyTorch (CPU and CUDA), CuPy and any other conforming library.
"""

from . import special
from .cupy import use_fused_kernels
from .loss import (
    NTXentGrads,
    PCLGrads,
    ntxent_loss,
    ntxent_loss_and_grad,
    pcl_loss,
    pcl_loss_and_grad,
)

__version__ = "0.1.0"

__all__ = [
    "special",
    "pcl_loss",
    "pcl_loss_and_grad",
    "ntxent_loss",
    "ntxent_loss_and_grad",
    "PCLGrads",
    "NTXentGrads",
    "use_fused_kernels",
    "__version__",
]
