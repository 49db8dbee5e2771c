r"""Implicit differentiation of the Sinkhorn fixed point.

The solver returns dual potentials ``(f, g)`` without recording its
iterations. Their derivatives come from the implicit function theorem (IFT)
applied to the optimality conditions, as OTT-JAX does (derivation:
docs/design/implicit.md). Everything here is device-generic PyTorch (batched ``(B, n, m)``).

Optimality conditions
---------------------
With ``Z_ij = (f_i + g_j - C_ij) / eps`` and the plan
``P_ij = a_i b_j exp(Z_ij)``, the fixed point of Sinkhorn is ``F = 0`` for::

    F(f, g; C, a, b) = ( P 1 - a ,  P^T 1 - b )          (row and column marginals)

Jacobian in the potentials (``r = P 1``, ``c = P^T 1``; ``r = a``, ``c = b``
at the fixed point)::

    dF/d(f, g) = (1/eps) A(P),    A(P) = [[diag(r), P], [P^T, diag(c)]]

``A(P)`` is symmetric positive semi-definite:
``<(u, v), A (u, v)> = sum_ij P_ij (u_i + v_j)^2``. Its null space is the
gauge direction ``(1, -1)`` (``(f + t, g - t)`` gives the same plan), plus
the coordinates of points with zero weight, whose rows and columns of ``P``
vanish. We work with the pseudo-inverse ``A^+``: project the right-hand side
onto the range (drop the off-support coordinates and the component along
``(1, -1)``), solve, and return the solution orthogonal to the null space.
Because that null space does not depend on ``P``, ``A^+`` differentiates like
an inverse: ``d(A^+ q) = A^+ (dq - dA A^+ q)``.

Derivatives in the data ``theta = (C, a, b)``, with ``E_ij = exp(Z_ij)``,
``Er_ij = b_j E_ij`` (rows sum to 1) and ``Ec_ij = a_i E_ij``::

    dP_ij = -P_ij dC_ij / eps + Er_ij da_i + Ec_ij db_j
    dF    = ( dP 1 - da ,  dP^T 1 - db )

IFT: ``d(f, g) = -(dF/d(f,g))^+ dF = -eps A^+ dF``. So

* forward mode (jvp): one solve per tangent, ``(df, dg) = -eps A^+ dF``;
* reverse mode (vjp) for cotangents ``(fbar, gbar)``: ``s = A^+ (fbar, gbar)``
  (``A`` is symmetric), ``W_ij = s_u,i + s_v,j``, then::

      Cbar = W * P
      abar = -eps (sum_j W_ij Er_ij - s_u)
      bbar = -eps (sum_i W_ij Ec_ij - s_v)

Solving with ``A``: Schur complement and conjugate gradient
--------------------------------------------------------------
``A (u, v) = (q1, q2)`` gives ``u = diag(r)^-1 (q1 - P v)`` and
``(diag(c) - P^T diag(r)^-1 P) v = q2 - P^T diag(r)^-1 q1``. In the
variables ``y = diag(c)^(1/2) v`` the Schur complement is
``I - M^T M`` with ``M = diag(r)^(-1/2) P diag(c)^(-1/2)``; its null vector
is ``nu = sqrt(c) / |sqrt(c)|``. Adding the rank-one term ``nu nu^T`` makes it
positive definite (eigenvalues in ``[1 - sigma_2(M)^2, 1]``) without changing
the solution for a right-hand side orthogonal to ``nu``, and conjugate
gradient solves it matrix-free: two products with ``P`` per iteration, no
``(n + m)^2`` matrix. Zero weights are handled by restricting every product
to the support. If conjugate gradient does not reach its tolerance the
derivative is not trusted: :class:`ImplicitDiffWarning` is issued (or
raised, see :data:`CG`).

Composability
-------------
Two autograd Functions carry this:

* ``_PlanSolve``: ``(u, v) = A(P)^+ (q1, q2)``. Backward: ``s = A^+ (ubar,
  vbar)`` (the same Function, so it is differentiable again),
  ``qbar = s``, ``Pbar_ij = -(s_u,i + s_v,j)(u_i + v_j)``. Forward mode:
  ``A^+ (dq - A(dP) (u, v))``.
* ``_ImplicitPotentials``: returns the solver's ``(f, g)`` unchanged, with
  the IFT as its backward and jvp, written with torch operations and
  ``_PlanSolve``. Its saved outputs are its own outputs, so under
  ``create_graph`` the derivative of the backward includes how ``(f, g)``
  move: derivatives of every order are those of the fixed point.

Both have ``vmap`` rules that fold the mapped dimension into the batch, so
``torch.func`` transforms (grad, jvp, vmap, jacrev, jacfwd, hessian) work.
Forward over forward (``jvp`` of ``jvp``, ``jacfwd`` of ``jacfwd``) raises:
PyTorch drops the outer tangent of a custom Function's ``jvp`` (it would give
0); forward over reverse (``hessian``) and reverse over forward work.

Conventions
-----------
* Gauge. ``(f, g)`` are determined up to ``(f + t, g - t)``.
  :func:`implicit_potentials` returns the solver's values, differentiated as
  the representative whose imbalance ``<a, f> - <b, g>`` stays at its
  current value. Gauge-invariant quantities (the plan, the value,
  ``f_i + g_j``, differences ``f_i - f_k``) have exact derivatives whatever
  the convention.
* Weights that are exactly zero. The potentials of such points are the
  c-transforms of the other side's potentials (what the solver returns);
  they and the plan are differentiated as such, first derivatives included
  with respect to the zero weights themselves (one-sided: weights cannot go
  negative). Second derivatives taken twice with respect to zero weights
  (for example ``d2/da_i db_j`` with ``a_i = b_j = 0``) treat the support as
  fixed and are not exact.
* Derivatives with respect to ``a`` and ``b`` are meaningful along the
  simplex (directions that sum to zero); the component along ``1`` is a
  convention, as for the value's gradient ``dOT/da = f``.
* The IFT gives the derivative of the exact fixed point; it applies to the
  solver's output as far as that output has converged (use ``tol``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from ._batching import fold, unfold
from ._modes import refuse_nested_forward_mode

__all__ = ["CG", "ImplicitDiffWarning", "implicit_potentials", "plan", "plan_solve"]


class ImplicitDiffWarning(RuntimeWarning):
    """Conjugate gradient did not solve the implicit-differentiation system
    to its tolerance: the derivatives it produced are not trustworthy."""


@dataclass
class CGSettings:
    """Conjugate-gradient settings of the implicit differentiation.

    Attributes:
        max_iter: iterations per solve (each costs two products with ``P``).
        rtol_float64, rtol_float32: stop when the residual norm is below
            ``rtol`` times the norm of the right-hand side's terms (measured
            before they cancel, so that a right-hand side that is zero up to
            rounding counts as solved).
        on_failure: ``"warn"`` (an :class:`ImplicitDiffWarning`) or
            ``"raise"`` (a ``RuntimeError``) when the true residual of the
            returned solution exceeds ``100 * rtol``.
    """

    max_iter: int = 1000
    rtol_float64: float = 1e-12
    rtol_float32: float = 1e-6
    on_failure: str = "warn"


#: Module-wide settings, e.g. ``sinsim_ext.implicit.CG.max_iter = 5000``.
CG = CGSettings()

_CHECK_EVERY = 8  # iterations between convergence tests (each reads the device)


def _masked_log(w: torch.Tensor) -> torch.Tensor:
    """``log w`` with ``-inf`` where ``w == 0``, and a zero (not NaN) gradient there."""
    pos = w > 0
    return torch.where(pos, torch.where(pos, w, torch.ones_like(w)).log(), torch.full_like(w, -torch.inf))


def _plan_terms(C, a, b, f, g, eps):
    """``P = a b^T E``, ``Er = E diag(b)``, ``Ec = diag(a) E`` with ``E = exp((f + g - C)/eps)``."""
    Z = (f.unsqueeze(-1) + g.unsqueeze(-2) - C) / eps
    la, lb = _masked_log(a).unsqueeze(-1), _masked_log(b).unsqueeze(-2)
    return (la + lb + Z).exp(), (lb + Z).exp(), (la + Z).exp()


def plan(C: torch.Tensor, f: torch.Tensor, g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    r"""``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``, batched ``(B, n, m)``.

    Computed in the log domain (no overflow), with first derivatives exact
    also with respect to weights that are zero: there ``dP_ij/da_i =
    b_j exp(...)``, which ``exp(log a + ...)`` alone would give as NaN
    (``log 0``). The correction terms below are zero in value and carry
    exactly that derivative.
    """
    Z = (f.unsqueeze(-1) + g.unsqueeze(-2) - C) / eps
    la, lb = _masked_log(a).unsqueeze(-1), _masked_log(b).unsqueeze(-2)
    P = (la + lb + Z).exp()
    da = torch.where(a > 0, torch.zeros_like(a), a - a.detach()).unsqueeze(-1)
    db = torch.where(b > 0, torch.zeros_like(b), b - b.detach()).unsqueeze(-2)
    return P + da * (lb + Z).exp() + db * (la + Z).exp()


def _bmv(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (M @ v.unsqueeze(-1)).squeeze(-1)


def _bmtv(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (v.unsqueeze(-2) @ M).squeeze(-2)


def _rtol(dtype: torch.dtype) -> float:
    return CG.rtol_float64 if dtype == torch.float64 else CG.rtol_float32


def _conjugate_gradient(matvec, h: torch.Tensor, atol: torch.Tensor, max_iter: int):
    """Batched conjugate gradient for SPD systems ``matvec(y) = h``, each problem
    of the batch stopping once its residual norm is below its ``atol``.
    Returns ``(y, iterations)``."""
    y = torch.zeros_like(h)
    r = h.clone()
    p = r.clone()
    rs = (r * r).sum(-1)
    target = atol * atol
    active = rs > target
    it = 0
    while it < max_iter and bool(active.any()):
        for _ in range(min(_CHECK_EVERY, max_iter - it)):
            Ap = matvec(p)
            pAp = (p * Ap).sum(-1)
            alpha = torch.where(active & (pAp > 0), rs / pAp, torch.zeros_like(rs))
            y = y + alpha.unsqueeze(-1) * p
            r = r - alpha.unsqueeze(-1) * Ap
            rs_new = (r * r).sum(-1)
            beta = torch.where(active & (rs > 0), rs_new / rs, torch.zeros_like(rs))
            p = r + beta.unsqueeze(-1) * p
            rs = torch.where(active, rs_new, rs)
            active = active & (rs > target)
            it += 1
    return y, it


def _report(rel_residual: torch.Tensor, rtol: float, iterations: int) -> None:
    worst = float(rel_residual.max()) if rel_residual.numel() else 0.0
    if worst <= 100 * rtol:
        return
    message = (
        "implicit differentiation of the Sinkhorn fixed point: conjugate gradient stopped after "
        f"{iterations} iterations with relative residual {worst:.3g} (tolerance {rtol:g}); the "
        "derivatives are not accurate. Causes: potentials far from converged (pass tol= and a larger "
        "max_iter), or a badly conditioned plan (small eps). Raise "
        "sinsim_ext.implicit.CG.max_iter, or differentiate through the iterations with sinsim_ext.reference."
    )
    if CG.on_failure == "raise":
        raise RuntimeError(message)
    warnings.warn(message, ImplicitDiffWarning, stacklevel=4)


@torch.no_grad()
def _pinv_apply(P, q1, q2, ma, mb) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(u, v) = A(P)^+ (q1, q2)`` restricted to the support ``ma x mb``; see the module docstring."""
    maf, mbf = ma.to(P.dtype), mb.to(P.dtype)
    count = maf.sum(-1, keepdim=True) + mbf.sum(-1, keepdim=True)
    q1, q2 = q1 * maf, q2 * mbf
    k = (q1.sum(-1, keepdim=True) - q2.sum(-1, keepdim=True)) / count
    q1, q2 = q1 - k * maf, q2 + k * mbf
    Ps = P * (maf.unsqueeze(-1) * mbf.unsqueeze(-2))
    r, c = Ps.sum(-1), Ps.sum(-2)
    r_inv = torch.where(r > 0, 1.0 / r, torch.zeros_like(r))
    c_isqrt = torch.where(c > 0, c.rsqrt(), torch.zeros_like(c))
    nu = c.clamp_min(0).sqrt()
    nu = nu / nu.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(P.dtype).tiny)

    def schur(y):
        t = _bmv(Ps, y * c_isqrt) * r_inv
        return y - c_isqrt * _bmtv(Ps, t) + nu * (nu * y).sum(-1, keepdim=True)

    h2, h1 = q2 * c_isqrt, _bmtv(Ps, q1 * r_inv) * c_isqrt
    h = h2 - h1
    h = h - nu * (nu * h).sum(-1, keepdim=True)
    # Tolerances relative to the right-hand side's terms before they cancel:
    # a right-hand side that is zero up to rounding is solved as zero.
    scale = h2.norm(dim=-1) + h1.norm(dim=-1)
    rtol = _rtol(P.dtype)
    y, iterations = _conjugate_gradient(schur, h, rtol * scale, CG.max_iter)
    rel = (schur(y) - h).norm(dim=-1) / torch.where(scale > 0, scale, torch.ones_like(scale))
    _report(rel, rtol, iterations)
    v = y * c_isqrt
    u = (q1 - _bmv(Ps, v)) * r_inv
    t = (u.sum(-1, keepdim=True) - v.sum(-1, keepdim=True)) / count
    return u - t * maf, v + t * mbf


