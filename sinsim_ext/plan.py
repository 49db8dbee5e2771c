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
    twin) called with the same ``x``, ``y``, ``eps``, ``cost``, ``a``, ``b``
    (:attr:`sinsim_ext.SinkhornResult.plan` is this plan of a result).
    Its row sums are ``a`` (exactly, up to rounding) and its column sums
    approach ``b`` as the iterations converge.

    Pure PyTorch, differentiable in all its arguments. With the potentials of
    :func:`sinsim_ext.sinkhorn`, which are themselves differentiable in
    ``x``, ``y``, ``a``, ``b`` (implicit differentiation), the plan is
    differentiable end to end, to any order and in forward mode. Weights may
    be zero; the plan's first derivatives with respect to them are exact (no
    NaN from ``log 0``).
    """
    pb = prepare(x, y, a=a, b=b, caller="transport_plan", eps=eps, cost=cost)
    f2 = _potential("f", f, pb.a.shape, pb.batched, "x").to(pb.x.dtype)
    g2 = _potential("g", g, pb.b.shape, pb.batched, "y").to(pb.x.dtype)
    P = plan(cost_matrix(pb.x, pb.y, pb.options.cost), f2, g2, pb.a, pb.b, pb.options.eps)
    return pb.unbatched(P)


def _potential(name: str, t, shape: torch.Size, batched: bool, points: str) -> torch.Tensor:
    """``t`` as the ``(B, count)`` potential of ``points``; it must have the
    shape :func:`sinsim_ext.sinkhorn` returns, ``(count,)`` or ``(B, count)``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (from sinsim_ext.sinkhorn), got {type(t).__name__}")
    expected = tuple(shape) if batched else (shape[-1],)
    if tuple(t.shape) != expected:
        raise ValueError(f"{name} must have shape {expected} (one entry per point of {points}), got "
                         f"{tuple(t.shape)}; pass the potentials of sinsim_ext.sinkhorn(x, y, ...) as f, g in "
                         "that order")
    return t.reshape(shape)
