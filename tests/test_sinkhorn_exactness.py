"""Answers no Sinkhorn code wrote: the optimal assignment, and the bounds
that tie the entropic value to it.

For n = m and uniform weights, optimal transport is an assignment problem
(Birkhoff): W0 = min_sigma (1/n) sum_i C_{i sigma(i)}, solved exactly by
scipy.optimize.linear_sum_assignment. The entropic value satisfies
W0 <= OT_eps <= W0 + eps log n, because <P, C> >= W0 and
0 <= KL(P | a b^T) <= log n, with the permutation plan attaining log n.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

scipy_optimize = pytest.importorskip("scipy.optimize")

import sinsim_ext
from sinsim_ext.reference import cost_matrix

from helpers import COSTS, points, unit_points


def _assignment_cost(x, y, cost):
    C = cost_matrix(x[None], y[None], cost)[0].numpy()
    rows, cols = scipy_optimize.linear_sum_assignment(C)
    return float(C[rows, cols].mean())


@pytest.mark.parametrize("cost", COSTS)
def test_value_tends_to_optimal_assignment(gen, cost):
    """W0 - slack <= OT_eps <= W0 + eps log n, and the gap shrinks with eps.

    The upper bound holds for any iterate with exact row marginals (weak
    duality: the value is the dual objective there). Small eps converges
    slowly, so the lower bound allows for the measured column-marginal
    violation e: the plan is optimal-ish for marginals (a, c) with
    ||c - b||_1 = e, and value = primal(P) - <c - b, g>, which gives
    value >= W0 - e (max C + max |g|).
    """
    n = 12
    x, y = points(gen, n, 3), points(gen, n, 3)
    C = cost_matrix(x[None], y[None], cost)[0]
    w0 = _assignment_cost(x, y, cost)
    gaps = []
    for eps in (1.0, 0.1, 0.01, 0.001):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # eps = 1e-3 needs eps-scaling to reach 1e-11
            res = sinsim_ext.sinkhorn(x, y, eps=eps, cost=cost, tol=1e-11, max_iter=200000)
            value = float(sinsim_ext.sinkhorn_cost(x, y, eps=eps, cost=cost, tol=1e-11, max_iter=200000))
        P = sinsim_ext.transport_plan(x, y, res.f, res.g, eps=eps, cost=cost)
        col_err = float((P.sum(0) - 1.0 / n).abs().sum())
        slack = col_err * (float(C.max()) + float(res.g.abs().max())) + 1e-12
        assert value <= w0 + eps * math.log(n) + 1e-12, (eps, value, w0)
        assert value >= w0 - slack, (eps, value, w0, slack)
        gaps.append(value - w0)
    assert all(later <= earlier + 1e-6 for earlier, later in zip(gaps, gaps[1:])), gaps
    assert abs(gaps[-1]) < 2e-3 * math.log(n), gaps


def test_plan_approaches_a_permutation(gen):
    n = 8
    x, y = unit_points(gen, n, 4), unit_points(gen, n, 4)
    C = cost_matrix(x[None], y[None], "sqeuclidean")[0].numpy()
    rows, cols = scipy_optimize.linear_sum_assignment(C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sinsim_ext.sinkhorn(x, y, eps=1e-3, tol=1e-10, max_iter=200000)
    P = sinsim_ext.transport_plan(x, y, res.f, res.g, eps=1e-3)
    # each row sends (almost) all its mass 1/n to its assigned column
    assert torch.allclose(P[torch.as_tensor(rows), torch.as_tensor(cols)], torch.full((n,), 1.0 / n, dtype=P.dtype), atol=1e-3)
    assert torch.allclose(P.sum(1), torch.full((n,), 1.0 / n, dtype=P.dtype), atol=1e-12)