def _support(ma: torch.Tensor, mb: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return ma.to(dtype).unsqueeze(-1) * mb.to(dtype).unsqueeze(-2)


def _pair_sum(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``W_ij = u_i + v_j``."""
    return u.unsqueeze(-1) + v.unsqueeze(-2)


def _zeros_if_none(t: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if t is None else t


class _PlanSolve(torch.autograd.Function):
    """``(u, v) = A(P)^+ (q1, q2)``, differentiable in ``P``, ``q1``, ``q2`` to any order."""

    @staticmethod
    def forward(P, q1, q2, ma, mb):
        return _pinv_apply(P, q1, q2, ma, mb)

    @staticmethod
    def setup_context(ctx, inputs, output):
        P, _q1, _q2, ma, mb = inputs
        u, v = output
        ctx.save_for_backward(P, ma, mb, u, v)
        ctx.save_for_forward(P, ma, mb, u, v)

    @staticmethod
    def backward(ctx, ubar, vbar):
        P, ma, mb, u, v = ctx.saved_tensors
        su, sv = plan_solve(P, _zeros_if_none(ubar, u), _zeros_if_none(vbar, v), ma, mb)
        Pbar = None
        if ctx.needs_input_grad[0]:
            Pbar = -_pair_sum(su, sv) * _pair_sum(u, v) * _support(ma, mb, P.dtype)
        return Pbar, su, sv, None, None

    @staticmethod
    def jvp(ctx, Pdot, q1dot, q2dot, _ma, _mb):
        refuse_nested_forward_mode()
        P, ma, mb, u, v = ctx.saved_tensors
        r1, r2 = _zeros_if_none(q1dot, u), _zeros_if_none(q2dot, v)
        if Pdot is not None:
            W = _pair_sum(u, v) * Pdot * _support(ma, mb, P.dtype)
            r1, r2 = r1 - W.sum(-1), r2 - W.sum(-2)
        return plan_solve(P, r1, r2, ma, mb)

    @staticmethod
    def vmap(info, in_dims, P, q1, q2, ma, mb):
        u, v = _PlanSolve.apply(*fold(info.batch_size, in_dims, (P, q1, q2, ma, mb)))
        return (unfold(u, info.batch_size), unfold(v, info.batch_size)), (0, 0)


def plan_solve(P, q1, q2, ma, mb) -> Tuple[torch.Tensor, torch.Tensor]:
    """``A(P)^+ (q1, q2)`` for ``A(P) = [[diag(P 1), P], [P^T, diag(P^T 1)]]``
    restricted to the support ``ma x mb`` (boolean masks ``(B, n)``, ``(B, m)``)."""
    return _PlanSolve.apply(P, q1, q2, ma, mb)


def _ift_vjp(C, a, b, f, g, eps, fbar, gbar):
    ma, mb = a > 0, b > 0
    P, Er, Ec = _plan_terms(C, a, b, f, g, eps)
    q1 = torch.where(ma, _zeros_if_none(fbar, f), torch.zeros_like(f))
    q2 = torch.where(mb, _zeros_if_none(gbar, g), torch.zeros_like(g))
    su, sv = plan_solve(P, q1, q2, ma, mb)
    W = _pair_sum(su, sv)
    Cbar = W * P
    abar = -eps * ((W * Er).sum(-1) - su)
    bbar = -eps * ((W * Ec).sum(-2) - sv)
    return Cbar, abar, bbar


def _ift_jvp(C, a, b, f, g, eps, Cdot, adot, bdot):
    ma, mb = a > 0, b > 0
    P, Er, Ec = _plan_terms(C, a, b, f, g, eps)
    Pdot = torch.zeros_like(P)
    if Cdot is not None:
        Pdot = Pdot - P * Cdot / eps
    if adot is not None:
        Pdot = Pdot + adot.unsqueeze(-1) * Er
    if bdot is not None:
        Pdot = Pdot + bdot.unsqueeze(-2) * Ec
    F1, F2 = Pdot.sum(-1), Pdot.sum(-2)
    if adot is not None:
        F1 = F1 - adot
    if bdot is not None:
        F2 = F2 - bdot
    fdot, gdot = plan_solve(P, F1, F2, ma, mb)
    return -eps * fdot, -eps * gdot


class _ImplicitPotentials(torch.autograd.Function):
    """Identity on the solver's ``(f, g)``; derivative in ``(C, a, b)`` by the IFT
    (on the support of the weights; see :func:`implicit_potentials`)."""

    @staticmethod
    def forward(C, a, b, f, g, eps):
        return f.clone(), g.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        C, a, b, _f, _g, eps = inputs
        f, g = output
        ctx.eps = eps
        ctx.save_for_backward(C, a, b, f, g)
        ctx.save_for_forward(C, a, b, f, g)

    @staticmethod
    def backward(ctx, fbar, gbar):
        C, a, b, f, g = ctx.saved_tensors
        Cbar, abar, bbar = _ift_vjp(C, a, b, f, g, ctx.eps, fbar, gbar)
        return Cbar, abar, bbar, None, None, None

    @staticmethod
    def jvp(ctx, Cdot, adot, bdot, _fdot, _gdot, _eps):
        refuse_nested_forward_mode()
        C, a, b, f, g = ctx.saved_tensors
        return _ift_jvp(C, a, b, f, g, ctx.eps, Cdot, adot, bdot)

    @staticmethod
    def vmap(info, in_dims, C, a, b, f, g, eps):
        args = fold(info.batch_size, in_dims, (C, a, b, f, g, eps))
        f, g = _ImplicitPotentials.apply(*args)
        return (unfold(f, info.batch_size), unfold(g, info.batch_size)), (0, 0)


def _c_transform(C, g, b, eps, dim):
    """``-eps LSE(log b + (g - C)/eps)`` over ``dim`` (-1: rows, ``f = T(g)``; -2: columns)."""
    if dim == -1:
        return -eps * torch.logsumexp(_masked_log(b).unsqueeze(-2) + (g.unsqueeze(-2) - C) / eps, dim=-1)
    return -eps * torch.logsumexp(_masked_log(b).unsqueeze(-1) + (g.unsqueeze(-1) - C) / eps, dim=-2)


def _with_derivative_of(value: torch.Tensor, mask: torch.Tensor, formula: torch.Tensor) -> torch.Tensor:
    """``value`` unchanged, plus the derivative of ``formula`` where ``mask`` holds."""
    return value + torch.where(mask, formula - formula.detach(), torch.zeros_like(formula))


def implicit_potentials(
    C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, f: torch.Tensor, g: torch.Tensor, eps: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""The solver's potentials, made differentiable in ``C``, ``a`` and ``b``.

    Args:
        C: cost matrix ``(B, n, m)`` (a differentiable function of the points).
        a, b: weights ``(B, n)``, ``(B, m)`` on the simplex, zeros allowed.
        f, g: converged potentials ``(B, n)``, ``(B, m)`` (no gradient needed).
        eps: the regularisation they were computed with.

    Returns:
        ``(f, g)`` with the same values. On the support of the weights their
        derivatives (reverse, forward, any order) are given by the IFT. Off the
        support, ``f = T(g)`` and ``g = T(f)`` (the c-transforms the solver
        returns there) are differentiated as such. Gauge: the derivative is
        the one of the representative with constant ``<a, f> - <b, g>``.
    """
    f1, g1 = _ImplicitPotentials.apply(C, a, b, f, g, eps)
    f1 = _with_derivative_of(f1, a <= 0, _c_transform(C, g1, b, eps, dim=-1))
    g1 = _with_derivative_of(g1, b <= 0, _c_transform(C, f1, a, eps, dim=-2))
    imbalance = (a * f1).sum(-1) - (b * g1).sum(-1)
    shift = -((imbalance - imbalance.detach()) / (a.sum(-1) + b.sum(-1))).unsqueeze(-1)
    return f1 + shift, g1 - shift
