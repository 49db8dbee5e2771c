"""SinSim: a fast, differentiable Sinkhorn operator for PyTorch, and the
losses of SinSim (SimCLR + lambda * Sinkhorn) and its baselines.

    >>> import torch, sinsim_ext
    >>> x, y = torch.randn(256, 128), torch.randn(256, 128)
    >>> sinsim_ext.sinkhorn_cost(x, y, eps=0.05)          # differentiable scalar
"""

from . import reference
from .ops import backends, sinkhorn, sinkhorn_cost
from .plan import transport_plan
from .result import SinkhornResult

__version__ = "0.1.0"

__all__ = [
    "SinkhornResult",
    "backends",
    "reference",
    "sinkhorn",
    "sinkhorn_cost",
    "transport_plan",
]
