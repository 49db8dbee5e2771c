"""The CUDA back end's newer paths, each selected by SINSIM_CUDA_KERNEL:

* ``backward``: the fused backward (one launch, no (n, m) plan) against the
  verified composed backward and the float64 reference.

Skipped without a GPU. Inputs are fresh per test (seeded from the test id);
the CUDA caching allocator is filled with NaN before each call, so an output
element a kernel forgets to write shows up as NaN.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import sinsim_ext
from sinsim_ext import SinkhornConvergenceWarning, reference

from cuda_helpers import DEV, poison_allocator, unit, views
from helpers import rel_err, simplex

pytestmark = pytest.mark.cuda

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU on this machine", allow_module_level=True)
if "cuda" not in sinsim_ext.backends():
    pytest.skip("sinsim_ext was built without its CUDA kernels", allow_module_level=True)


@pytest.fixture
def select(monkeypatch):
    """select("backward") sets SINSIM_CUDA_KERNEL for this test; select(None) unsets it."""

    def choose(value):
        if value is None:
            monkeypatch.delenv("SINSIM_CUDA_KERNEL", raising=False)
        else:
            monkeypatch.setenv("SINSIM_CUDA_KERNEL", value)

    return choose


def weights_with_a_zero(gen, *shape):
    w = simplex(gen, *shape, device=DEV)
    w[..., shape[-1] // 2] = 0
    return w / w.sum(-1, keepdim=True)


def value_and_grads(x, y, cotangent=None, **kw):
    """Value and its gradients in x and y (cotangent: the incoming gradient of a batched value)."""
    xg, yg = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SinkhornConvergenceWarning)
        value = sinsim_ext.sinkhorn_cost(xg, yg, **kw)
    poison_allocator()
    grads = torch.autograd.grad(value, (xg, yg), grad_outputs=cotangent)
    return (value.detach(), *grads)


# --------------------------------------------------------------------------- fused backward

# (B, n, m, d): odd sizes, n != m, one row block and many, features up to the
# register limit (256 in float32, 128 in float64) and beyond it (the composed
# backward takes over)
BACKWARD_SIZES = [
    (1, 1, 1, 1),
    (1, 1, 33, 3),
    (1, 33, 1, 3),
    (1, 33, 17, 64),
    (3, 45, 70, 37),
    (1, 100, 1000, 16),
    (1, 257, 300, 128),
    (2, 64, 65, 129),
    (1, 40, 50, 300),
]


@pytest.mark.parametrize("B,n,m,d", BACKWARD_SIZES)
@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("debias", [False, True])
def test_fused_backward_matches_the_verified_backward(gen, select, B, n, m, d, cost, debias):
    """Same forward, two backwards: the fused kernel against plan + batched products (float64)."""
    x, y = unit(gen, B, n, d), unit(gen, B, m, d)
    x = x * (1 + torch.rand(B, n, 1, generator=gen, dtype=torch.float64).to(DEV))  # norms differ (cosine)
    a, b = weights_with_a_zero(gen, B, n), weights_with_a_zero(gen, B, m)
    cotangent = torch.rand(B, generator=gen, dtype=torch.float64).to(DEV) + 0.5
    kw = dict(eps=0.2, cost=cost, a=a, b=b, debias=debias, max_iter=30)
    select(None)
    want = value_and_grads(x, y, cotangent, **kw)
    select("backward")
    got = value_and_grads(x, y, cotangent, **kw)
    assert torch.equal(got[0], want[0])
    for g, w in zip(got[1:], want[1:]):
        assert torch.isfinite(g).all()
        assert rel_err(g, w) < 1e-11


@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
@pytest.mark.parametrize("debias", [False, True])
def test_fused_backward_matches_autograd_through_the_reference(gen, select, cost, debias):
    select("backward")
    x, y = unit(gen, 300, 16) * 1.3, unit(gen, 200, 16)
    kw = dict(eps=0.2, cost=cost, debias=debias, tol=1e-13, max_iter=20000)
    got = value_and_grads(x, y, **kw)
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    want = torch.autograd.grad(reference.sinkhorn_cost(xr, yr, **kw), (xr, yr))
    for g, w in zip(got[1:], want):
        assert rel_err(g, w) < 1e-7


@pytest.mark.parametrize("d", [128, 256])
def test_fused_backward_float32_close_to_float64(gen, select, d):
    select("backward")
    x, y = views(gen, 1024, d)
    xr = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(reference.sinkhorn_cost(xr, y, eps=0.05), xr)
    _, got, _ = value_and_grads(x.float(), y.float(), eps=0.05)
    assert got.dtype == torch.float32 and rel_err(got, want) < 1e-4


def test_fused_backward_keeps_no_plan_and_is_deterministic(gen, select):
    select("backward")
    n = 4096
    x, y = views(gen, n, 128, dtype=torch.float32)
    xg = x.clone().requires_grad_()
    value = sinsim_ext.sinkhorn_cost(xg, y, eps=0.05, check_finite=False)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    (first,) = torch.autograd.grad(value, xg, retain_graph=True)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra < n * n * 4 / 8, f"the backward allocated {extra / 2**20:.1f} MB (a plan is 64 MB)"
    for _ in range(2):
        (again,) = torch.autograd.grad(value, xg, retain_graph=True)
        assert torch.equal(first, again)


def test_fused_backward_gradcheck(gen, select):
    select("backward")
    x = unit(gen, 9, 3).requires_grad_()
    y = unit(gen, 6, 3).requires_grad_()
    wa = (torch.rand(9, generator=gen, dtype=torch.float64) + 0.2).to(DEV).requires_grad_()

    def fn(x, y, wa):
        return sinsim_ext.sinkhorn_cost(x, y, eps=0.3, a=wa / wa.sum(), debias=True, tol=1e-13, max_iter=20000)

    assert torch.autograd.gradcheck(fn, (x, y, wa), eps=1e-6, atol=1e-6, rtol=1e-5)
