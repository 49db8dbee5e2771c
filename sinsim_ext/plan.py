"""The transport plan from a pair of dual potentials."""

from __future__ import annotations

from typing import Optional

import torch

from ._checks import prepare
from .costs import cost_matrix
from .implicit import plan


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
    approach ``b`` as the iterations converge.

    Pure PyTorch, differentiable in all its arguments. With the potentials of
    :func:`sinsim_ext.sinkhorn`, which are themselves differentiable in
    ``x``, ``y``, ``a``, ``b`` (implicit differentiation), the plan is
    differentiable end to end, to any order and in forward mode. Weights may
    be zero; the plan's first derivatives with respect to them are exact (no
    NaN from ``log 0``).
    """
    pb = prepare(x, y, eps=eps, cost=cost, a=a, b=b)
    f2 = f.reshape(pb.a.shape).to(pb.x.dtype)
    g2 = g.reshape(pb.b.shape).to(pb.x.dtype)
    P = plan(cost_matrix(pb.x, pb.y, pb.cost), f2, g2, pb.a, pb.b, pb.eps)
    return P if pb.batched else P[0]
