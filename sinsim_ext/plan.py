"""The transport plan from a pair of dual potentials."""

from __future__ import annotations

from typing import Optional

import torch

from ._checks import prepare
from .reference import cost_matrix


def transport_plan(
    x: torch.Tensor,
    y: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    *,
    eps: float = 0.05,
    cost: str = "sqeuclidean",
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, shape ``(n, m)`` or ``(B, n, m)``.

    ``f`` and ``g`` come from :func:`sinsim_ext.sinkhorn` (or its reference
    twin) called with the same ``x``, ``y``, ``eps``, ``cost``, ``a``, ``b``.
    Its row sums are ``a`` (exactly, up to rounding) and its column sums
    approach ``b`` as the iterations converge. Pure PyTorch, differentiable.
    """
    pb = prepare(x, y, eps=eps, cost=cost, a=a, b=b)
    f2 = f.reshape(pb.a.shape).to(pb.x.dtype)
    g2 = g.reshape(pb.b.shape).to(pb.x.dtype)
    C = cost_matrix(pb.x, pb.y, pb.cost)
    log_p = pb.a.log().unsqueeze(-1) + pb.b.log().unsqueeze(-2) + (f2.unsqueeze(-1) + g2.unsqueeze(-2) - C) / pb.eps
    P = log_p.exp()
    return P if pb.batched else P[0]
