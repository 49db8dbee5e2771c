"""The CUDA back end's newer paths, each selected by SINSIM_CUDA_KERNEL:

* ``backward``: the fused backward (one launch, no (n, m) plan) against the
  verified composed backward and the float64 reference;
* ``online``: cost_mode="online" on CUDA (the pass solver recomputing the cost)
  against the stored mode, the CPU kernel and the float64 reference, its
  memory, and cost_mode="auto" choosing it;
* ``scaling``: eps-scaling run on the device (the pass solver, stored cost)
  against the CPU kernel's schedule and the float64 reference;
* ``graph``: the verified fused forward with its descriptors uploaded by
  kernel launches; a training call (value + gradient) captured in a CUDA
  graph and replayed, on each path.

Skipped without a GPU. Inputs are fresh per test (seeded from the test id);
the CUDA caching allocator is filled with NaN before each call, so an output
element a kernel forgets to write shows up as NaN.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import sinsim_ext
from sinsim_ext import SinkhornConvergenceWarning, ops, reference

from cuda_helpers import DEV, poison_allocator, solve, unit, views
from helpers import COSTS, rel_err, simplex

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
    """Random weights on the simplex, one of them zero when there are three or more."""
    w = simplex(gen, *shape, device=DEV)
    if shape[-1] >= 3:
        w[..., shape[-1] // 2] = 0
    return w / w.sum(-1, keepdim=True)


def close(got, want, tol):
    """max |got - want| <= tol (1 + max |want|): relative for large values, absolute
    near zero (single points can give a zero value or gradient)."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    return float((got - want).abs().max()) <= tol * (1 + float(want.abs().max()))


def value_and_grads(x, y, cotangent=None, poison=True, **kw):
    """Value and its gradients in x and y (cotangent: the incoming gradient of a
    batched value); the allocator is poisoned before the backward unless a
    test measures peak memory (the poison blocks would count)."""
    xg, yg = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SinkhornConvergenceWarning)
        value = sinsim_ext.sinkhorn_cost(xg, yg, **kw)
    if poison:
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
@pytest.mark.parametrize("cost", COSTS)
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
        assert close(g, w, 1e-11)


@pytest.mark.parametrize("cost", COSTS)
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


# --------------------------------------------------------------------------- online mode

ONLINE_SIZES = [(1, 1, 1, 1), (1, 33, 17, 5), (3, 45, 70, 37), (1, 100, 1000, 16), (1, 257, 300, 130), (2, 64, 64, 2048)]


@pytest.mark.parametrize("B,n,m,d", ONLINE_SIZES)
@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("debias", [False, True])
@pytest.mark.parametrize("part,mode", [("online", "online"), ("v2", "online"), ("passes", "stored")])
def test_pass_solver_matches_the_fused_kernel(gen, select, B, n, m, d, cost, debias, part, mode):
    """Fixed iterations, float64: the pass solver (online, or on the stored
    cost with `passes`) gives the iterates of the verified fused kernel."""
    x, y = unit(gen, B, n, d), unit(gen, B, m, d)
    a, b = weights_with_a_zero(gen, B, n), weights_with_a_zero(gen, B, m)
    kw = dict(eps=0.1, cost=cost, a=a, b=b, debias=debias, max_iter=25)
    select(None)
    want = value_and_grads(x, y, **kw, cost_mode="stored")
    res_want = sinsim_ext.sinkhorn(x, y, eps=0.1, cost=cost, a=a, b=b, max_iter=25)
    select(part)
    got = value_and_grads(x, y, **kw, cost_mode=mode)
    res_got = solve(sinsim_ext.sinkhorn, x, y, eps=0.1, cost=cost, a=a, b=b, max_iter=25, cost_mode=mode)
    for g, w in zip(got, want):
        assert torch.isfinite(g).all() and close(g, w, 1e-11)
    for g, w in ((res_got.f, res_want.f), (res_got.g, res_want.g)):
        assert torch.isfinite(g).all() and close(g, w, 1e-11)
    assert float((res_got.error - res_want.error).abs().max()) <= 1e-12 + 1e-9 * float(res_want.error.max())
    assert torch.equal(res_got.n_iter, res_want.n_iter)


def test_online_float32_close_to_float64(gen, select):
    select("online,backward")
    x, y = views(gen, 1024, 128)
    xr = x.clone().requires_grad_()
    want = reference.sinkhorn_cost(xr, y, eps=0.05)
    (want_grad,) = torch.autograd.grad(want, xr)
    value, grad, _ = value_and_grads(x.float(), y.float(), eps=0.05, cost_mode="online")
    assert rel_err(value, want) < 1e-5 and rel_err(grad, want_grad) < 1e-4


