r"""The solvers of the equal-accuracy benchmark, each in this project's convention.

Every solver takes float32 points ``x, y`` (torch, on the CPU or a GPU), ``eps`` and one
setting (an iteration budget, or GeomLoss's ``scaling``) and returns a
callable that computes, from scratch, the value ``OT_eps(x, y)`` (cost
``C_ij = ||x_i - y_j||^2``, ``eps KL(P | a b^T)``, uniform weights; see
``bench/equal_accuracy.py``) and its gradient in ``x``. Conventions:

* **sinsim**: ``sinsim_ext.sinkhorn_cost(x, y, eps=eps, max_iter=k)``, the
  compiled operator; backward is its envelope-theorem gradient. With eps-
  scaling (``scaling=r``) when this build has the keyword.
* **GeomLoss** ``SamplesLoss("sinkhorn", p=2, debias=False,
  backend="tensorized")``: its cost is ``||x - y||^2 / 2`` and its
  regularisation ``blur^p KL``, so ``OT_g(blur) = OT_eps / 2`` for
  ``blur = sqrt(eps / 2)``: we report ``2 OT_g`` (and its gradient). It anneals
  eps from the squared diameter to ``blur^2`` by factors ``scaling^2`` (one
  update per stage, then one extrapolation step): ``scaling`` is its only
  budget knob.
* **POT** ``ot.solve(ot.dist(x, y), reg=eps, method="sinkhorn_log",
  max_iter=k, tol=0, grad="envelope")``: ``ot.dist`` is ``||x - y||^2``,
  ``reg_type="KL"`` is ``eps KL(P | a b^T)``; ``value`` is the primal
  ``<P, M> + eps KL(P | a b^T)`` of its last plan (``ot.sinkhorn2`` would
  return ``<P, M>`` alone, not this value); ``grad="envelope"`` sets
  ``dvalue/dM = P`` (its default, autodiff through the iterations, is slower
  and gives the same gradient at convergence), and torch carries it to ``x``
  through ``ot.dist``.
* **OTT-JAX** ``Sinkhorn(threshold=-1, min_iterations=k, max_iterations=k)``
  on ``PointCloud(x, y, cost_fn=SqEuclidean(), epsilon=eps)`` (absolute eps,
  cost ``||x - y||^2``), ``reg_ot_cost`` (``<a, f> + <b, g>`` at the fixed
  point), ``use_danskin=True`` (envelope gradient), ``jax.jit``-compiled
  (compilation happens in the budget search, outside the timed region),
  CPU, float32. Budgets are multiples of its ``inner_iterations`` (10).
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

import sinsim_ext

GEOMLOSS_SCALINGS = (0.5, 0.7, 0.9, 0.95, 0.99, 0.999)
SINSIM_SCALINGS = (0.5, 0.7, 0.9, 0.95)

Run = Callable[[], Tuple[float, torch.Tensor]]


@dataclass(frozen=True)
class Solver:
    """One row of the table: a solver and, for budgeted ones, how to search the budget."""

    name: str  # row label
    module: Optional[str]  # the optional package it needs (None: this project)
    make: Callable[[torch.Tensor, torch.Tensor, float, int], Run]  # (x, y, eps, budget) -> run
    budgeted: bool = True  # False: ``make`` ignores the budget (GeomLoss: the scaling decides)
    step: int = 1  # budgets are multiples of this
    unavailable: str = ""  # why the row cannot run in this build ("" if it can)


def _grad_of(loss: torch.Tensor, x: torch.Tensor) -> Tuple[float, torch.Tensor]:
    (grad,) = torch.autograd.grad(loss, x)
    return float(loss.detach()), grad


def sinsim_has_scaling() -> bool:
    return "scaling" in inspect.signature(sinsim_ext.sinkhorn_cost).parameters


def _sinsim(x, y, eps, budget, **extra) -> Run:
    def run():
        xg = x.detach().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # unconverged budgets in the search
            value = sinsim_ext.sinkhorn_cost(xg, y, eps=eps, max_iter=budget, **extra)
        return _grad_of(value, xg)

    return run


def _geomloss(scaling: float):
    def make(x, y, eps, budget) -> Run:
        from geomloss import SamplesLoss

        loss = SamplesLoss("sinkhorn", p=2, blur=math.sqrt(eps / 2), scaling=scaling, debias=False, backend="tensorized")

        def run():
            xg = x.detach().requires_grad_()
            return _grad_of(2.0 * loss(xg, y), xg)

        return run

    return make


def _pot(x, y, eps, budget) -> Run:
    import ot

    def run():
        xg = x.detach().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Sinkhorn did not converge"
            res = ot.solve(ot.dist(xg, y), reg=eps, method="sinkhorn_log", max_iter=budget, tol=0.0, grad="envelope")
        return _grad_of(res.value, xg)

    return run


def _ott(x, y, eps, budget) -> Run:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from ott.geometry import costs, pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    solver = sinkhorn.Sinkhorn(
        threshold=-1.0, min_iterations=budget, max_iterations=budget, inner_iterations=10,
        use_danskin=True, implicit_diff=None,
    )

    @jax.jit
    def value_and_grad(xa, ya):
        def value(xa):
            geom = pointcloud.PointCloud(xa, ya, cost_fn=costs.SqEuclidean(), epsilon=eps)
            return solver(linear_problem.LinearProblem(geom)).reg_ot_cost

        return jax.value_and_grad(value)(xa)

    xa = jnp.asarray(x.detach().cpu().numpy(), dtype=jnp.float32)
    ya = jnp.asarray(y.detach().cpu().numpy(), dtype=jnp.float32)
    jax.block_until_ready(value_and_grad(xa, ya))  # compile here, outside any timing

    def run():
        v, g = jax.block_until_ready(value_and_grad(xa, ya))
        return float(v), torch.from_numpy(np.array(g))

    return run


def solvers() -> list:
    """Every row, in table order."""
    rows = [Solver("sinsim, plain iterations", None, _sinsim)]
    scaled_reason = "" if sinsim_has_scaling() else "eps-scaling not in this build"
    for r in SINSIM_SCALINGS:
        make = (lambda r: lambda x, y, eps, k: _sinsim(x, y, eps, k, scaling=r))(r)
        rows.append(Solver(f"sinsim, scaling {r}", None, make, unavailable=scaled_reason))
    for r in GEOMLOSS_SCALINGS:
        rows.append(Solver(f"GeomLoss tensorized, scaling {r}", "geomloss", _geomloss(r), budgeted=False))
    rows.append(Solver("POT sinkhorn_log (torch)", "ot", _pot))
    rows.append(Solver("OTT-JAX Sinkhorn (jit)", "ott", _ott, step=10))
    return rows
