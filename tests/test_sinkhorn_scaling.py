"""Eps-scaling (``scaling=``): the annealed solve against exact answers and the reference.

The independent answer: for well-separated points (norm ~10 in 6-d) and small
eps the entropic plan is the optimal assignment (scipy's
``linear_sum_assignment``) up to terms of order exp(-gap / eps), so
``OT_eps = mean_i C_{i sigma(i)} + eps log n`` (KL(P | a b^T) = log n for a
permutation plan) and ``grad_x = 2/n (x - y_sigma)``.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from scipy.optimize import linear_sum_assignment

import sinsim_ext
from sinsim_ext import SinkhornConvergenceWarning, reference

from helpers import points, rel_err, unit_points

BUDGET = 500
SCALING = 0.95  # 1 iteration per stage; 0.8 stalls near ties on 4 seeds in 20 (docs/performance/convergence.md)


def _assignment(x, y, eps):
    C = torch.cdist(x, y) ** 2
    rows, cols = linear_sum_assignment(C.numpy())
    n = x.shape[0]
    value = float(C[rows, cols].mean()) + eps * math.log(n)
    grad = 2.0 / n * (x - y[torch.as_tensor(cols)])
    return value, grad


@pytest.mark.parametrize("eps", [1e-2, 1e-3, 1e-4])
def test_scaled_solve_reaches_the_exact_answer_where_plain_iterations_do_not(gen, eps):
    n = 24
    x, y = points(gen, n, 6, scale=10.0), points(gen, n, 6, scale=10.0)
    value, grad = _assignment(x, y, eps)

    xg = x.clone().requires_grad_()
    res = sinsim_ext.sinkhorn(x, y, eps=eps, scaling=SCALING, max_iter=BUDGET, tol=1e-10)
    assert int(res.n_iter) < BUDGET and float(res.error) < 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        cost = sinsim_ext.sinkhorn_cost(xg, y, eps=eps, scaling=SCALING, max_iter=BUDGET, tol=1e-10)
    (got_grad,) = torch.autograd.grad(cost, xg)
    assert abs(float(cost) - value) / value < 1e-9
    assert rel_err(got_grad, grad) < 1e-7

    ref = reference.sinkhorn_cost(x, y, eps=eps, scaling=SCALING, max_iter=BUDGET, tol=1e-10)
    assert abs(float(ref) - value) / value < 1e-9

    with pytest.warns(SinkhornConvergenceWarning, match=r"marginal error"):
        plain = sinsim_ext.sinkhorn_cost(x, y, eps=eps, max_iter=BUDGET)
    assert abs(float(plain) - value) / value > 1e-3


def _batch(gen):
    """Two problems of different cost scales (different numbers of stages), debias included."""
    x = torch.stack([points(gen, 9, 3, scale=3.0), points(gen, 9, 3, scale=0.5)])
    y = torch.stack([points(gen, 7, 3, scale=3.0), points(gen, 7, 3, scale=0.5)])
    return x, y


@pytest.mark.parametrize("debias", [False, True])
def test_kernel_reference_and_generic_solver_follow_the_same_schedule(gen, monkeypatch, debias):
    """Same stages, same iterations: the kernel, the reference and the
    device-generic solver (the CUDA eps-scaling path) agree to rounding at
    every budget, converged or not."""
    x, y = _batch(gen)
    kw = dict(eps=1e-3, scaling=0.7, debias=debias, return_error=True)
    for max_iter in (1, 4, 40):
        want, want_err = reference.sinkhorn_cost(x, y, max_iter=max_iter, **kw)
        got, got_err = sinsim_ext.sinkhorn_cost(x, y, max_iter=max_iter, **kw)
        monkeypatch.setenv("SINSIM_SOLVER", "generic")
        generic, generic_err = sinsim_ext.sinkhorn_cost(x, y, max_iter=max_iter, **kw)
        monkeypatch.delenv("SINSIM_SOLVER")
        assert rel_err(got, want) < 1e-10 and rel_err(generic, want) < 1e-10
        assert rel_err(got_err, want_err) < 1e-6 and rel_err(generic_err, want_err) < 1e-6
    r_k = sinsim_ext.sinkhorn(x, y, eps=1e-3, scaling=0.7, max_iter=40)
    r_r = reference.sinkhorn(x, y, eps=1e-3, scaling=0.7, max_iter=40)
    assert torch.equal(r_k.n_iter, r_r.n_iter)
    assert rel_err(r_k.f, r_r.f) < 1e-9 and rel_err(r_k.g, r_r.g) < 1e-9


@pytest.mark.parametrize("eps", [1e-2, 1e-3])
def test_float32_scaled_kernel_agrees_with_converged_float64_reference(gen, eps):
    """Against the converged float64 reference (autograd through its
    iterations). float32 resolves the plan only while max C / eps stays well
    below 1/float32-eps (here max C ~ 200-500, so max C / eps <= 5e5)."""
    x, y = points(gen, 24, 6, scale=3.0), points(gen, 24, 6, scale=3.0)
    xr = x.clone().requires_grad_()
    want = reference.sinkhorn_cost(xr, y, eps=eps, scaling=SCALING, max_iter=BUDGET, tol=1e-11)
    (want_grad,) = torch.autograd.grad(want, xr)
    xg = x.float().requires_grad_()
    cost = sinsim_ext.sinkhorn_cost(xg, y.float(), eps=eps, scaling=SCALING, max_iter=BUDGET, tol=1e-5)
    (got_grad,) = torch.autograd.grad(cost, xg)
    assert rel_err(cost.double(), want) < 1e-5
    # float32 rounds K = -C / eps (up to 5e5 here) to ~0.03 in the exponent
    assert rel_err(got_grad.double(), want_grad) < (1e-3 if eps >= 1e-2 else 1e-2)


def test_stages_are_capped_by_max_iter(gen):
    """A budget smaller than the schedule: the annealing starts lower, the
    last iteration still runs at eps."""
    x, y = points(gen, 8, 2, scale=10.0), points(gen, 8, 2, scale=10.0)
    for max_iter in (1, 2, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SinkhornConvergenceWarning)
            res = sinsim_ext.sinkhorn(x, y, eps=1e-3, scaling=0.5, max_iter=max_iter)
            ref = reference.sinkhorn(x, y, eps=1e-3, scaling=0.5, max_iter=max_iter)
        assert int(res.n_iter) == max_iter and torch.isfinite(res.f).all()
        assert rel_err(res.f, ref.f) < 1e-9
    stages = reference.scaling_stages((torch.cdist(x, y) ** 2).unsqueeze(0), 1e-3, 0.5, 10**6)
    C_max = float((torch.cdist(x, y) ** 2).max())
    assert 1e-3 / 0.5 ** int(stages) >= C_max > 1e-3 / 0.5 ** (int(stages) - 1)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5, float("nan"), float("inf")])
@pytest.mark.parametrize(
    "fn", [sinsim_ext.sinkhorn_cost, sinsim_ext.sinkhorn, reference.sinkhorn_cost, reference.sinkhorn]
)
def test_bad_scaling_is_refused_naming_it(gen, bad, fn):
    x, y = points(gen, 5, 2), points(gen, 4, 2)
    with pytest.raises(ValueError, match=r"scaling must be None .* strictly between 0 and 1"):
        fn(x, y, eps=0.1, scaling=bad)


def test_scaling_type_errors(gen):
    x, y = points(gen, 5, 2), points(gen, 4, 2)
    with pytest.raises(TypeError, match=r"scaling must be None or a number"):
        sinsim_ext.sinkhorn_cost(x, y, scaling="0.5")
    with pytest.raises(ValueError, match=r"scaling"):
        sinsim_ext.SinkhornLoss(scaling=2.0)
    a, b = torch.full((1, 5), 0.2, dtype=torch.float64), torch.full((1, 4), 0.25, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"scaling must be 0 .* strictly between 0 and 1"):
        torch.ops.sinsim_ext.sinkhorn_value(x[None], y[None], a, b, 0.1, "sqeuclidean", 10, 0.0, False, 1.0)
