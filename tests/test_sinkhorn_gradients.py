"""The hand-derived implicit backward: gradcheck at convergence, agreement with
autograd through the reference's iterations, and memory that does not grow
with the number of iterations."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.gradcheck import gradcheck

import sinsim_ext
from sinsim_ext import reference

from helpers import COSTS, points, rel_err
from sinsim_ext.testing import saved_tensor_bytes

CONVERGED = dict(tol=1e-13, max_iter=20000)


def _normalised(w):
    """Weights on the simplex as a smooth function of free parameters, so that
    finite differences never leave the simplex."""
    return w / w.sum(-1, keepdim=True)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("debias", [False, True])
def test_gradcheck_points(gen, cost, debias):
    x = points(gen, 7, 3).requires_grad_()
    y = points(gen, 5, 3).requires_grad_()
    fn = lambda x, y: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, cost=cost, debias=debias, **CONVERGED)
    assert gradcheck(fn, (x, y), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("debias", [False, True])
def test_gradcheck_weights_and_points(gen, debias):
    x = points(gen, 6, 2).requires_grad_()
    y = points(gen, 4, 2).requires_grad_()
    wa = (torch.rand(6, generator=gen, dtype=torch.float64) + 0.2).requires_grad_()
    wb = (torch.rand(4, generator=gen, dtype=torch.float64) + 0.2).requires_grad_()

    def fn(x, y, wa, wb):
        return sinsim_ext.sinkhorn_cost(
            x, y, eps=0.4, a=_normalised(wa), b=_normalised(wb), debias=debias, **CONVERGED
        )

    assert gradcheck(fn, (x, y, wa, wb), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_batched(gen):
    x = points(gen, 3, 5, 2).requires_grad_()
    y = points(gen, 3, 4, 2).requires_grad_()
    fn = lambda x, y: sinsim_ext.sinkhorn_cost(x, y, eps=0.5, **CONVERGED)
    assert gradcheck(fn, (x, y), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cost", COSTS)
def test_gradient_matches_autograd_through_reference(gen, cost):
    x = points(gen, 20, 6).requires_grad_()
    y = points(gen, 30, 6).requires_grad_()
    kw = dict(eps=0.2, cost=cost, debias=True, **CONVERGED)
    got = torch.autograd.grad(sinsim_ext.sinkhorn_cost(x, y, **kw), (x, y))
    want = torch.autograd.grad(reference.sinkhorn_cost(x, y, **kw), (x, y))
    for g, w in zip(got, want):
        assert rel_err(g, w) < 1e-7


def test_half_precision_inputs_get_gradients_in_their_dtype(gen):
    x = points(gen, 16, 8, dtype=torch.float32).to(torch.bfloat16).requires_grad_()
    y = points(gen, 16, 8, dtype=torch.float32).to(torch.bfloat16)
    value = sinsim_ext.sinkhorn_cost(x, y, eps=0.1)
    assert value.dtype == torch.bfloat16
    value.backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def test_backward_memory_does_not_grow_with_iterations(gen):
    x = points(gen, 64, 16, dtype=torch.float32).requires_grad_()
    y = points(gen, 64, 16, dtype=torch.float32)
    kernel = [saved_tensor_bytes(lambda: sinsim_ext.sinkhorn_cost(x, y, max_iter=k)) for k in (5, 500)]
    assert kernel[0] == kernel[1]
    # and it is O(n d), far below one n x m matrix per iteration
    assert kernel[1] < 64 * 64 * 4
    # the reference, differentiated through its loop, keeps memory per iteration
    ref = [saved_tensor_bytes(lambda: reference.sinkhorn_cost(x, y, max_iter=k)) for k in (5, 50)]
    assert ref[1] > 5 * ref[0]
