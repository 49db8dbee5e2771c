"""The ground costs and their adjoints, in plain differentiable PyTorch.

``cost_matrix`` builds ``C`` from the points; ``cost_vjp`` pulls a weight
matrix ``G`` (``dL/dC``) back to the points, ``(sum_j G_ij dC_ij/dx_i,
sum_i G_ij dC_ij/dy_j)``. With ``G = P`` (the transport plan) this is the
envelope-theorem gradient of the Sinkhorn value, the formula the compiled
backward (``csrc/sinkhorn_driver.cpp``) implements; written here with torch
operations it can itself be differentiated (double backward, forward mode,
``torch.func``).
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["cost_matrix", "cost_vjp"]


def cost_matrix(x: torch.Tensor, y: torch.Tensor, cost: str = "sqeuclidean") -> torch.Tensor:
    """Pairwise cost between batched point sets ``(B, n, d)`` and ``(B, m, d)``.

    ``sqeuclidean``: ``||x_i - y_j||^2``; ``cosine``: ``1 - <x_i/|x_i|, y_j/|y_j|>``.
    """
    if cost == "sqeuclidean":
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1).unsqueeze(-2)
        return (x2 + y2 - 2.0 * (x @ y.transpose(-1, -2))).clamp_min(0.0)
    if cost == "cosine":
        xn = x / x.norm(dim=-1, keepdim=True)
        yn = y / y.norm(dim=-1, keepdim=True)
        return 1.0 - xn @ yn.transpose(-1, -2)
    raise ValueError(f"cost must be 'sqeuclidean' or 'cosine', got {cost!r}")


def cost_vjp(x: torch.Tensor, y: torch.Tensor, G: torch.Tensor, cost: str) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""``(dL/dx, dL/dy)`` for ``L = <G, C(x, y)>`` with ``G`` held fixed.

    Squared Euclidean, ``C_ij = |x_i|^2 + |y_j|^2 - 2 <x_i, y_j>``::

        dL/dx = 2 (diag(G 1) x - G y),   dL/dy = 2 (diag(G^T 1) y - G^T x)

    Cosine, ``C_ij = 1 - <xh_i, yh_j>`` with ``xh = x / |x|``: the gradient of
    ``-<xh_i, yh_j>`` in ``x_i`` is ``-(I - xh_i xh_i^T) yh_j / |x_i|``, so
    ``dL/dx_i = -(u_i - <u_i, xh_i> xh_i) / |x_i|`` with ``u = G yh``.
    """
    if cost == "sqeuclidean":
        gx = 2.0 * (G.sum(-1, keepdim=True) * x - G @ y)
        gy = 2.0 * (G.sum(-2).unsqueeze(-1) * y - G.transpose(-1, -2) @ x)
        return gx, gy
    if cost == "cosine":
        nx = x.norm(dim=-1, keepdim=True)
        ny = y.norm(dim=-1, keepdim=True)
        xh, yh = x / nx, y / ny
        u = G @ yh
        w = G.transpose(-1, -2) @ xh
        gx = -(u - (u * xh).sum(-1, keepdim=True) * xh) / nx
        gy = -(w - (w * yh).sum(-1, keepdim=True) * yh) / ny
        return gx, gy
    raise ValueError(f"cost must be 'sqeuclidean' or 'cosine', got {cost!r}")
