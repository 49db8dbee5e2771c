r"""Pure-PyTorch log-domain Sinkhorn: the baseline the kernels are tested and timed against.

Same signatures and the same iteration scheme as :mod:`sinsim_ext.ops`, written
with plain tensor operations and differentiated by autograd *through the
iterations* (memory grows with ``max_iter``), exactly what a user without the
extension would write. Nothing here calls the compiled library.

Problem (DESIGN.md section 3): points ``x`` (n, d), ``y`` (m, d), weights ``a``,
``b`` on the simplex, cost ``C_ij = c(x_i, y_j)``, ``eps > 0``::

    OT_eps(a, b) = min_{P in U(a, b)} <P, C> + eps KL(P | a b^T)
                 = max_{f, g} <a, f> + <b, g> - eps <a b^T, exp((f + g - C) / eps) - 1>

Iteration (log domain, stable for any ``eps``), starting from ``f = 0``::

    g_j = -eps LSE_i(log a_i + (f_i - C_ij) / eps)          (column update)
    repeat max_iter times:
        f_i = -eps LSE_j(log b_j + (g_j - C_ij) / eps)      (row update)
        error = sum_i a_i |exp((f_old_i - f_i) / eps) - 1|  (row marginal L1 error before it)
        stop if error < tol
        g = column update of f

so the returned pair has exact row marginals. The value is ``<a, f> + <b, g>``.
For the symmetric problems of the debiased divergence (``OT(x, x)``) the
potential ``p`` follows the averaged update ``p <- (p + T(p)) / 2`` with
``T(p)_i = -eps LSE_j(log a_j + (p_j - C_ij) / eps)``, and the returned pair
is ``(T(p), p)``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ._checks import Problem, prepare, warn_if_unconverged
from .costs import cost_matrix
from .result import SinkhornResult

__all__ = ["cost_matrix", "sinkhorn", "sinkhorn_cost"]


def _row_update(C, g, log_b, eps):
    return -eps * torch.logsumexp(log_b.unsqueeze(-2) + (g.unsqueeze(-2) - C) / eps, dim=-1)


def _col_update(C, f, log_a, eps):
    return -eps * torch.logsumexp(log_a.unsqueeze(-1) + (f.unsqueeze(-1) - C) / eps, dim=-2)


def _row_error(a, f_old, f_new, eps):
    terms = a * torch.expm1((f_old - f_new) / eps).abs()
    return torch.where(a > 0, terms, torch.zeros_like(terms)).sum(-1)


def _solve(C, a, b, eps, max_iter, tol) -> Tuple[torch.Tensor, ...]:
    """Alternating Sinkhorn on a batch of problems; each stops on its own."""
    log_a, log_b = a.log(), b.log()
    batch = C.shape[0]
    f = torch.zeros_like(a)
    g = _col_update(C, f, log_a, eps)
    n_iter = torch.zeros(batch, dtype=torch.int32, device=C.device)
    error = torch.full((batch,), float("inf"), dtype=C.dtype, device=C.device)
    active = torch.ones(batch, dtype=torch.bool, device=C.device)
    for it in range(1, max_iter + 1):
        f_new = _row_update(C, g, log_b, eps)
        err = _row_error(a, f, f_new, eps)
        f = torch.where(active.unsqueeze(-1), f_new, f)
        error = torch.where(active, err, error)
        n_iter = n_iter + active.to(torch.int32)
        if tol is not None:
            active = active & ~(err < tol)
        if it == max_iter or not bool(active.any()):
            break
        g = torch.where(active.unsqueeze(-1), _col_update(C, f, log_a, eps), g)
    return f, g, n_iter, error


def _solve_symmetric(C, a, eps, max_iter, tol) -> Tuple[torch.Tensor, ...]:
    """Averaged fixed-point iteration for OT(x, x); returns (T(p), p)."""
    log_a = a.log()
    batch = C.shape[0]
    p = torch.zeros_like(a)
    f_out, g_out = torch.zeros_like(a), torch.zeros_like(a)
    n_iter = torch.zeros(batch, dtype=torch.int32, device=C.device)
    error = torch.full((batch,), float("inf"), dtype=C.dtype, device=C.device)
    active = torch.ones(batch, dtype=torch.bool, device=C.device)
    for it in range(1, max_iter + 1):
        q = _row_update(C, p, log_a, eps)
        err = _row_error(a, p, q, eps)
        stop = active & ((err < tol) if tol is not None else torch.zeros_like(active))
        if it == max_iter:
            stop = active
        f_out = torch.where(stop.unsqueeze(-1), q, f_out)
        g_out = torch.where(stop.unsqueeze(-1), p, g_out)
        error = torch.where(active, err, error)
        n_iter = n_iter + active.to(torch.int32)
        active = active & ~stop
        if not bool(active.any()):
            break
        p = torch.where(active.unsqueeze(-1), 0.5 * (p + q), p)
    return f_out, g_out, n_iter, error


def _ot(problem: Problem, x, y, a, b, symmetric: bool):
    C = cost_matrix(x, y, problem.cost)
    if symmetric:
        return _solve_symmetric(C, a, problem.eps, problem.max_iter, problem.tol)
    return _solve(C, a, b, problem.eps, problem.max_iter, problem.tol)


def sinkhorn(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.05,
    cost: str = "sqeuclidean",
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    max_iter: int = 100,
    tol: Optional[float] = None,
    check_finite: bool = True,
) -> SinkhornResult:
    """Potentials ``f``, ``g``; iterations run; final marginal error. See the module docstring."""
    pb = prepare(x, y, eps=eps, cost=cost, a=a, b=b, max_iter=max_iter, tol=tol, check_finite=check_finite)
    f, g, n_iter, error = _ot(pb, pb.x, pb.y, pb.a, pb.b, symmetric=False)
    warn_if_unconverged(error, pb)
    if not pb.batched:
        f, g, n_iter, error = f[0], g[0], n_iter[0], error[0]
    return SinkhornResult(f, g, n_iter, error)


def sinkhorn_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float = 0.05,
    cost: str = "sqeuclidean",
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    max_iter: int = 100,
    tol: Optional[float] = None,
    debias: bool = False,
    check_finite: bool = True,
) -> torch.Tensor:
    """Regularised OT value ``<a, f> + <b, g>``, or with ``debias=True`` the
    Sinkhorn divergence ``OT(x, y) - OT(x, x)/2 - OT(y, y)/2``.

    Differentiable by autograd through every iteration.
    """
    pb = prepare(x, y, eps=eps, cost=cost, a=a, b=b, max_iter=max_iter, tol=tol, check_finite=check_finite)
    f, g, _, err = _ot(pb, pb.x, pb.y, pb.a, pb.b, symmetric=False)
    errors = [err]
    value = (pb.a * f).sum(-1) + (pb.b * g).sum(-1)
    if debias:
        fx, gx, _, ex = _ot(pb, pb.x, pb.x, pb.a, pb.a, symmetric=True)
        fy, gy, _, ey = _ot(pb, pb.y, pb.y, pb.b, pb.b, symmetric=True)
        value = value - 0.5 * ((pb.a * (fx + gx)).sum(-1) + (pb.b * (fy + gy)).sum(-1))
        errors += [ex, ey]
    warn_if_unconverged(torch.stack(errors), pb)
    value = value.to(pb.out_dtype)
    return value if pb.batched else value[0]
