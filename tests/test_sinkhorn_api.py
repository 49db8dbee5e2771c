"""The public API: shapes, dtypes, backends, the plan, torch.compile."""

from __future__ import annotations

import torch

import sinsim_ext
from sinsim_ext import reference

from helpers import points, rel_err, simplex


def test_backends_lists_cpu():
    assert "cpu" in sinsim_ext.backends()
    assert set(sinsim_ext.backends()) <= {"cpu", "cuda"}


def test_result_shapes_unbatched_and_batched(gen):
    x, y = points(gen, 7, 3), points(gen, 5, 3)
    res = sinsim_ext.sinkhorn(x, y)
    assert res.f.shape == (7,) and res.g.shape == (5,)
    assert res.n_iter.shape == () and res.error.shape == ()
    assert sinsim_ext.sinkhorn_cost(x, y).shape == ()
    xb, yb = points(gen, 4, 7, 3), points(gen, 4, 5, 3)
    res = sinsim_ext.sinkhorn(xb, yb)
    assert res.f.shape == (4, 7) and res.g.shape == (4, 5) and res.n_iter.shape == (4,)
    assert sinsim_ext.sinkhorn_cost(xb, yb, debias=True).shape == (4,)


def test_dtype_follows_inputs(gen):
    x, y = points(gen, 7, 3), points(gen, 5, 3)
    assert sinsim_ext.sinkhorn_cost(x.float(), y.float()).dtype == torch.float32
    assert sinsim_ext.sinkhorn_cost(x.float(), y).dtype == torch.float64
    assert sinsim_ext.sinkhorn_cost(x.half(), y.half()).dtype == torch.float16


def test_plan_has_the_prescribed_marginals(gen):
    x, y = points(gen, 9, 4), points(gen, 6, 4)
    a, b = simplex(gen, 9), simplex(gen, 6)
    res = sinsim_ext.sinkhorn(x, y, a=a, b=b, eps=0.1, tol=1e-12, max_iter=10000)
    P = sinsim_ext.transport_plan(x, y, res.f, res.g, eps=0.1, a=a, b=b)
    assert torch.allclose(P.sum(1), a, atol=1e-12)
    assert float((P.sum(0) - b).abs().sum()) < 1e-11
    # the value is the primal objective <P, C> + eps KL(P | a b^T) at the optimum
    C = reference.cost_matrix(x[None], y[None])[0]
    kl = (P * (P / (a[:, None] * b[None, :])).log()).sum()
    primal = (P * C).sum() + 0.1 * kl
    assert rel_err(sinsim_ext.sinkhorn_cost(x, y, a=a, b=b, eps=0.1, tol=1e-12, max_iter=10000), primal) < 1e-9


def test_error_measures_the_row_marginal_before_the_last_row_update(gen):
    x, y = points(gen, 12, 3), points(gen, 10, 3)
    res = sinsim_ext.sinkhorn(x, y, eps=0.05, max_iter=4)
    before = reference.sinkhorn(x, y, eps=0.05, max_iter=3)  # same first three iterations
    # iteration 4 starts with the column update of iteration 3's f
    g4 = res.g
    P = sinsim_ext.transport_plan(x, y, before.f, g4, eps=0.05)
    assert abs(float((P.sum(1) - 1 / 12).abs().sum() - res.error)) < 1e-12


def test_torch_compile_runs_and_matches(gen):
    x = points(gen, 32, 8, dtype=torch.float32).requires_grad_()
    y = points(gen, 24, 8, dtype=torch.float32)

    def loss(x, y):
        return sinsim_ext.sinkhorn_cost(x * 2.0, y, eps=0.1, check_finite=False) + x.square().mean()

    compiled = torch.compile(loss, fullgraph=True)
    eager_value = loss(x, y)
    (eager_grad,) = torch.autograd.grad(eager_value, x)
    value = compiled(x, y)
    (grad,) = torch.autograd.grad(value, x)
    assert rel_err(value, eager_value) < 1e-6
    assert rel_err(grad, eager_grad) < 1e-5
