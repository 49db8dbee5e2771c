"""No NaN or inf for small eps, large costs and far-away points."""

from __future__ import annotations

import warnings

import pytest
import torch

import sinsim_ext

from helpers import COSTS, points, unit_points


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [1e-1, 1e-2, 1e-3])
@pytest.mark.parametrize("debias", [False, True])
def test_unit_vectors_small_eps(gen, dtype, eps, debias):
    # antipodal pairs make the largest possible cost on the sphere, 4
    x = unit_points(gen, 40, 8, dtype=dtype)
    y = torch.cat([-x[:20], unit_points(gen, 30, 8, dtype=dtype)])
    x.requires_grad_()
    y.requires_grad_()
    value = sinsim_ext.sinkhorn_cost(x, y, eps=eps, debias=debias, max_iter=300)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cost", COSTS)
def test_unnormalised_points_of_norm_100(gen, dtype, cost):
    x = (100 * unit_points(gen, 30, 5, dtype=dtype)).requires_grad_()
    y = (100 * unit_points(gen, 25, 5, dtype=dtype)).requires_grad_()
    for eps in (1.0, 1e-3):
        value = sinsim_ext.sinkhorn_cost(x, y, eps=eps, cost=cost, debias=True)
        gx, gy = torch.autograd.grad(value, (x, y))
        assert torch.isfinite(value)
        assert torch.isfinite(gx).all() and torch.isfinite(gy).all()


@pytest.mark.parametrize("distance", [30.0, 1e3])
def test_far_outlier_keeps_marginals(gen, distance):
    """A point far from all others must still receive its mass: exp(-C/eps)
    underflows to 0 for it, which the log domain never computes. (Far
    outliers slow plain Sinkhorn down; the marginal still converges.)"""
    x = points(gen, 20, 3)
    y = torch.cat([points(gen, 19, 3), torch.full((1, 3), distance, dtype=torch.float64)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sinsim_ext.sinkhorn(x, y, eps=0.05, tol=1e-10, max_iter=50000)
    assert torch.isfinite(res.f).all() and torch.isfinite(res.g).all()
    P = sinsim_ext.transport_plan(x, y, res.f, res.g, eps=0.05)
    assert torch.isfinite(P).all()
    assert torch.allclose(P.sum(1), torch.full((20,), 0.05, dtype=P.dtype), atol=1e-12)
    assert abs(float(P[:, -1].sum()) - 0.05) < 1e-4
    assert float((P.sum(0) - 0.05).abs().sum()) < 1e-4


def test_zero_weights_are_allowed(gen):
    x, y = points(gen, 6, 2), points(gen, 5, 2)
    a = torch.tensor([0.5, 0.0, 0.25, 0.25, 0.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, 0.4, 0.6, 0.0, 0.0], dtype=torch.float64)
    value = sinsim_ext.sinkhorn_cost(x, y, a=a, b=b, eps=0.1, tol=1e-12, max_iter=10000)
    # the zero-weight points take no part: same as dropping them
    kept = sinsim_ext.sinkhorn_cost(
        x[[0, 2, 3]], y[[1, 2]], a=a[[0, 2, 3]], b=b[[1, 2]], eps=0.1, tol=1e-12, max_iter=10000
    )
    assert torch.isfinite(value) and abs(float(value - kept)) < 1e-9
