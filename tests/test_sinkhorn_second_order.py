"""Second derivatives of the Sinkhorn value (double backward): gradgradcheck at
convergence, Hessian-vector products against finite differences of the
gradient and against autograd through the reference's iterations.

A backward without derivatives of its own would give a Hessian that ignores
how the plan moves with x; these tests catch that."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import sinsim_ext
from sinsim_ext import reference

from helpers import COSTS, points, rel_err

CONVERGED = dict(tol=1e-13, max_iter=20000)
CHECK = dict(eps=1e-6, atol=1e-5, rtol=1e-4)


def _normalised(w):
    return w / w.sum(-1, keepdim=True)


def _hvp(fn, x, v):
    """Hessian-vector product by double backward."""
    x = x.detach().requires_grad_()
    (g,) = torch.autograd.grad(fn(x), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    return hv


def _fd_hvp(fn, x, v, h=1e-5):
    """Central finite difference of the gradient along v."""

    def grad_at(z):
        z = z.detach().requires_grad_()
        return torch.autograd.grad(fn(z), z)[0]

    return (grad_at(x + h * v) - grad_at(x - h * v)) / (2 * h)


def test_small_problem_no_warning_and_hessian_matches_reference(gen):
    """A small float64 problem: 5 x 3 against 4 x 3, eps = 0.5, max_iter = 800."""
    x, y = points(gen, 5, 3), points(gen, 4, 3)
    kernel = lambda x: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, max_iter=800)
    ref = lambda x: reference.sinkhorn_cost(x, y, eps=0.5, tol=1e-14, max_iter=800)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "autograd kernel was not registered" warning
        assert gradgradcheck(kernel, (x.clone().requires_grad_(),), **CHECK)
        H = torch.autograd.functional.hessian(kernel, x)
    H_ref = torch.autograd.functional.hessian(ref, x)
    assert rel_err(H, H_ref) < 1e-8


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("debias", [False, True])
def test_gradgradcheck_points(gen, cost, debias):
    x = points(gen, 5, 3).requires_grad_()
    y = points(gen, 4, 3).requires_grad_()
    fn = lambda x, y: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, cost=cost, debias=debias, **CONVERGED)
    assert gradgradcheck(fn, (x, y), **CHECK)


@pytest.mark.parametrize("debias", [False, True])
def test_gradgradcheck_weights_and_points(gen, debias):
    x = points(gen, 5, 2).requires_grad_()
    y = points(gen, 4, 2).requires_grad_()
    wa = (torch.rand(5, generator=gen, dtype=torch.float64) + 0.2).requires_grad_()
    wb = (torch.rand(4, generator=gen, dtype=torch.float64) + 0.2).requires_grad_()

    def fn(x, y, wa, wb):
        return sinsim_ext.sinkhorn_cost(x, y, eps=0.4, a=_normalised(wa), b=_normalised(wb), debias=debias, **CONVERGED)

    assert gradgradcheck(fn, (x, y, wa, wb), **CHECK)


def test_gradgradcheck_batched(gen):
    x = points(gen, 2, 4, 2).requires_grad_()
    y = points(gen, 2, 3, 2).requires_grad_()
    fn = lambda x, y: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, **CONVERGED)
    assert gradgradcheck(fn, (x, y), **CHECK)


@pytest.mark.parametrize("debias", [False, True])
def test_gradgradcheck_with_zero_weights(gen, debias):
    x = points(gen, 5, 2).requires_grad_()
    y = points(gen, 4, 2).requires_grad_()
    a = torch.tensor([0.3, 0.0, 0.3, 0.4, 0.0], dtype=torch.float64)
    b = torch.tensor([0.5, 0.0, 0.25, 0.25], dtype=torch.float64)
    fn = lambda x, y: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, a=a, b=b, debias=debias, **CONVERGED)
    assert gradcheck(fn, (x, y), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert gradgradcheck(fn, (x, y), **CHECK)


def test_gradgradcheck_reference(gen):
    """The reference differentiates through its iterations: any order, any count."""
    x = points(gen, 4, 2).requires_grad_()
    y = points(gen, 3, 2).requires_grad_()
    fn = lambda x, y: reference.sinkhorn_cost(x, y, eps=0.5, max_iter=15)
    assert gradgradcheck(fn, (x, y), **CHECK)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("debias", [False, True])
def test_hessian_vector_product_matches_finite_differences(gen, cost, debias):
    x, y = points(gen, 8, 3), points(gen, 6, 3)
    v = points(gen, 8, 3)
    fn = lambda x: sinsim_ext.sinkhorn_cost(x, y, eps=0.3, cost=cost, debias=debias, **CONVERGED)
    assert rel_err(_hvp(fn, x, v), _fd_hvp(fn, x, v)) < 1e-6


def test_hessian_vector_product_matches_the_reference(gen):
    x, y = points(gen, 10, 4), points(gen, 7, 4)
    v = points(gen, 10, 4)
    kw = dict(eps=0.4, debias=True, **CONVERGED)
    got = _hvp(lambda x: sinsim_ext.sinkhorn_cost(x, y, **kw), x, v)
    want = _hvp(lambda x: reference.sinkhorn_cost(x, y, **kw), x, v)
    assert rel_err(got, want) < 1e-8


def test_gradient_penalty_backward_matches_finite_differences(gen):
    """d/dx ||grad_x OT(x, y)||^2, the WGAN-GP-style use of double backward."""
    x, y = points(gen, 6, 2), points(gen, 5, 2).requires_grad_()
    v = points(gen, 6, 2)

    def penalty(x):
        (g,) = torch.autograd.grad(sinsim_ext.sinkhorn_cost(x, y, eps=0.5, **CONVERGED), x, create_graph=True)
        return g.square().sum()

    xg = x.clone().requires_grad_()
    (got,) = torch.autograd.grad(penalty(xg), xg)
    h = 1e-5
    fd = (penalty((x + h * v).requires_grad_()) - penalty((x - h * v).requires_grad_())) / (2 * h)
    assert abs(float((got * v).sum() - fd.detach())) < 1e-6 * max(1.0, abs(float(fd.detach())))


def test_first_order_gradient_is_unchanged_by_create_graph(gen):
    """The fast compiled backward and the differentiable one give the same gradient."""
    x = points(gen, 12, 4).requires_grad_()
    y = points(gen, 9, 4).requires_grad_()
    a = _normalised(torch.rand(12, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
    value = lambda: sinsim_ext.sinkhorn_cost(x, y, a=a, eps=0.2, debias=True, max_iter=50)
    fast = torch.autograd.grad(value(), (x, y, a))
    differentiable = torch.autograd.grad(value(), (x, y, a), create_graph=True)
    for f, d in zip(fast, differentiable):
        assert rel_err(d, f) < 1e-12


def test_float32_hessian_vector_product_is_accurate_and_quiet(gen):
    """Close to the training setting: unit vectors, small eps, float32."""
    x = torch.nn.functional.normalize(points(gen, 48, 16), dim=-1)
    y = torch.nn.functional.normalize(x + 0.3 * points(gen, 48, 16), dim=-1)
    v = points(gen, 48, 16)
    kw = dict(eps=0.1, tol=1e-5, max_iter=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sinsim_ext.implicit.ImplicitDiffWarning)
        warnings.simplefilter("error", RuntimeWarning)  # and the solve reached tol
        got = _hvp(lambda x: sinsim_ext.sinkhorn_cost(x, y.float(), **kw), x.float(), v.float())
    want = _hvp(lambda x: sinsim_ext.sinkhorn_cost(x, y, **dict(kw, tol=1e-13, max_iter=20000)), x, v)
    assert rel_err(got, want) < 1e-3
