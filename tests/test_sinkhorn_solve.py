"""solve(), SinkhornOptions and SinkhornResult: the one entry point, the one
options object and the one result, against the functions they stand behind
(sinkhorn_cost, sinkhorn, transport_plan), the reference's twin, and the
options' own checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import sinsim_ext
from sinsim_ext import SinkhornOptions, reference
from sinsim_ext.distributed import ShardedSinkhornLoss
from sinsim_ext.losses import SinkhornLoss

from helpers import COSTS, points, rel_err, simplex

CONVERGED = dict(eps=0.5, tol=1e-12, max_iter=2000)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("batched", [False, True])
def test_solve_gives_what_the_wrappers_give(gen, cost, batched):
    shape = (3,) if batched else ()
    x, y = points(gen, *shape, 7, 3), points(gen, *shape, 6, 3)
    a, b = simplex(gen, *shape, 7), simplex(gen, *shape, 6)
    opts = SinkhornOptions(cost=cost, **CONVERGED)
    res = sinsim_ext.solve(x, y, opts, a=a, b=b)
    value, error = sinsim_ext.sinkhorn_cost(x, y, opts, a=a, b=b, return_error=True)
    pot = sinsim_ext.sinkhorn(x, y, opts, a=a, b=b)
    assert torch.equal(res.value, value) and torch.equal(res.error, error)
    assert torch.equal(res.f, pot.f) and torch.equal(res.g, pot.g) and torch.equal(res.n_iter, pot.n_iter)
    assert res.value.shape == shape and res.f.shape == (*shape, 7) and res.g.shape == (*shape, 6)
    assert torch.equal(res.plan, sinsim_ext.transport_plan(x, y, res.f, res.g, eps=0.5, cost=cost, a=a, b=b))
    torch.testing.assert_close(res.plan.sum(-1), a, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.plan.sum(-2), b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("debias", [False, True])
def test_solve_agrees_with_the_reference(gen, debias):
    x, y = points(gen, 8, 3), points(gen, 5, 3)
    got = sinsim_ext.solve(x, y, debias=debias, **CONVERGED)
    want = reference.solve(x, y, debias=debias, **CONVERGED)
    assert rel_err(got.value, want.value) < 1e-10
    assert rel_err(got.plan, want.plan) < 1e-9
    assert got.error < 1e-12 and want.error < 1e-12


def test_the_value_and_the_potentials_of_a_result_are_differentiable(gen):
    x, y = points(gen, 6, 3).requires_grad_(), points(gen, 5, 3)
    res = sinsim_ext.solve(x, y, **CONVERGED)
    (grad,) = torch.autograd.grad(res.value, x)
    (want,) = torch.autograd.grad(sinsim_ext.sinkhorn_cost(x, y, **CONVERGED), x)
    assert torch.equal(grad, want)
    # the plan's derivative by implicit differentiation against autograd through the reference's iterations
    (got_plan,) = torch.autograd.grad(res.plan[0, 0], x)
    (ref_plan,) = torch.autograd.grad(reference.solve(x, y, **CONVERGED).plan[0, 0], x)
    assert rel_err(got_plan, ref_plan) < 1e-6


def test_a_result_unpacks_as_the_four_fields_of_sinkhorn(gen):
    x, y = points(gen, 6, 3), points(gen, 5, 3)
    res = sinsim_ext.sinkhorn(x, y, **CONVERGED)
    f, g, n_iter, error = res
    assert len(res) == 4 and res[0] is f
    assert torch.equal(f, res.f) and torch.equal(g, res.g) and n_iter == res.n_iter and error == res.error
    torch.testing.assert_close(res.value, (f.mean() + g.mean()).to(res.value.dtype), rtol=1e-12, atol=0)


def test_options_are_validated_once_when_made_and_are_immutable():
    with pytest.raises(ValueError, match="eps must be > 0"):
        SinkhornOptions(eps=-1.0)
    with pytest.raises(ValueError, match="cost must be one of"):
        SinkhornOptions(cost="l1")
    with pytest.raises(ValueError, match="cost_mode must be one of"):
        SinkhornOptions(cost_mode="lazy")
    with pytest.raises(ValueError, match="scaling must be None"):
        SinkhornOptions().replace(scaling=1.5)
    opts = SinkhornOptions(eps=torch.tensor(0.25), max_iter=10)
    assert opts.eps == 0.25 and isinstance(opts.eps, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.eps = 0.1
    assert opts.replace(tol=1e-3).differing(opts) == {"tol": 1e-3}


def test_fields_by_name_replace_those_of_the_options(gen):
    x, y = points(gen, 6, 3), points(gen, 5, 3)
    opts = SinkhornOptions(eps=2.0, max_iter=50)
    by_options = sinsim_ext.sinkhorn_cost(x, y, opts, eps=0.5)
    assert torch.equal(by_options, sinsim_ext.sinkhorn_cost(x, y, eps=0.5, max_iter=50))
    with pytest.raises(TypeError, match="solve\\(\\) got an unexpected keyword argument 'epsilon'"):
        sinsim_ext.solve(x, y, epsilon=0.5)
    with pytest.raises(TypeError, match="options must be a sinsim_ext.SinkhornOptions"):
        sinsim_ext.solve(x, y, 0.5)


def test_sinkhorn_refuses_debias_and_the_reference_refuses_a_cost_mode(gen):
    x, y = points(gen, 6, 3), points(gen, 5, 3)
    for fn in (sinsim_ext.sinkhorn, reference.sinkhorn):
        with pytest.raises(TypeError, match="takes no debias"):
            fn(x, y, debias=True)
    with pytest.raises(ValueError, match="the reference keeps the \\(n, m\\) cost matrix"):
        reference.solve(x, y, cost_mode="online")


def test_a_loss_takes_options_and_its_attributes_write_through(gen):
    z1, z2 = points(gen, 16, 4, dtype=torch.float32), points(gen, 16, 4, dtype=torch.float32)
    by_name = SinkhornLoss(eps=0.2, debias=True, max_iter=30)
    by_options = SinkhornLoss(SinkhornOptions(eps=0.2, debias=True, max_iter=30, check_finite=False))
    assert by_name.options == by_options.options and torch.equal(by_name(z1, z2), by_options(z1, z2))
    assert SinkhornLoss().check_finite is False  # a loss's default: no device synchronisation per step
    by_name.eps = 0.4
    assert by_name.options.eps == 0.4 and "eps" not in vars(by_name)
    assert torch.equal(by_name(z1, z2), SinkhornLoss(eps=0.4, debias=True, max_iter=30)(z1, z2))
    with pytest.raises(ValueError, match="eps must be > 0"):
        by_name.eps = 0.0
    with pytest.raises(TypeError, match="options must be a sinsim_ext.SinkhornOptions"):
        by_name.options = {"eps": 0.1}


@pytest.mark.parametrize("option", [dict(tol=1e-3), dict(scaling=0.9), dict(cost_mode="online")])
def test_the_sharded_loss_refuses_the_options_it_does_not_implement(option):
    name = next(iter(option))
    with pytest.raises(NotImplementedError, match=name):
        ShardedSinkhornLoss.like(SinkhornLoss(**option))
    sharded = ShardedSinkhornLoss.like(SinkhornLoss(eps=0.3, cost="cosine", debias=True, normalize=False))
    assert sharded.options == SinkhornLoss(eps=0.3, cost="cosine", debias=True).options and not sharded.normalize
