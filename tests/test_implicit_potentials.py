"""Implicit differentiation of the potentials and the plan (sinsim_ext.implicit):
the linear solve against a dense pseudo-inverse, the derivatives against finite
differences of converged solves (gauge-invariant quantities, and the documented
gauge), zero weights, batches, and conjugate-gradient failure reporting."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import sinsim_ext
from sinsim_ext import implicit

from helpers import COSTS, points, rel_err, simplex

CONVERGED = dict(tol=1e-13, max_iter=20000)
CHECK = dict(eps=1e-6, atol=1e-5, rtol=1e-4)


def _plan(x, y, a=None, b=None, eps=0.5, cost="sqeuclidean"):
    """The differentiable plan, the way docs/guide/operator.md tells users to build it."""
    res = sinsim_ext.sinkhorn(x, y, a=a, b=b, eps=eps, cost=cost, **CONVERGED)
    return sinsim_ext.transport_plan(x, y, res.f, res.g, a=a, b=b, eps=eps, cost=cost)


def _fd(fn, args, tangents, h=1e-6):
    with torch.no_grad():
        plus = fn(*[a + h * t for a, t in zip(args, tangents)])
        minus = fn(*[a - h * t for a, t in zip(args, tangents)])
    return (plus - minus) / (2 * h)


def _dense_pinv_solve(P, q1, q2, ma, mb):
    """A(P)^+ q with A = [[diag(P 1), P], [P^T, diag(P^T 1)]] on the support, densely."""
    out_u, out_v = torch.zeros_like(q1), torch.zeros_like(q2)
    for k in range(P.shape[0]):
        rows, cols = ma[k].nonzero().squeeze(-1), mb[k].nonzero().squeeze(-1)
        Pk = P[k][rows][:, cols]
        A = torch.cat([
            torch.cat([torch.diag(Pk.sum(1)), Pk], 1),
            torch.cat([Pk.T, torch.diag(Pk.sum(0))], 1),
        ])
        w = torch.linalg.pinv(A) @ torch.cat([q1[k][rows], q2[k][cols]])
        out_u[k, rows], out_v[k, cols] = w[: len(rows)], w[len(rows):]
    return out_u, out_v


def test_plan_solve_is_the_pseudo_inverse(gen):
    B, n, m = 3, 6, 5
    P = torch.rand(B, n, m, generator=gen, dtype=torch.float64) + 0.05
    ma = torch.rand(B, n, generator=gen) > 0.3
    mb = torch.rand(B, m, generator=gen) > 0.3
    ma[:, 0] = mb[:, 0] = True
    P = P * ma.unsqueeze(-1) * mb.unsqueeze(-2)
    q1, q2 = points(gen, B, n), points(gen, B, m)
    u, v = implicit.plan_solve(P, q1, q2, ma, mb)
    want_u, want_v = _dense_pinv_solve(P, q1, q2, ma, mb)
    assert rel_err(torch.cat([u, v], -1), torch.cat([want_u, want_v], -1)) < 1e-10


def test_plan_solve_derivatives(gen):
    """gradcheck/gradgradcheck of the solve itself (its backward calls it again)."""
    P = (torch.rand(1, 4, 3, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
    q1, q2 = points(gen, 1, 4).requires_grad_(), points(gen, 1, 3).requires_grad_()
    ma, mb = torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool)
    fn = lambda P, q1, q2: implicit.plan_solve(P, q1, q2, ma, mb)
    assert gradcheck(fn, (P, q1, q2), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert gradgradcheck(fn, (P, q1, q2), **CHECK)


@pytest.mark.parametrize("cost", COSTS)
def test_plan_gradcheck_and_gradgradcheck(gen, cost):
    x = points(gen, 5, 3).requires_grad_()
    y = points(gen, 4, 3).requires_grad_()
    fn = lambda x, y: _plan(x, y, cost=cost)
    assert gradcheck(fn, (x, y), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert gradgradcheck(fn, (x, y), **CHECK)


def test_plan_gradgradcheck_in_the_weights(gen):
    x, y = points(gen, 5, 2), points(gen, 4, 2)
    wa = (torch.rand(5, generator=gen, dtype=torch.float64) + 0.2).requires_grad_()
    wb = (torch.rand(4, generator=gen, dtype=torch.float64) + 0.2).requires_grad_()
    fn = lambda wa, wb: _plan(x, y, a=wa / wa.sum(), b=wb / wb.sum())
    assert gradcheck(fn, (wa, wb), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert gradgradcheck(fn, (wa, wb), **CHECK)


def test_plan_gradgradcheck_batched(gen):
    x = points(gen, 2, 4, 2).requires_grad_()
    y = points(gen, 2, 3, 2).requires_grad_()
    assert gradgradcheck(_plan, (x, y), **CHECK)


@pytest.mark.parametrize("cost", COSTS)
def test_plan_jvp_matches_finite_differences_of_converged_solves(gen, cost):
    x, y = points(gen, 7, 3), points(gen, 6, 3)
    a, b = simplex(gen, 7), simplex(gen, 6)
    tx, ty = points(gen, 7, 3), points(gen, 6, 3)
    fn = lambda x, y: _plan(x, y, a=a, b=b, eps=0.3, cost=cost)
    _, jvp = torch.func.jvp(fn, (x, y), (tx, ty))
    assert rel_err(jvp, _fd(fn, (x, y), (tx, ty))) < 1e-7


def test_vjp_of_f_plus_g_matches_finite_differences(gen):
    """f_i + g_j is gauge invariant: its derivative is exact whatever the gauge."""
    x, y = points(gen, 6, 2), points(gen, 5, 2)
    W = points(gen, 6, 5)
    v = points(gen, 6, 2)

    def loss(x):
        res = sinsim_ext.sinkhorn(x, y, eps=0.4, **CONVERGED)
        return (W * (res.f.unsqueeze(-1) + res.g.unsqueeze(-2))).sum()

    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(xg), xg)
    fd = _fd(loss, (x,), (v,))
    assert abs(float((grad * v).sum() - fd)) < 1e-7 * max(1.0, abs(float(fd)))


def test_potentials_follow_the_documented_gauge(gen):
    """f and g alone are differentiated as the representative whose imbalance
    <a, f> - <b, g> stays at its value: finite differences re-gauged that way."""
    x, y = points(gen, 6, 2), points(gen, 5, 2)
    a, b = simplex(gen, 6), simplex(gen, 5)
    t = points(gen, 6, 2)
    kw = dict(a=a, b=b, eps=0.4, **CONVERGED)
    base = sinsim_ext.sinkhorn(x, y, **kw)
    imbalance = (a * base.f).sum() - (b * base.g).sum()

    def regauged(x):
        res = sinsim_ext.sinkhorn(x, y, **kw)
        shift = (imbalance - ((a * res.f).sum() - (b * res.g).sum())) / 2
        return torch.cat([res.f + shift, res.g - shift])

    _, jvp = torch.func.jvp(lambda x: torch.cat(list(sinsim_ext.sinkhorn(x, y, **kw)[:2])), (x,), (t,))
    assert rel_err(jvp, _fd(regauged, (x,), (t,))) < 1e-7


def test_zero_weights_plan_and_off_support_potentials(gen):
    """Points with zero weight: the plan is zero there, and their potentials are
    c-transforms; derivatives of both against finite differences."""
    x, y = points(gen, 5, 2), points(gen, 4, 2)
    a = torch.tensor([0.3, 0.0, 0.3, 0.4, 0.0], dtype=torch.float64)
    b = torch.tensor([0.5, 0.0, 0.25, 0.25], dtype=torch.float64)
    t = points(gen, 5, 2)

    def pair_sums(x):  # f_i + g_j for every pair, on and off the support
        res = sinsim_ext.sinkhorn(x, y, a=a, b=b, eps=0.5, **CONVERGED)
        return res.f.unsqueeze(-1) + res.g.unsqueeze(-2)

    _, jvp = torch.func.jvp(pair_sums, (x,), (t,))
    assert rel_err(jvp, _fd(pair_sums, (x,), (t,))) < 1e-7
    xg, yg = x.clone().requires_grad_(), y.clone().requires_grad_()
    assert gradgradcheck(lambda x, y: _plan(x, y, a=a, b=b), (xg, yg), **CHECK)


def test_first_derivatives_in_a_zero_weight_are_the_one_sided_ones(gen):
    """Moving mass onto a point of zero weight: one-sided finite differences."""
    x, y = points(gen, 4, 2), points(gen, 4, 2)
    a = torch.tensor([0.4, 0.0, 0.35, 0.25], dtype=torch.float64)
    direction = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64) - a  # stays on the simplex
    h = 1e-7

    def plan_and_value(a):
        return _plan(x, y, a=a), sinsim_ext.sinkhorn_cost(x, y, a=a, eps=0.5, **CONVERGED)

    with torch.no_grad():
        (p0, v0), (p1, v1) = plan_and_value(a), plan_and_value(a + h * direction)
    _, (dp, dv) = torch.func.jvp(plan_and_value, (a,), (direction,))
    assert rel_err(dp, (p1 - p0) / h) < 1e-5
    assert abs(float(dv - (v1 - v0) / h)) < 1e-5
    ag = a.clone().requires_grad_()
    (grad,) = torch.autograd.grad(sinsim_ext.sinkhorn_cost(x, y, a=ag, eps=0.5, **CONVERGED), ag)
    assert abs(float((grad * direction).sum() - (v1 - v0) / h)) < 1e-5


def test_potentials_are_plain_tensors_when_nothing_needs_gradients(gen):
    x = points(gen, 5, 2).requires_grad_()
    y = points(gen, 4, 2)
    with torch.no_grad():
        res = sinsim_ext.sinkhorn(x, y)
    assert res.f.grad_fn is None and res.g.grad_fn is None
    res = sinsim_ext.sinkhorn(x.detach(), y)
    assert res.f.grad_fn is None
    res = sinsim_ext.sinkhorn(x, y)
    assert res.f.requires_grad and res.g.requires_grad


def test_conjugate_gradient_failure_warns_and_can_raise(gen, monkeypatch):
    x = points(gen, 8, 3).requires_grad_()
    y = points(gen, 7, 3)
    monkeypatch.setattr(implicit.CG, "max_iter", 1)

    def hessian_vector_product():
        (g,) = torch.autograd.grad(sinsim_ext.sinkhorn_cost(x, y, eps=0.3, **CONVERGED), x, create_graph=True)
        return torch.autograd.grad(g.sum(), x)

    with pytest.warns(implicit.ImplicitDiffWarning, match=r"conjugate gradient stopped after 1 iterations"):
        hessian_vector_product()
    monkeypatch.setattr(implicit.CG, "on_failure", "raise")
    with pytest.raises(RuntimeError, match=r"derivatives are not accurate"):
        hessian_vector_product()


def test_converged_solves_do_not_warn(gen):
    x = points(gen, 8, 3).requires_grad_()
    y = points(gen, 7, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", implicit.ImplicitDiffWarning)
        (g,) = torch.autograd.grad(sinsim_ext.sinkhorn_cost(x, y, eps=0.3, **CONVERGED), x, create_graph=True)
        torch.autograd.grad(g.sum(), x)