@pytest.mark.parametrize("n,m", [(7, 5), (64, 48), (300, 200)])
@pytest.mark.parametrize("debias", [False, True])
def test_online_converged_matches_cpu_kernel_and_reference(gen, select, n, m, debias):
    select("online")
    x, y = unit(gen, n, 6), unit(gen, m, 6)
    a, b = simplex(gen, n, device=DEV), simplex(gen, m, device=DEV)
    kw = dict(eps=0.1, a=a, b=b, tol=1e-12, max_iter=50000, debias=debias)
    got = solve(sinsim_ext.sinkhorn_cost, x, y, cost_mode="online", **kw)
    cpu = sinsim_ext.sinkhorn_cost(x.cpu(), y.cpu(), **{**kw, "a": a.cpu(), "b": b.cpu()})
    assert rel_err(got, cpu) < 1e-9
    assert rel_err(got, reference.sinkhorn_cost(x, y, **kw)) < 1e-8


@pytest.mark.parametrize("part,mode", [("online", "online"), ("scaling", "stored"), ("passes", "stored")])
def test_early_stopping_is_decided_per_problem_on_the_device(gen, select, part, mode):
    select(part)
    x = torch.stack([unit(gen, 200, 8) * s for s in (0.2, 1.0, 2.0)])
    y = torch.stack([unit(gen, 150, 8) * s for s in (0.2, 1.0, 2.0)])
    kw = dict(eps=0.1, tol=1e-9, max_iter=5000)
    scaling = dict(scaling=0.9) if part == "scaling" else {}
    got = solve(sinsim_ext.sinkhorn, x, y, cost_mode=mode, **kw, **scaling)
    want = sinsim_ext.sinkhorn(x.cpu(), y.cpu(), **kw, **scaling)
    assert torch.equal(got.n_iter.cpu(), want.n_iter)
    assert len(set(got.n_iter.tolist())) > 1 and int(got.n_iter.max()) < 5000
    assert (got.error < 1e-9).all()
    assert float((got.f.cpu() - want.f).abs().max()) < 1e-9


def test_online_memory_does_not_grow_with_n_squared(gen, select):
    select("online,backward")
    n = 16384
    x, y = views(gen, n, 128, dtype=torch.float32)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    value, grad, _ = value_and_grads(x, y, eps=0.05, max_iter=5, cost_mode="online", check_finite=False, poison=False)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert extra < 64 << 20, f"{extra / 2**20:.0f} MB at n = {n} (the stored cost alone is 1 GiB)"
    select(None)
    want = value_and_grads(x, y, eps=0.05, max_iter=5, cost_mode="stored", check_finite=False)
    assert rel_err(value, want[0]) < 1e-5 and rel_err(grad, want[1]) < 1e-4


def test_auto_chooses_online_by_memory_only_when_selected(gen, select, monkeypatch):
    x, y = views(gen, 4096, 64, dtype=torch.float32)
    monkeypatch.setattr(ops, "CUDA_ONLINE_MEMORY_FRACTION", 0.0)  # every problem "too large"

    def peak(**kw):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        value = sinsim_ext.sinkhorn_cost(x, y, eps=0.05, max_iter=3, check_finite=False, **kw)
        torch.cuda.synchronize()
        return value, torch.cuda.max_memory_allocated() - base

    select(None)
    stored, stored_peak = peak(cost_mode="auto")
    select("online")
    online, online_peak = peak(cost_mode="auto")
    assert stored_peak >= 4096 * 4096 * 4 and online_peak < 4 << 20
    assert rel_err(online, stored) < 1e-5
    monkeypatch.setattr(ops, "CUDA_ONLINE_MEMORY_FRACTION", 1.0)
    _, kept_peak = peak(cost_mode="auto")
    assert kept_peak >= 4096 * 4096 * 4


# --------------------------------------------------------------------------- eps-scaling on the device


@pytest.mark.parametrize("eps", [1e-2, 1e-3])
@pytest.mark.parametrize("debias", [False, True])
@pytest.mark.parametrize("part,mode", [("scaling", "stored"), ("online", "online"), ("v2", "auto")])
def test_scaled_solve_matches_the_float64_cpu_reference(gen, select, eps, debias, part, mode):
    """Two noisy views of spread points (max C / eps up to 1e5): both solves reach tol."""
    select(part)
    x = 3.0 * torch.randn(24, 6, generator=gen, dtype=torch.float64)
    y = x + 0.5 * torch.randn(24, 6, generator=gen, dtype=torch.float64)
    kw = dict(eps=eps, scaling=0.95, max_iter=800, tol=1e-11, debias=debias)
    xr = x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SinkhornConvergenceWarning)
        want = reference.sinkhorn_cost(xr, y, **kw)
        xg = x.to(DEV).requires_grad_()
        got = solve(sinsim_ext.sinkhorn_cost, xg, y.to(DEV), cost_mode=mode, **kw)
    (want_grad,) = torch.autograd.grad(want, xr)
    (got_grad,) = torch.autograd.grad(got, xg)
    assert got.device.type == "cuda" and torch.isfinite(got_grad).all()
    assert rel_err(got.cpu(), want) < 1e-9
    assert rel_err(got_grad.cpu(), want_grad) < 1e-7


