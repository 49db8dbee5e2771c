"""The CUDA kernels: agreement with the float64 reference and the CPU kernel,
gradients, early stopping on the device, determinism, every launch layout.

Skipped without a GPU. Inputs are fresh per test (seeded from the test id);
before each call the CUDA caching allocator is filled with NaN-poisoned free
blocks, so an output element the kernel forgets to write shows up as NaN.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import sinsim_ext
from sinsim_ext import CONVERGENCE_TOL, SinkhornConvergenceWarning, reference

from cuda_helpers import DEV, poison_allocator, solve, unit, views
from helpers import COSTS, rel_err, simplex

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU on this machine", allow_module_level=True)
if "cuda" not in sinsim_ext.backends():
    pytest.skip("sinsim_ext was built without its CUDA kernels", allow_module_level=True)

# (n, m, d): odd sizes, n != m, and the benchmark sizes (every launch layout:
# one block, one cluster, several clusters with the global barrier, rows
# streamed from L2 when they do not fit in shared memory)
SIZES = [
    (1, 1, 1),
    (1, 33, 3),
    (33, 1, 3),
    (33, 33, 5),
    (33, 17, 64),
    (100, 1000, 16),
    (1000, 1000, 32),
    (256, 256, 128),
    (1024, 1024, 128),
    (4096, 4096, 128),
    (4096, 3, 8),
]


@pytest.mark.parametrize("n,m,d", SIZES)
@pytest.mark.parametrize("cost", COSTS)
def test_fixed_iterations_match_float64_reference(gen, n, m, d, cost):
    x, y = unit(gen, n, d), unit(gen, m, d)
    kw = dict(eps=0.05, cost=cost, max_iter=30)
    got = solve(sinsim_ext.sinkhorn, x, y, **kw)
    want = reference.sinkhorn(x, y, **kw)
    for a, b in ((got.f, want.f), (got.g, want.g)):
        assert torch.isfinite(a).all()
        assert float((a - b).abs().max()) <= 1e-9 * (1 + float(b.abs().max()))
    assert int(got.n_iter) == 30
    assert abs(float(got.error - want.error)) <= 1e-9 * (1 + float(want.error))


@pytest.mark.parametrize("n,m,d", [(256, 256, 128), (1024, 1024, 128), (4096, 4096, 128), (333, 1000, 2048)])
def test_float32_close_to_float64(gen, n, m, d):
    x, y = views(gen, n, d) if n == m else (unit(gen, n, d), unit(gen, m, d))
    want = reference.sinkhorn_cost(x, y, eps=0.05)
    got = solve(sinsim_ext.sinkhorn_cost, x.float(), y.float(), eps=0.05)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert rel_err(got, want) < 1e-5


@pytest.mark.parametrize("n,m", [(7, 5), (64, 48), (300, 200)])
@pytest.mark.parametrize("cost", COSTS)
def test_converged_matches_cpu_kernel_and_reference(gen, n, m, cost):
    x, y = unit(gen, n, 6), unit(gen, m, 6)
    a, b = simplex(gen, n, device=DEV), simplex(gen, m, device=DEV)
    for debias in (False, True):
        kw = dict(eps=0.1, cost=cost, a=a, b=b, tol=1e-12, max_iter=50000, debias=debias)
        got = solve(sinsim_ext.sinkhorn_cost, x, y, **kw)
        cpu = sinsim_ext.sinkhorn_cost(x.cpu(), y.cpu(), **{**kw, "a": a.cpu(), "b": b.cpu()})
        assert rel_err(got, cpu) < 1e-9
        assert rel_err(got, reference.sinkhorn_cost(x, y, **kw)) < 1e-8


def test_batched_problems_in_one_launch(gen):
    x, y = views(gen, 64, 256, 128)
    kw = dict(eps=0.05, max_iter=40)
    got = solve(sinsim_ext.sinkhorn, x, y, **kw)
    want = reference.sinkhorn(x, y, **kw)
    assert got.f.shape == (64, 256)
    assert float((got.f - want.f).abs().max()) < 1e-9 and float((got.g - want.g).abs().max()) < 1e-9
    value = solve(sinsim_ext.sinkhorn_cost, x.float(), y.float(), eps=0.05, debias=True)
    assert rel_err(value, reference.sinkhorn_cost(x, y, eps=0.05, debias=True)) < 1e-5


@pytest.mark.parametrize("n", [33, 1024])
def test_debias_runs_its_three_problems_together(gen, n):
    x, y = views(gen, n, 64)
    kw = dict(eps=0.05, max_iter=60, debias=True)
    got = solve(sinsim_ext.sinkhorn_cost, x, y, **kw)
    assert rel_err(got, reference.sinkhorn_cost(x, y, **kw)) < 1e-9


def test_early_stopping_is_decided_per_problem_on_the_device(gen):
    # problems of different difficulty stop at different iterations
    x = torch.stack([unit(gen, 200, 8) * s for s in (0.2, 1.0, 2.0)])
    y = torch.stack([unit(gen, 150, 8) * s for s in (0.2, 1.0, 2.0)])
    kw = dict(eps=0.1, tol=1e-9, max_iter=5000)
    got = solve(sinsim_ext.sinkhorn, x, y, **kw)
    want = reference.sinkhorn(x, y, **kw)
    assert torch.equal(got.n_iter.cpu(), want.n_iter.cpu())
    assert len(set(got.n_iter.tolist())) > 1 and int(got.n_iter.max()) < 5000
    assert (got.error < 1e-9).all()
    assert float((got.f - want.f).abs().max()) < 1e-9


def test_results_are_deterministic(gen):
    x, y = views(gen, 1024, 128, dtype=torch.float32)
    first = solve(sinsim_ext.sinkhorn, x, y, eps=0.05)
    for _ in range(3):
        again = solve(sinsim_ext.sinkhorn, x, y, eps=0.05)
        assert torch.equal(first.f, again.f) and torch.equal(first.g, again.g)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("debias", [False, True])
def test_gradients_match_autograd_through_the_reference(gen, cost, debias):
    x, y = unit(gen, 300, 16), unit(gen, 200, 16)
    x = (x * 1.3).requires_grad_()
    y = y.requires_grad_()
    kw = dict(eps=0.2, cost=cost, debias=debias, tol=1e-13, max_iter=20000)
    poison_allocator()
    got = torch.autograd.grad(sinsim_ext.sinkhorn_cost(x, y, **kw), (x, y))
    want = torch.autograd.grad(reference.sinkhorn_cost(x, y, **kw), (x, y))
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        assert rel_err(g, w) < 1e-7


def test_gradcheck_on_cuda(gen):
    x = unit(gen, 9, 3).requires_grad_()
    y = unit(gen, 6, 3).requires_grad_()
    wa = (torch.rand(9, generator=gen, dtype=torch.float64) + 0.2).to(DEV).requires_grad_()

    def fn(x, y, wa):
        return sinsim_ext.sinkhorn_cost(x, y, eps=0.3, a=wa / wa.sum(), debias=True, tol=1e-13, max_iter=20000)

    assert torch.autograd.gradcheck(fn, (x, y, wa), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradgradcheck_and_plan_on_cuda(gen):
    """Implicit differentiation (double backward, differentiable plan) on the device."""
    x = unit(gen, 6, 3).requires_grad_()
    y = unit(gen, 5, 3).requires_grad_()
    kw = dict(eps=0.3, tol=1e-13, max_iter=20000)
    cost = lambda x, y: sinsim_ext.sinkhorn_cost(x, y, debias=True, **kw)
    assert torch.autograd.gradgradcheck(cost, (x, y), eps=1e-6, atol=1e-5, rtol=1e-4)

    def plan(x, y):
        res = sinsim_ext.sinkhorn(x, y, **kw)
        return sinsim_ext.transport_plan(x, y, res.f, res.g, eps=kw["eps"])

    assert torch.autograd.gradgradcheck(plan, (x, y), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cost", COSTS)
def test_hvp_jvp_and_vmap_match_cpu(gen, cost):
    x, y = unit(gen, 200, 16), unit(gen, 150, 16)
    v = unit(gen, 200, 16)
    kw = dict(eps=0.2, cost=cost, tol=1e-13, max_iter=20000)

    def derivatives(x, y, v):
        xg = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(sinsim_ext.sinkhorn_cost(xg, y, debias=True, **kw), xg, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), xg)
        _, jv = torch.func.jvp(lambda x: sinsim_ext.sinkhorn_cost(x, y, **kw), (x,), (v,))
        batched = torch.func.vmap(lambda x: sinsim_ext.sinkhorn_cost(x, y, **kw))(torch.stack([x, v]))
        return hv, jv, batched

    poison_allocator()
    got = derivatives(x, y, v)
    want = derivatives(x.cpu(), y.cpu(), v.cpu())
    for g, w in zip(got, want):
        assert g.is_cuda and torch.isfinite(g).all()
        assert rel_err(g, w) < 1e-9


def test_float32_gradients_close_to_float64(gen):
    x, y = views(gen, 1024, 128)
    x = x.requires_grad_()
    (want,) = torch.autograd.grad(reference.sinkhorn_cost(x, y, eps=0.05), x)
    x32 = x.detach().float().requires_grad_()
    (got,) = torch.autograd.grad(solve(sinsim_ext.sinkhorn_cost, x32, y.float(), eps=0.05), x32)
    assert rel_err(got, want) < 1e-4


def test_half_precision_inputs(gen):
    x, y = views(gen, 256, 64, dtype=torch.bfloat16)
    x.requires_grad_()
    value = solve(sinsim_ext.sinkhorn_cost, x, y, eps=0.05)
    value.backward()
    assert value.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


def test_cuda_and_cpu_inputs_mixed_are_rejected(gen):
    x, y = unit(gen, 5, 3), unit(gen, 4, 3)
    with pytest.raises(ValueError, match="same device"):
        sinsim_ext.sinkhorn_cost(x, y.cpu())
    with pytest.raises(ValueError, match="a is on cpu but x is on cuda"):
        sinsim_ext.sinkhorn_cost(x, y, a=torch.full((5,), 0.2, dtype=torch.float64))


# --- eps-scaling, convergence reports and the cost modes on the GPU ---


@pytest.mark.parametrize("eps", [1e-2, 1e-3])
@pytest.mark.parametrize("debias", [False, True])
def test_scaled_solve_matches_the_float64_cpu_reference(gen, eps, debias):
    """scaling= on CUDA (the device-generic solver) against the converged float64 reference on the CPU.

    Two noisy views of spread points (max C / eps up to 1e5): both solves reach
    tol (an unconverged one raises here: a comparison of two unconverged
    iterates would test nothing), unlike independent clouds, whose near-ties
    can stall at 1e-6 for thousands of iterations."""
    x = 3.0 * torch.randn(24, 6, generator=gen, dtype=torch.float64)
    y = x + 0.5 * torch.randn(24, 6, generator=gen, dtype=torch.float64)
    kw = dict(eps=eps, scaling=0.95, max_iter=800, tol=1e-11, debias=debias)
    xr = x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        want = reference.sinkhorn_cost(xr, y, **kw)
        xg = x.to(DEV).requires_grad_()
        got = solve(sinsim_ext.sinkhorn_cost, xg, y.to(DEV), **kw)
    (want_grad,) = torch.autograd.grad(want, xr)
    (got_grad,) = torch.autograd.grad(got, xg)
    assert got.device.type == "cuda" and torch.isfinite(got_grad).all()
    assert rel_err(got.cpu(), want) < 1e-9
    assert rel_err(got_grad.cpu(), want_grad) < 1e-7


def test_scaled_solve_follows_the_cpu_kernels_schedule(gen):
    """Same stages and iterations as the CPU kernel, converged or not."""
    x = torch.stack([3.0 * torch.randn(9, 3, generator=gen, dtype=torch.float64),
                     0.5 * torch.randn(9, 3, generator=gen, dtype=torch.float64)])
    y = torch.stack([3.0 * torch.randn(7, 3, generator=gen, dtype=torch.float64),
                     0.5 * torch.randn(7, 3, generator=gen, dtype=torch.float64)])
    for max_iter in (1, 4, 40):
        kw = dict(eps=1e-3, scaling=0.7, max_iter=max_iter, return_error=True)
        want, want_err = sinsim_ext.sinkhorn_cost(x, y, **kw)
        got, got_err = solve(sinsim_ext.sinkhorn_cost, x.to(DEV), y.to(DEV), **kw)
        assert rel_err(got.cpu(), want) < 1e-10 and rel_err(got_err.cpu(), want_err) < 1e-6


def test_convergence_is_reported_on_the_gpu(gen):
    """An unconverged GPU solve: the error comes back as a device tensor with no
    warning (the training path), and warns when the caller asked for the checks."""
    x = torch.randn(256, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(256, 2, generator=gen, dtype=torch.float64)
    cpu_value, cpu_error = sinsim_ext.sinkhorn_cost(x, y, eps=0.01, return_error=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        value, error = solve(sinsim_ext.sinkhorn_cost, x.to(DEV), y.to(DEV), eps=0.01, return_error=True,
                             check_finite=False)
    assert error.device.type == "cuda" and float(error) > CONVERGENCE_TOL
    assert float(error) == pytest.approx(float(cpu_error), rel=1e-6)
    assert float(value) == pytest.approx(float(cpu_value), rel=1e-9)
    with pytest.warns(SinkhornConvergenceWarning, match="marginal error"):
        sinsim_ext.sinkhorn_cost(x.to(DEV), y.to(DEV), eps=0.01, check_finite=True)
    loss = sinsim_ext.SinkhornLoss(eps=0.05)
    _, ok = loss.value_and_error(unit(gen, 128, 64, dtype=torch.float32), unit(gen, 128, 64, dtype=torch.float32))
    assert ok.device.type == "cuda" and float(ok) < loss.tolerance


def test_online_cost_mode_is_refused_on_the_gpu_and_auto_keeps_the_stored_cost(gen, monkeypatch):
    """Without SINSIM_CUDA_KERNEL selecting it (tests/test_sinkhorn_cuda_v2.py has the selected mode)."""
    monkeypatch.delenv("SINSIM_CUDA_KERNEL", raising=False)
    x, y = unit(gen, 64, 8), unit(gen, 64, 8)
    with pytest.raises((ValueError, RuntimeError, NotImplementedError), match="online"):
        sinsim_ext.sinkhorn_cost(x, y, eps=0.05, cost_mode="online")
    auto = solve(sinsim_ext.sinkhorn_cost, x, y, eps=0.05, cost_mode="auto")
    want = sinsim_ext.sinkhorn_cost(x.cpu(), y.cpu(), eps=0.05)
    assert rel_err(auto.cpu(), want) < 1e-12
