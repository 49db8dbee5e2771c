"""SinSim: a fast, differentiable Sinkhorn operator for PyTorch, and the
losses of SinSim (SimCLR + lambda * Sinkhorn) and its baselines.

Public API: the operator (``solve``, with ``sinkhorn_cost``, ``sinkhorn``,
``transport_plan`` and ``backends``), its options (``SinkhornOptions``) and
result (``SinkhornResult``), its pure-PyTorch twin (``reference``) and the
losses.

    >>> import torch, sinsim_ext
    >>> x, y = torch.randn(256, 128), torch.randn(256, 128)
    >>> res = sinsim_ext.solve(x, y, eps=0.05)            # value, f, g, plan, n_iter, error
    >>> sinsim_ext.sinkhorn_cost(x, y, eps=0.05)          # the value alone, a differentiable scalar
"""

from . import losses, reference
from .convergence import CONVERGENCE_TOL, SinkhornConvergenceWarning
from .functions import backends, sinkhorn, sinkhorn_cost, solve
from .losses import BarlowTwinsLoss, BYOLLoss, NTXentLoss, SinkhornLoss, SinSimLoss, VICRegLoss
from .options import SinkhornOptions
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
    "SinkhornOptions",
    "SinkhornResult",
    "VICRegLoss",
    "losses",
    "backends",
    "reference",
    "sinkhorn",
    "sinkhorn_cost",
    "solve",
    "transport_plan",
]
