"""SinSim: a fast, differentiable Sinkhorn operator for PyTorch, and the
losses of SinSim (SimCLR + lambda * Sinkhorn) and its baselines.

Public API: the operator (``sinkhorn_cost``, ``sinkhorn``, ``transport_plan``,
``backends``), its pure-PyTorch twin (``reference``) and the losses.

    >>> import torch, sinsim_ext
    >>> x, y = torch.randn(256, 128), torch.randn(256, 128)
    >>> sinsim_ext.sinkhorn_cost(x, y, eps=0.05)          # differentiable scalar
"""

from . import losses, reference
from .losses import BarlowTwinsLoss, BYOLLoss, NTXentLoss, SinkhornLoss, SinSimLoss, VICRegLoss
from .convergence import CONVERGENCE_TOL, SinkhornConvergenceWarning
from .ops import backends, sinkhorn, sinkhorn_cost
from .plan import transport_plan
from .result import SinkhornResult

__version__ = "0.1.0"

__all__ = [
    "BYOLLoss",
    "CONVERGENCE_TOL",
    "SinkhornConvergenceWarning",
    "BarlowTwinsLoss",
    "NTXentLoss",
    "SinSimLoss",
    "SinkhornLoss",
    "SinkhornResult",
    "VICRegLoss",
    "losses",
    "backends",
    "reference",
    "sinkhorn",
    "sinkhorn_cost",
    "transport_plan",
]
