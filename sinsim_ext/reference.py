r"""Pure-PyTorch log-domain Sinkhorn: the baseline the kernels are tested and timed against.

Same functions (:func:`solve`, :func:`sinkhorn_cost`, :func:`sinkhorn`, with
the same :class:`sinsim_ext.SinkhornOptions`) and the same iteration scheme as
the compiled operator (:mod:`sinsim_ext.functions`), written with plain
tensor operations and differentiated by autograd *through the iterations*
(memory grows with ``max_iter``), exactly what a user without the extension
would write. Nothing here calls the compiled library.

Problem (docs/design/maths.md): points ``x`` (n, d), ``y`` (m, d), weights ``a``,
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

Eps-scaling (``scaling = r`` in (0, 1), GeomLoss's ``scaling``): iteration
``t`` runs at ``eps_t = eps / r^(S - t + 1)`` for ``t <= S`` and at ``eps``
afterwards, with ``S`` the smallest count such that ``eps / r^S >= max C``
(per problem; at most ``max_iter - 1``). ``f`` and ``g`` carry over from one
stage to the next (the updates above are written in natural units, so
nothing needs rescaling); ``tol`` may stop a problem only at the target
``eps``.
For the symmetric problems of the debiased divergence (``OT(x, x)``) the
potential ``p`` follows the averaged update ``p <- (p + T(p)) / 2`` with
``T(p)_i = -eps LSE_j(log a_j + (p_j - C_ij) / eps)``, and the returned pair
is ``(T(p), p)``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from ._checks import Problem, prepare, reported_error, warn_if_unconverged
from .costs import cost_matrix
from .options import SinkhornOptions
from .result import SinkhornResult

__all__ = ["cost_matrix", "sinkhorn", "sinkhorn_cost", "solve"]


def _row_update(C, g, log_b, eps):
    return -eps * torch.logsumexp(log_b.unsqueeze(-2) + (g.unsqueeze(-2) - C) / eps.unsqueeze(-1), dim=-1)


def _col_update(C, f, log_a, eps):
    return -eps * torch.logsumexp(log_a.unsqueeze(-1) + (f.unsqueeze(-1) - C) / eps.unsqueeze(-1), dim=-2)


def _row_error(a, f_old, f_new, eps):
    terms = a * torch.expm1((f_old - f_new) / eps).abs()
    return torch.where(a > 0, terms, torch.zeros_like(terms)).sum(-1)


def scaling_stages(C: torch.Tensor, eps: float, scaling: Optional[float], max_iter: int) -> torch.Tensor:
    """Eps-scaling stages per problem, ``(B,)`` int64: the smallest ``S >= 0``
    with ``eps / scaling^S >= max_ij C_ij``, at most ``max_iter - 1``; zeros
    without scaling (the formula of ``csrc/core/schedule.h``)."""
    batch = C.shape[0]
    if scaling is None:
        return torch.zeros(batch, dtype=torch.int64, device=C.device)
    cmax = C.detach().flatten(1).amax(-1).double()
    stages = torch.ceil(torch.log(cmax / eps) / math.log(1.0 / scaling) - 1e-9)
    stages = torch.where(torch.isfinite(cmax) & (cmax > eps), stages, torch.zeros_like(stages))
    return stages.clamp(0, max_iter - 1).to(torch.int64)


def _eps_schedule(stages: torch.Tensor, eps: float, scaling: Optional[float], dtype):
    """``eps_at(t)``: the ``(B, 1)`` eps of iteration ``t`` (1-based) for each problem."""
    if scaling is None:
        const = torch.full((stages.shape[0], 1), eps, dtype=dtype, device=stages.device)
        return lambda t: const
    log_r = math.log(scaling)

    def eps_at(t: int) -> torch.Tensor:
        k = (stages - t + 1).clamp(min=0).to(torch.float64)  # stages above the target
        return (eps * torch.exp(-k * log_r)).to(dtype).unsqueeze(-1)

    return eps_at


def _solve(C, a, b, eps, max_iter, tol, scaling=None) -> Tuple[torch.Tensor, ...]:
    """Alternating Sinkhorn on a batch of problems; each stops on its own."""
    log_a, log_b = a.log(), b.log()
    batch = C.shape[0]
    stages = scaling_stages(C, eps, scaling, max_iter)
    eps_at = _eps_schedule(stages, eps, scaling, C.dtype)
    f = torch.zeros_like(a)
    g = _col_update(C, f, log_a, eps_at(1))
    n_iter = torch.zeros(batch, dtype=torch.int32, device=C.device)
    error = torch.full((batch,), float("inf"), dtype=C.dtype, device=C.device)
    active = torch.ones(batch, dtype=torch.bool, device=C.device)
    for it in range(1, max_iter + 1):
        e = eps_at(it)
        f_new = _row_update(C, g, log_b, e)
        err = _row_error(a, f, f_new, e)
        f = torch.where(active.unsqueeze(-1), f_new, f)
        error = torch.where(active, err, error)
        n_iter = n_iter + active.to(torch.int32)
        if tol is not None:
            active = active & ~((err < tol) & (stages < it))
        if it == max_iter or not bool(active.any()):
            break
        g = torch.where(active.unsqueeze(-1), _col_update(C, f, log_a, eps_at(it + 1)), g)
    return f, g, n_iter, error


def _solve_symmetric(C, a, eps, max_iter, tol, scaling=None) -> Tuple[torch.Tensor, ...]:
    """Averaged fixed-point iteration for OT(x, x); returns (T(p), p)."""
    log_a = a.log()
    batch = C.shape[0]
    stages = scaling_stages(C, eps, scaling, max_iter)
    eps_at = _eps_schedule(stages, eps, scaling, C.dtype)
    p = torch.zeros_like(a)
    f_out, g_out = torch.zeros_like(a), torch.zeros_like(a)
    n_iter = torch.zeros(batch, dtype=torch.int32, device=C.device)
    error = torch.full((batch,), float("inf"), dtype=C.dtype, device=C.device)
    active = torch.ones(batch, dtype=torch.bool, device=C.device)
    for it in range(1, max_iter + 1):
        e = eps_at(it)
        q = _row_update(C, p, log_a, e)
        err = _row_error(a, p, q, e)
        stop = active & ((err < tol) & (stages < it) if tol is not None else torch.zeros_like(active))
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
    opt = problem.options
    C = cost_matrix(x, y, opt.cost)
    if symmetric:
        return _solve_symmetric(C, a, opt.eps, opt.max_iter, opt.tol, opt.scaling)
    return _solve(C, a, b, opt.eps, opt.max_iter, opt.tol, opt.scaling)


def _prepare(x, y, options, a, b, fields, caller: str) -> Problem:
    pb = prepare(x, y, options, a=a, b=b, caller=caller, **fields)
    if pb.options.cost_mode != "auto":
        raise ValueError(f"cost_mode={pb.options.cost_mode!r}: the reference keeps the (n, m) cost matrix; "
                         "cost_mode chooses the compiled operator's memory use (leave it 'auto' here)")
    return pb


def _value(pb: Problem):
    """``(value, f, g, n_iter, errors)``: the value (the divergence with
    ``debias``), the cross problem's potentials and iterations, and the
    errors of every problem, ``(problems, B)``."""
    f, g, n_iter, err = _ot(pb, pb.x, pb.y, pb.a, pb.b, symmetric=False)
    errors, counts = [err], [n_iter]
    value = (pb.a * f).sum(-1) + (pb.b * g).sum(-1)
    if pb.options.debias:
        fx, gx, nx, ex = _ot(pb, pb.x, pb.x, pb.a, pb.a, symmetric=True)
        fy, gy, ny, ey = _ot(pb, pb.y, pb.y, pb.b, pb.b, symmetric=True)
        value = value - 0.5 * ((pb.a * (fx + gx)).sum(-1) + (pb.b * (fy + gy)).sum(-1))
        errors += [ex, ey]
        counts += [nx, ny]
    return value.to(pb.out_dtype), f, g, torch.stack(counts).amax(0), torch.stack(errors)


def solve(
    x: torch.Tensor,
    y: torch.Tensor,
    options: Optional[SinkhornOptions] = None,
    *,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    **fields,
) -> SinkhornResult:
    """:func:`sinsim_ext.solve` by autograd through the iterations (the eps-scaling stages included)."""
    pb = _prepare(x, y, options, a, b, fields, "solve")
    value, f, g, n_iter, errors = _value(pb)
    warn_if_unconverged(errors, pb)
    error = reported_error(errors, pb)

    def plan_of(f, g):
        f, g = (f, g) if pb.batched else (f.unsqueeze(0), g.unsqueeze(0))
        C = cost_matrix(pb.x, pb.y, pb.options.cost)
        Z = (f.unsqueeze(-1) + g.unsqueeze(-2) - C) / pb.options.eps
        return pb.unbatched(pb.a.unsqueeze(-1) * pb.b.unsqueeze(-2) * Z.exp())

    u = pb.unbatched
    return SinkhornResult(u(value), u(f), u(g), u(n_iter), error, plan=plan_of)


def sinkhorn(
    x: torch.Tensor,
    y: torch.Tensor,
    options: Optional[SinkhornOptions] = None,
    *,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    **fields,
) -> SinkhornResult:
    """Potentials ``f``, ``g``; iterations run; final marginal error (of
    ``OT(x, y)``, no ``debias``), as :func:`sinsim_ext.sinkhorn`. See the module docstring."""
    if fields.get("debias") or (options is not None and getattr(options, "debias", False)):
        raise TypeError("sinkhorn() returns the potentials of OT(x, y) alone and takes no debias; "
                        "sinsim_ext.reference.solve(..., debias=True) gives the divergence with those potentials")
    pb = _prepare(x, y, options, a, b, fields, "sinkhorn")
    f, g, n_iter, error = _ot(pb, pb.x, pb.y, pb.a, pb.b, symmetric=False)
    warn_if_unconverged(error, pb)
    value = ((pb.a * f).sum(-1) + (pb.b * g).sum(-1)).to(pb.out_dtype)
    u = pb.unbatched
    return SinkhornResult(u(value), u(f), u(g), u(n_iter), u(error))


def sinkhorn_cost(
    x: torch.Tensor,
    y: torch.Tensor,
    options: Optional[SinkhornOptions] = None,
    *,
    a: Optional[torch.Tensor] = None,
    b: Optional[torch.Tensor] = None,
    return_error: bool = False,
    **fields,
):
    """Regularised OT value ``<a, f> + <b, g>``, or with ``debias=True`` the
    Sinkhorn divergence ``OT(x, y) - OT(x, x)/2 - OT(y, y)/2``.

    Differentiable by autograd through every iteration (the eps-scaling
    stages included). The options and ``return_error`` as in
    :func:`sinsim_ext.sinkhorn_cost`.
    """
    pb = _prepare(x, y, options, a, b, fields, "sinkhorn_cost")
    value, _, _, _, errors = _value(pb)
    value = pb.unbatched(value)
    if return_error:
        return value, reported_error(errors, pb)
    warn_if_unconverged(errors, pb)
    return value