@pytest.mark.parametrize("part,mode", [("scaling", "stored"), ("online", "online")])
def test_scaled_solve_follows_the_cpu_kernels_schedule(gen, select, part, mode):
    """Same stages (per problem: the two costs differ in scale) and iterations as the CPU kernel."""
    select(part)
    x = torch.stack([3.0 * torch.randn(9, 3, generator=gen, dtype=torch.float64),
                     0.5 * torch.randn(9, 3, generator=gen, dtype=torch.float64)])
    y = torch.stack([3.0 * torch.randn(7, 3, generator=gen, dtype=torch.float64),
                     0.5 * torch.randn(7, 3, generator=gen, dtype=torch.float64)])
    for max_iter in (1, 4, 40):
        for debias in (False, True):
            kw = dict(eps=1e-3, scaling=0.7, max_iter=max_iter, return_error=True, debias=debias)
            want, want_err = sinsim_ext.sinkhorn_cost(x, y, **kw)
            got, got_err = solve(sinsim_ext.sinkhorn_cost, x.to(DEV), y.to(DEV), cost_mode=mode, **kw)
            assert rel_err(got.cpu(), want) < 1e-10 and rel_err(got_err.cpu(), want_err) < 1e-6


def test_scaled_float32_training_workload(gen, select):
    """The SinSim workload with scaling on the device: float32 against the float64 reference."""
    select("scaling")
    x, y = views(gen, 1024, 128)
    kw = dict(eps=0.01, scaling=0.9, max_iter=300)
    want = reference.sinkhorn_cost(x, y, **kw)
    got = solve(sinsim_ext.sinkhorn_cost, x.float(), y.float(), **kw)
    assert got.dtype == torch.float32 and rel_err(got, want) < 1e-5


# --------------------------------------------------------------------------- capture


CAPTURED = {  # name: (parts, shape (B, n, d), kwargs)
    "online": ("online,backward", (None, 512, 128), {"cost_mode": "online"}),
    "fused-forward": ("graph,backward", (None, 512, 128), {}),
    "fused-forward-debias-batched": ("graph,backward", (64, 256, 64), {"debias": True}),
    "scaling": ("scaling,backward", (None, 300, 32), {"scaling": 0.9, "eps": 0.01}),
}


@pytest.mark.parametrize("name", list(CAPTURED))
def test_training_call_is_capturable_in_a_cuda_graph(gen, select, name):
    """Value + gradient without checks or tol read nothing back from the
    device and upload nothing from host buffers: a CUDA graph captures the
    call, and its replays on new data agree bit for bit with eager calls."""
    parts, (B, n, d), extra = CAPTURED[name]
    select(parts)
    lead = () if B is None else (B,)

    def data():
        return views(gen, *lead, n, d, dtype=torch.float32)

    x, y = data()
    static_x, static_y = x.clone().requires_grad_(), y.clone()
    kw = dict(eps=0.05, max_iter=20, check_finite=False, **extra)

    def step():
        value = sinsim_ext.sinkhorn_cost(static_x, static_y, **kw)
        (grad,) = torch.autograd.grad(value.sum(), static_x)
        return value.detach(), grad

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up outside the capture (kernel attributes, layouts, allocator)
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out_value, out_grad = step()
    for _ in range(2):
        nx, ny = data()
        with torch.no_grad():
            static_x.copy_(nx)
            static_y.copy_(ny)
        poison_allocator()
        graph.replay()
        torch.cuda.synchronize()
        want_value, want_grad, _ = value_and_grads(nx, ny, cotangent=torch.ones_like(out_value) if B else None, **kw)
        assert torch.equal(out_value, want_value) and torch.equal(out_grad, want_grad)


def test_descriptors_by_launch_give_the_same_results(gen, select):
    """graph: the fused forward with its descriptors written by kernel launches
    (several launches: 3 x 64 problems) equals the default bit for bit."""
    x, y = views(gen, 64, 100, 16)
    kw = dict(eps=0.05, max_iter=30, debias=True)
    select(None)
    want = value_and_grads(x, y, cotangent=torch.ones(64, device=DEV, dtype=torch.float64), **kw)
    select("graph")
    got = value_and_grads(x, y, cotangent=torch.ones(64, device=DEV, dtype=torch.float64), **kw)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
