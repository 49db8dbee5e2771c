r"""The eps range a floating-point type resolves, at both ends.

A Sinkhorn solve in a given dtype is only meaningful when ``eps`` is neither
far below nor far above the costs. Both ends are measured per problem from the
points alone (one pass over them, no ``(n, m)`` matrix, no host read), as the
two rows of :func:`ratios`:

* **eps far below the costs** (row 0, ``max_ij C_ij / eps``, with the cost's
  bound on ``max C``, :meth:`sinsim_ext.costs.GroundCost.max_bound`:
  ``(max |x_i| + max |y_j|)^2`` for the squared Euclidean cost, 2 for the
  cosine cost). The kernels hold ``K = -log2(e) C / eps``, which a type with
  ``p`` mantissa bits rounds by up to ``|K| 2^-p``: at ``|K| = 2^(p-3)`` that
  is 1/8 in the exponent of every plan entry (a factor 2^(1/8) = 9 %). Beyond
  it the marginal error itself is unreliable: it can read 0 on a wrong plan
  (float32 past ``1.5e6``, float64 past ``7.8e14``).
* **eps far above the costs** (row 1, ``eps / M`` with ``M = <a b^T, C>``, the
  mean cost, :meth:`sinsim_ext.costs.GroundCost.mean`, which is also the limit
  of ``OT_eps`` as eps grows, so the scale of the value there). The potentials
  are then eps-sized (``eps`` times log-sum-exps of terms near ``log b_j``)
  and carry rounding errors of a few ``eps u`` (``u`` the unit roundoff):
  float32 at ``eps = 1e8`` returns -11.9 for a mean cost of 1.9, with a
  marginal error of 0. The value is off by up to about ``4 u eps / M`` of the
  mean cost (measured: 2 to 4 ``u eps``), so 1 % at the limit ``2^-9 / u``
  (float32: ``eps / M`` up to ``32768``, where n = 64 to 3000 points measured
  0.03 to 0.4 %; float64: ``1.8e13``). With
  ``debias`` the scale is the cross problem's ``M``. Clouds that coincide
  (every cost 0, ``M = 0``) are not flagged: their value is 0, returned up
  to that same rounding, ``4 u eps`` in absolute terms.

:func:`unresolved` flags the problems past either limit; the operator warns
about them (:mod:`sinsim_ext.convergence`) and, where it returns its error
instead of warning (``return_error=True``, a training step), returns NaN for
their error: unknown, which no threshold accepts.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from .costs import COSTS

LOG2E = 1.4426950408889634


class Limits(NamedTuple):
    plan: float  # largest max C / eps
    value: float  # largest eps / mean cost


def mantissa_bits(dtype: torch.dtype) -> int:
    """24 for float32, 53 for float64 (the implicit leading bit included)."""
    return 1 - round(math.log2(torch.finfo(dtype).eps))


def _limits(dtype: torch.dtype) -> Limits:
    bits = mantissa_bits(dtype)
    return Limits(plan=2.0 ** (bits - 3) / LOG2E, value=2.0 ** (bits - 9))


LIMITS = {dtype: _limits(dtype) for dtype in (torch.float32, torch.float64)}
VALUE_ROUNDING = 4  # the value's rounding error in units of eps * unit roundoff (measured: 2 to 4)


def value_rounding(dtype: torch.dtype, eps_over_mean: float) -> float:
    """The value's expected rounding error relative to the mean cost, at ``eps / M = eps_over_mean``."""
    return VALUE_ROUNDING * 2.0 ** -mantissa_bits(dtype) * eps_over_mean


def limits(dtype: torch.dtype) -> Limits:
    """The limits of the compute dtype (float32 or float64)."""
    return LIMITS[dtype]


def ratios(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, cost: str,
           debias: bool = False) -> torch.Tensor:
    """``(2, B)`` float64 on the points' device: per problem of the batch
    ``(B, n, d)``, an upper bound on ``max C / eps`` (of the three problems
    with ``debias``) and ``eps / mean cost`` (0 when every cost is 0)."""
    with torch.no_grad():
        x, y, a, b = (t.detach().double() for t in (x, y, a, b))
        reach = COSTS[cost].max_bound(x, y, debias)
        mean = COSTS[cost].mean(x, y, a, b)
        above = torch.where(mean > 0, eps / mean, torch.zeros_like(mean))
        return torch.stack([reach / eps, above])


def unresolved(measured: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B,)`` bool, on the device: the problems past either limit of
    ``dtype`` (NaN measurements included)."""
    lim = limits(dtype)
    return ~(measured[0] <= lim.plan) | ~(measured[1] <= lim.value)


def mark_unresolved(error: torch.Tensor, measured: Optional[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """``error`` with NaN (unknown) for the problems ``dtype`` cannot resolve."""
    if measured is None:
        return error
    bad = unresolved(measured, dtype).reshape(error.shape)
    return torch.where(bad, torch.full_like(error, float("nan")), error)
