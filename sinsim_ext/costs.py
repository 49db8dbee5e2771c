r"""The ground costs, in plain differentiable PyTorch: everything the Python
side knows about a cost, in one table (:data:`COSTS`).

Each cost gives its matrix ``C_ij = c(x_i, y_j)``; its adjoint ``vjp``, which
pulls a weight matrix ``G`` (``dL/dC``) back to the points, ``(sum_j G_ij
dC_ij/dx_i, sum_i G_ij dC_ij/dy_j)`` (with ``G = P``, the transport plan, the
envelope-theorem gradient of the Sinkhorn value, the formula the compiled
backward implements, here differentiable again for double backward, forward
mode and ``torch.func``); the points it cannot take (checked with the other
input values); and two bounds behind the resolution checks
(:mod:`sinsim_ext.resolution`): an upper bound on ``max_ij C_ij`` and the
mean cost ``<a b^T, C>``, from the points alone (no ``(n, m)`` matrix).

The compiled kernels read the C++ twin of this table,
``csrc/core/cost_table.h``; a new cost goes in both (CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

__all__ = ["COSTS", "Cosine", "GroundCost", "SqEuclidean", "cost_matrix", "cost_vjp"]


class GroundCost:
    """One entry of :data:`COSTS`: batched points ``(B, n, d)``, ``(B, m, d)``."""

    name: str

    def matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``C``, ``(B, n, m)``."""
        raise NotImplementedError

    def vjp(self, x: torch.Tensor, y: torch.Tensor, G: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(dL/dx, dL/dy)`` for ``L = <G, C(x, y)>`` with ``G`` held fixed."""
        raise NotImplementedError

    def invalid_points(self, name: str, p: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{message: flag}``: the points of ``p`` (named ``name``) the cost
        cannot take, each flag a boolean tensor (read with the other checks)."""
        return {}

    def max_bound(self, x: torch.Tensor, y: torch.Tensor, debias: bool) -> torch.Tensor:
        """``(B,)``: an upper bound on ``max_ij C_ij`` (of the three problems with ``debias``)."""
        raise NotImplementedError

    def mean(self, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(B,)``: the mean cost ``sum_ij a_i b_j C_ij``."""
        raise NotImplementedError


class SqEuclidean(GroundCost):
    r"""``C_ij = ||x_i - y_j||^2 = |x_i|^2 + |y_j|^2 - 2 <x_i, y_j>``.

    Adjoint: ``dL/dx = 2 (diag(G 1) x - G y)``, ``dL/dy = 2 (diag(G^T 1) y - G^T x)``.
    """

    name = "sqeuclidean"

    def matrix(self, x, y):
        x2 = (x * x).sum(-1, keepdim=True)
        y2 = (y * y).sum(-1).unsqueeze(-2)
        return (x2 + y2 - 2.0 * (x @ y.transpose(-1, -2))).clamp_min(0.0)

    def vjp(self, x, y, G):
        gx = 2.0 * (G.sum(-1, keepdim=True) * x - G @ y)
        gy = 2.0 * (G.sum(-2).unsqueeze(-1) * y - G.transpose(-1, -2) @ x)
        return gx, gy

    def max_bound(self, x, y, debias):
        """``(max |x_i| + max |y_j|)^2`` (``(2 max)^2`` of both with ``debias``)."""
        rx, ry = x.norm(dim=-1).amax(-1), y.norm(dim=-1).amax(-1)
        return (2 * torch.maximum(rx, ry) if debias else rx + ry).square()

    def mean(self, x, y, a, b):
        """``Var_a(x) + Var_b(y) + |mean_a x - mean_b y|^2``."""
        x_mean = (a.unsqueeze(-1) * x).sum(-2)
        y_mean = (b.unsqueeze(-1) * y).sum(-2)
        x_var = (a * (x - x_mean.unsqueeze(-2)).square().sum(-1)).sum(-1)
        y_var = (b * (y - y_mean.unsqueeze(-2)).square().sum(-1)).sum(-1)
        return x_var + y_var + (x_mean - y_mean).square().sum(-1)


class Cosine(GroundCost):
    r"""``C_ij = 1 - <xh_i, yh_j>`` with ``xh = x / |x|``.

    Adjoint: the gradient of ``-<xh_i, yh_j>`` in ``x_i`` is
    ``-(I - xh_i xh_i^T) yh_j / |x_i|``, so ``dL/dx_i = -(u_i - <u_i, xh_i> xh_i) / |x_i|``
    with ``u = G yh``, and alike for ``y``. Zero vectors have no direction and are refused.
    """

    name = "cosine"

    def matrix(self, x, y):
        xn = x / x.norm(dim=-1, keepdim=True)
        yn = y / y.norm(dim=-1, keepdim=True)
        return 1.0 - xn @ yn.transpose(-1, -2)

    def vjp(self, x, y, G):
        nx = x.norm(dim=-1, keepdim=True)
        ny = y.norm(dim=-1, keepdim=True)
        xh, yh = x / nx, y / ny
        u = G @ yh
        w = G.transpose(-1, -2) @ xh
        gx = -(u - (u * xh).sum(-1, keepdim=True) * xh) / nx
        gy = -(w - (w * yh).sum(-1, keepdim=True) * yh) / ny
        return gx, gy

    def invalid_points(self, name, p):
        message = f"{name} contains a zero vector, which has no direction for the cosine cost"
        return {message: (p.norm(dim=-1) == 0).any()}

    def max_bound(self, x, y, debias):
        """2: cosines lie in [-1, 1]."""
        return torch.full(x.shape[:1], 2.0, dtype=x.dtype, device=x.device)

    def mean(self, x, y, a, b):
        """``1 - <mean_a x/|x|, mean_b y/|y|>``."""
        x_dir = (a.unsqueeze(-1) * F.normalize(x, dim=-1)).sum(-2)
        y_dir = (b.unsqueeze(-1) * F.normalize(y, dim=-1)).sum(-2)
        return 1.0 - (x_dir * y_dir).sum(-1)


#: The ground costs by name, in the order the documentation lists them.
COSTS: Dict[str, GroundCost] = {cost.name: cost for cost in (SqEuclidean(), Cosine())}


def _cost(name: str) -> GroundCost:
    try:
        return COSTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"cost must be one of {tuple(COSTS)}, got {name!r}") from None


def cost_matrix(x: torch.Tensor, y: torch.Tensor, cost: str = "sqeuclidean") -> torch.Tensor:
    """Pairwise cost between batched point sets ``(B, n, d)`` and ``(B, m, d)`` (:data:`COSTS`)."""
    return _cost(cost).matrix(x, y)


def cost_vjp(x: torch.Tensor, y: torch.Tensor, G: torch.Tensor, cost: str) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""``(dL/dx, dL/dy)`` for ``L = <G, C(x, y)>`` with ``G`` held fixed (:data:`COSTS`)."""
    return _cost(cost).vjp(x, y, G)
