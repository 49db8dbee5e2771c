"""The ground-cost table (sinsim_ext.costs.COSTS), entry by entry, against
answers computed independently of it: the cost of each pair written out
directly, the adjoint against autograd through the matrix, the bound on the
largest cost and the mean cost against the full matrix.

A new cost is tested here once its direct formula is in DIRECT; the
operator tests parametrised over ``helpers.COSTS`` then run it through every
back end."""

from __future__ import annotations

import pytest
import torch

from sinsim_ext.costs import COSTS

from helpers import points, simplex

#: c(p, q) of one pair of points, written without the table.
DIRECT = {
    "sqeuclidean": lambda p, q: ((p - q) ** 2).sum(),
    "cosine": lambda p, q: 1 - (p @ q) / (p.norm() * q.norm()),
}


def _clouds(gen, batch=2, n=5, m=4, d=3):
    return points(gen, batch, n, d, scale=2.0), points(gen, batch, m, d)


def test_every_cost_has_a_direct_formula():
    assert set(DIRECT) == set(COSTS)


@pytest.mark.parametrize("cost", tuple(COSTS))
def test_matrix_is_the_cost_of_each_pair(gen, cost):
    x, y = _clouds(gen)
    C = COSTS[cost].matrix(x, y)
    want = torch.tensor([[[DIRECT[cost](x[k, i], y[k, j]) for j in range(y.shape[1])] for i in range(x.shape[1])]
                         for k in range(x.shape[0])], dtype=x.dtype)
    torch.testing.assert_close(C, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cost", tuple(COSTS))
def test_vjp_is_the_gradient_of_the_weighted_cost(gen, cost):
    x, y = (t.requires_grad_() for t in _clouds(gen))
    G = points(gen, 2, 5, 4).abs()
    want = torch.autograd.grad((G * COSTS[cost].matrix(x, y)).sum(), (x, y))
    got = COSTS[cost].vjp(x.detach(), y.detach(), G)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cost", tuple(COSTS))
@pytest.mark.parametrize("debias", [False, True])
def test_max_bound_bounds_every_cost_of_the_problems(gen, cost, debias):
    x, y = _clouds(gen)
    table = COSTS[cost]
    largest = table.matrix(x, y).flatten(1).amax(-1)
    if debias:
        for p in (x, y):
            largest = torch.maximum(largest, table.matrix(p, p).flatten(1).amax(-1))
    assert (table.max_bound(x, y, debias) >= largest * (1 - 1e-12)).all()


@pytest.mark.parametrize("cost", tuple(COSTS))
def test_mean_is_the_weighted_mean_of_the_matrix(gen, cost):
    x, y = _clouds(gen)
    a, b = simplex(gen, 2, 5), simplex(gen, 2, 4)
    want = (a.unsqueeze(-1) * b.unsqueeze(-2) * COSTS[cost].matrix(x, y)).sum((-1, -2))
    torch.testing.assert_close(COSTS[cost].mean(x, y, a, b), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cost", tuple(COSTS))
def test_ordinary_points_are_not_refused(gen, cost):
    x, _ = _clouds(gen)
    assert not any(bool(flag) for flag in COSTS[cost].invalid_points("x", x).values())


def test_the_cosine_cost_refuses_a_zero_vector(gen):
    x, _ = _clouds(gen)
    x[1, 2] = 0
    flags = COSTS["cosine"].invalid_points("x", x)
    assert [bool(f) for f in flags.values()] == [True]
    assert "x contains a zero vector" in next(iter(flags))
