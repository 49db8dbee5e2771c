r"""Equal-accuracy measurement: problems, a converged float64 answer, errors, budget search.

A solver "reaches" a problem when, from float32 inputs, both

    value error    |v - v*| / |v*|                <= 1e-4
    gradient error ||dv/dx - dv*/dx|| / ||dv*/dx|| <= 1e-3

against the converged float64 answer ``(v*, dv*/dx)`` of the same problem.
Every solver is called with the same convention as this project's operator
(docs/design/maths.md, ``sinsim_ext/costs.py``)::

    OT_eps(x, y) = min_{P in U(a, b)} <P, C> + eps KL(P | a b^T),   C_ij = ||x_i - y_j||^2,

uniform weights; ``bench/peer_solvers.py`` translates it to each peer's own.

The float64 answer (:func:`converged_reference`) is computed here with plain
tensor operations, independent of the compiled operator and of the peers:
log-domain Sinkhorn warm-started along a geometric eps schedule (from the
largest cost down to ``eps``), then plain iterations at ``eps`` until the
row-marginal L1 error is below ``tol``; the value is ``<a, f> + <b, g>`` and
the gradient the envelope formula ``d<P, C(x, y)>/dx`` with the plan held
fixed. ``tests/test_equal_accuracy.py`` checks it against the compiled
operator and POT in float64.

Nothing here is timed; ``bench/test_peers.py`` times the setting that
:func:`smallest_budget` finds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

VALUE_TARGET = 1e-4
GRAD_TARGET = 1e-3
D = 128
DATASETS = ("unit", "normal")


def problem(n: int, dataset: str, *, d: int = D, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """float64 points ``(x, y)``, each ``(n, d)``.

    ``unit``: independent Gaussian points scaled to unit norm (costs
    2 +- 0.18 in d = 128): no pairing for the plan to follow, so at small eps
    it stays spread and plain Sinkhorn converges slowly.
    ``normal``: two noisy views ``y = x + 0.5 z`` of standard-normal points,
    unnormalised (norms about 11; cost about 32 between the views of a point,
    290 between different points): the plan is close to the pairing, the
    easy case. (Independent unnormalised Gaussian points were tried: no
    float64 run converged there within minutes, so there is no reference.)
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    if dataset == "unit":
        y = torch.randn(n, d, generator=g, dtype=torch.float64)
        return x / x.norm(dim=-1, keepdim=True), y / y.norm(dim=-1, keepdim=True)
    if dataset == "normal":
        return x, x + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64)
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def sqeuclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``C_ij = ||x_i - y_j||^2`` as ``|x_i|^2 + |y_j|^2 - 2 <x_i, y_j>`` (use float64:
    the cancellation then costs about 1e-16 of the norms)."""
    return ((x * x).sum(-1, keepdim=True) + (y * y).sum(-1) - 2.0 * x @ y.T).clamp_min(0.0)


@dataclass(frozen=True)
class Reference:
    value: float
    grad: torch.Tensor  # float64 (n, d): d value / d x
    marginal_error: float  # row-marginal L1 error of the returned potentials
    iterations: int


def converged_reference(
    x: torch.Tensor, y: torch.Tensor, eps: float, *, tol: float = 1e-6, max_iter: int = 20000,
    scaling: float = 0.5, stage_iter: int = 10, strict: bool = True,
) -> Reference:
    r"""The float64 answer, ``eps``-scaled then iterated at ``eps`` to ``tol``.

    Row and column updates (docs/design/maths.md), uniform weights::

        f_i = -eps LSE_j(log b_j + (g_j - C_ij) / eps),   g_j = -eps LSE_i(log a_i + (f_i - C_ij) / eps)

    Stages ``eps_k = max(eps, max C * scaling^k)`` warm-start the potentials
    (``stage_iter`` updates each); at ``eps`` the updates run until the row
    marginal error ``sum_i a_i |exp((f_old_i - f_i)/eps) - 1| < tol``.
    Runs on the device of ``x`` (float64 on a GPU is fast enough for n = 4096);
    the gradient comes back on the CPU.
    Raises if ``tol`` is not reached in ``max_iter`` iterations at ``eps``
    (``strict=False``: returns the last iterate, its error in ``marginal_error``).
    """
    x, y = x.detach().double(), y.detach().double()
    C = sqeuclidean(x, y)
    n, m = C.shape
    log_a = torch.full((n,), -math.log(n), dtype=torch.float64, device=C.device)
    log_b = torch.full((m,), -math.log(m), dtype=torch.float64, device=C.device)

    def row(g, e):
        return -e * torch.logsumexp(log_b + (g - C) / e, dim=1)

    def col(f, e):
        return -e * torch.logsumexp(log_a.unsqueeze(1) + (f.unsqueeze(1) - C) / e, dim=0)

    f = torch.zeros(n, dtype=torch.float64, device=C.device)
    g = torch.zeros(m, dtype=torch.float64, device=C.device)
    e = float(C.max())
    while e > eps:
        for _ in range(stage_iter):
            g = col(f, e)
            f = row(g, e)
        e *= scaling
    error, it = math.inf, 0
    while it < max_iter:
        g = col(f, eps)
        f_new = row(g, eps)
        error = float((log_a.exp() * torch.expm1((f - f_new) / eps).abs()).sum())
        f, it = f_new, it + 1
        if error < tol:
            break
    if strict and not error < tol:
        raise RuntimeError(f"float64 reference: marginal error {error:.3g} > tol {tol:g} after {it} iterations")
    g = col(f, eps)  # exact column marginals, then the value <a, f> + <b, g>
    value = float(log_a.exp() @ f + log_b.exp() @ g)
    P = torch.exp(log_a.unsqueeze(1) + log_b + (f.unsqueeze(1) + g - C) / eps)
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad((P * sqeuclidean(xg, y)).sum(), xg)
    return Reference(value=value, grad=grad.cpu(), marginal_error=error, iterations=it)


def errors(value, grad: torch.Tensor, ref: Reference) -> Tuple[float, float]:
    """``(|v - v*| / |v*|, ||g - g*|| / ||g*||)`` in float64."""
    v = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
    g = grad.detach().double().cpu()
    return abs(v - ref.value) / abs(ref.value), float((g - ref.grad).norm() / ref.grad.norm())


def meets_targets(value_error: float, grad_error: float) -> bool:
    """Both targets met (a NaN meets none)."""
    return value_error <= VALUE_TARGET and grad_error <= GRAD_TARGET


@dataclass
class Search:
    """Outcome of :func:`smallest_budget`: the budget that met the targets, or None."""

    budget: Optional[int]
    value_error: float
    grad_error: float
    tried: list  # (budget, value error, grad error, seconds)
    reason: str = ""


def smallest_budget(
    measure: Callable[[int], Tuple[float, float]], *, start: int, cap: int, step: int = 1,
    time_cap_s: float = math.inf, rel_precision: float = 0.15,
) -> Search:
    """Smallest iteration budget (a multiple of ``step``) whose result meets both targets.

    ``measure(k)`` returns the (value, gradient) errors after ``k`` iterations.
    Doubling from ``start`` until the targets are met, then bisection until
    the bracket is within ``rel_precision`` of its upper end (errors need not
    fall monotonically with ``k``, so the result is the smallest budget that
    met them among those tried). Gives up ("not reached") past ``cap``
    iterations, or when one measurement took longer than ``time_cap_s``.
    """
    tried = []

    def attempt(k):
        t0 = time.perf_counter()
        ve, ge = measure(k)
        tried.append((k, ve, ge, time.perf_counter() - t0))
        return meets_targets(ve, ge)

    def snap(k):
        return max(step, int(math.ceil(k / step)) * step)

    k, lo = snap(start), 0
    while not attempt(k):
        lo = k
        if k >= cap:
            return Search(None, tried[-1][1], tried[-1][2], tried, f"not reached in {k} iterations")
        if tried[-1][3] > time_cap_s:
            return Search(None, tried[-1][1], tried[-1][2], tried, f"not reached in {k} iterations ({tried[-1][3]:.0f} s per solve)")
        k = min(snap(2 * k), snap(cap))
    hi = k
    while hi - lo > max(step, rel_precision * hi):
        mid = snap((lo + hi) // 2)
        if mid >= hi or mid <= lo:
            break
        if attempt(mid):
            hi = mid
        else:
            lo = mid
    best = min((t for t in tried if t[0] == hi), key=lambda t: t[0])
    return Search(hi, best[1], best[2], tried)
