"""The compiled CPU kernel agrees with the pure-PyTorch reference in float64.

Both run the same iteration to convergence (tol 1e-12), so values and
potentials must match to 1e-8 relative: any difference beyond rounding is a
bug in one of them.
"""

from __future__ import annotations

import pytest
import torch

import sinsim_ext
from sinsim_ext import reference

from helpers import COSTS, points, rel_err, simplex

CONVERGED = dict(tol=1e-12, max_iter=20000)
SIZES = [(1, 1, 1), (1, 6, 3), (6, 1, 3), (5, 9, 1), (17, 17, 4), (33, 20, 6), (48, 64, 16)]


def _inputs(gen, n, m, d, batch=None):
    lead = () if batch is None else (batch,)
    # scaled so that costs are O(1) whatever d is
    return points(gen, *lead, n, d, scale=d**-0.5), points(gen, *lead, m, d, scale=d**-0.5)


def _close(a, b, tol=1e-8):
    scale = 1.0 + float(b.detach().abs().max())
    assert float((a - b).detach().abs().max()) <= tol * scale, (a, b)


@pytest.mark.parametrize("n,m,d", SIZES)
@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_value_and_potentials_match_reference(gen, n, m, d, cost, eps):
    x, y = _inputs(gen, n, m, d)
    got = sinsim_ext.sinkhorn(x, y, eps=eps, cost=cost, **CONVERGED)
    want = reference.sinkhorn(x, y, eps=eps, cost=cost, **CONVERGED)
    _close(got.f, want.f)
    _close(got.g, want.g)
    assert int(got.n_iter) == int(want.n_iter)
    value = sinsim_ext.sinkhorn_cost(x, y, eps=eps, cost=cost, **CONVERGED)
    assert rel_err(value, reference.sinkhorn_cost(x, y, eps=eps, cost=cost, **CONVERGED)) < 1e-8


@pytest.mark.parametrize("n,m,d", [(1, 4, 2), (9, 5, 3), (24, 30, 8)])
@pytest.mark.parametrize("cost", COSTS)
def test_weighted_and_debiased_match_reference(gen, n, m, d, cost):
    x, y = _inputs(gen, n, m, d)
    a, b = simplex(gen, n), simplex(gen, m)
    for debias in (False, True):
        kw = dict(eps=0.3, cost=cost, a=a, b=b, debias=debias, **CONVERGED)
        assert rel_err(sinsim_ext.sinkhorn_cost(x, y, **kw), reference.sinkhorn_cost(x, y, **kw)) < 1e-8


def test_batched_matches_reference_and_per_problem_calls(gen):
    x, y = _inputs(gen, 10, 7, 3, batch=4)
    a, b = simplex(gen, 4, 10), simplex(gen, 7)
    kw = dict(eps=0.2, a=a, b=b, **CONVERGED)
    batched = sinsim_ext.sinkhorn_cost(x, y, **kw)
    assert batched.shape == (4,)
    assert rel_err(batched, reference.sinkhorn_cost(x, y, **kw)) < 1e-8
    one_by_one = torch.stack(
        [sinsim_ext.sinkhorn_cost(x[i], y[i], eps=0.2, a=a[i], b=b, **CONVERGED) for i in range(4)]
    )
    assert rel_err(batched, one_by_one) < 1e-12


def test_duplicated_points(gen):
    base = points(gen, 6, 3)
    x = torch.cat([base, base, base[:2]])  # repeated rows
    y = torch.cat([base[3:], base[3:]])
    for debias in (False, True):
        kw = dict(eps=0.1, debias=debias, **CONVERGED)
        assert rel_err(sinsim_ext.sinkhorn_cost(x, y, **kw), reference.sinkhorn_cost(x, y, **kw)) < 1e-8


def test_debiased_divergence_is_zero_for_identical_clouds(gen):
    x = points(gen, 12, 4)
    value = sinsim_ext.sinkhorn_cost(x, x.clone(), eps=1.0, debias=True, **CONVERGED)
    assert abs(float(value)) < 1e-10


def test_fixed_iterations_match_reference_not_converged(gen):
    """Without tol both run exactly max_iter iterations of the same scheme."""
    x, y = _inputs(gen, 20, 15, 5)
    for max_iter in (1, 2, 7):
        got = sinsim_ext.sinkhorn(x, y, eps=0.05, max_iter=max_iter)
        want = reference.sinkhorn(x, y, eps=0.05, max_iter=max_iter)
        _close(got.f, want.f)
        _close(got.g, want.g)
        _close(got.error, want.error)
        assert int(got.n_iter) == max_iter


def test_float32_kernel_close_to_float64_reference(gen):
    x, y = _inputs(gen, 64, 50, 16)
    want = reference.sinkhorn_cost(x, y, eps=0.05)
    got = sinsim_ext.sinkhorn_cost(x.float(), y.float(), eps=0.05)
    assert got.dtype == torch.float32
    assert rel_err(got, want) < 1e-5
