"""CPU: the compiled kernel, on each of its CPU code paths, against the
pure-PyTorch reference.

    pytest bench/test_sinkhorn_cpu.py --benchmark-only --benchmark-group-by=group
    (on a shared machine add --benchmark-timer=time.process_time: CPU time, not wall time)

The kernel runs once per instruction set this build and CPU can run
(SINSIM_CPU_CAPABILITY = avx512, avx2, default; entries `kernel-<path>`),
the reference once, with torch's own kernels. The header names the paths and
torch's capability; the end of the run prints each path's speed-up over the
reference and its time per entry per iteration. Each entry's extra_info holds
the path, the time per entry per iteration (median / (n m max_iter), in ns),
the load average, the relative error of its value and gradient against a
float64 run of the reference (same iterations), and the bytes it keeps for
the backward.

A machine without AVX-512, emulated on one with it (torch's kernels, MKL's
GEMMs and the kernel's default choice all on AVX2):

    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 pytest bench/test_sinkhorn_cpu.py ...
"""

from __future__ import annotations

import functools
import os

import pytest
import torch

import sinsim_ext
from sinsim_ext import reference

from common import EPS, ITERS, SPEEDUPS, embeddings, rel_err, saved_tensor_bytes, value_and_grad

PATHS = list(torch.ops.sinsim_ext.cpu_capabilities())
IMPLS = ["reference"] + [f"kernel-{path}" for path in reversed(PATHS)]  # best path first
KW = dict(eps=EPS, max_iter=ITERS)


@functools.lru_cache(maxsize=None)
def float64_answer(n: int):
    x, y = embeddings(n, dtype=torch.float64)
    return value_and_grad(reference.sinkhorn_cost, x, y, **KW)


def _rounds(impl: str, n: int) -> int:
    return 3 if (impl == "reference" and n >= 1024) else 8


def _use(impl: str, monkeypatch):
    """The function to time, with the kernel's path forced for this test."""
    if impl == "reference":
        return reference.sinkhorn_cost, f"torch {torch.backends.cpu.get_cpu_capability().lower()}"
    path = impl.split("-", 1)[1]
    monkeypatch.setenv("SINSIM_CPU_CAPABILITY", path)
    assert torch.ops.sinsim_ext.cpu_capability() == path
    return sinsim_ext.sinkhorn_cost, path


def _record(benchmark, impl: str, path: str, n: int, what: str):
    benchmark.extra_info["cpu_path"] = path
    benchmark.extra_info["load_average_1min"] = os.getloadavg()[0]
    if benchmark.stats is None:  # --benchmark-disable: nothing was timed
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["ns_per_entry_iteration"] = median * 1e9 / (n * n * ITERS)
    SPEEDUPS.record(f"cpu {what} n={n}", impl, median, n * n * ITERS)


@pytest.mark.parametrize("n", [256, 1024])
@pytest.mark.parametrize("impl", IMPLS)
def test_forward(benchmark, monkeypatch, impl, n):
    fn, path = _use(impl, monkeypatch)
    x, y = embeddings(n)
    benchmark.group = f"cpu forward n={n}"
    value = benchmark.pedantic(lambda: fn(x, y, **KW), rounds=_rounds(impl, n), warmup_rounds=1)
    want, _ = float64_answer(n)
    benchmark.extra_info["value_rel_err_vs_float64"] = rel_err(value, want)
    _record(benchmark, impl, path, n, "forward")


@pytest.mark.parametrize("n", [256, 1024])
@pytest.mark.parametrize("impl", IMPLS)
def test_forward_backward(benchmark, monkeypatch, impl, n):
    fn, path = _use(impl, monkeypatch)
    x, y = embeddings(n)
    benchmark.group = f"cpu forward+backward n={n}"
    value, grad = benchmark.pedantic(
        lambda: value_and_grad(fn, x, y, **KW), rounds=_rounds(impl, n), warmup_rounds=1
    )
    want_value, want_grad = float64_answer(n)
    benchmark.extra_info["value_rel_err_vs_float64"] = rel_err(value, want_value)
    benchmark.extra_info["grad_rel_err_vs_float64"] = rel_err(grad, want_grad)
    xg = x.detach().requires_grad_()
    benchmark.extra_info["backward_saved_MB"] = saved_tensor_bytes(lambda: fn(xg, y, **KW)) / 2**20
    _record(benchmark, impl, path, n, "forward+backward")


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_backward_one_thread(benchmark, monkeypatch, impl):
    """n = 1024 on one thread. With other jobs on the cores, a 2-thread run
    waits at every parallel region for a descheduled thread; one thread has
    no such waits, so this ratio stays the ratio of the work done."""
    n = 1024
    fn, path = _use(impl, monkeypatch)
    x, y = embeddings(n)
    benchmark.group = f"cpu forward+backward n={n}, 1 thread"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark.pedantic(lambda: value_and_grad(fn, x, y, **KW), rounds=_rounds(impl, n), warmup_rounds=1)
    finally:
        torch.set_num_threads(threads)
    _record(benchmark, impl, path, n, "forward+backward, 1 thread")


@pytest.mark.parametrize("max_iter", [10, 100, 1000])
def test_backward_cost_does_not_depend_on_iterations(benchmark, max_iter):
    """Backward alone, after forwards of different lengths: same time, same memory."""
    x, y = embeddings(1024)
    x = x.requires_grad_()
    benchmark.group = "cpu kernel backward only, n=1024"

    def setup():
        return (sinsim_ext.sinkhorn_cost(x, y, eps=EPS, max_iter=max_iter),), {}

    benchmark.pedantic(lambda v: torch.autograd.grad(v, x), setup=setup, rounds=5)
    benchmark.extra_info["cpu_path"] = torch.ops.sinsim_ext.cpu_capability()
    benchmark.extra_info["backward_saved_MB"] = saved_tensor_bytes(
        lambda: sinsim_ext.sinkhorn_cost(x, y, eps=EPS, max_iter=max_iter)
    ) / 2**20


def _bare_value_and_grad(x, y):
    """Forward and first-order backward by the two compiled ops, no autograd layer."""
    x3, y3 = x.unsqueeze(0).contiguous(), y.unsqueeze(0).contiguous()
    a = torch.full((1, x.shape[0]), 1.0 / x.shape[0], dtype=x.dtype)
    b = torch.full((1, y.shape[0]), 1.0 / y.shape[0], dtype=y.dtype)
    with torch.no_grad():
        out = torch.ops.sinsim_ext.sinkhorn_value(x3, y3, a, b, EPS, "sqeuclidean", ITERS, 0.0, False)
        grad, _ = torch.ops.sinsim_ext.sinkhorn_value_backward(
            torch.ones(1, dtype=x.dtype), x3, y3, a, b, *out[1:7], EPS, "sqeuclidean", False
        )
    return out[0][0], grad[0]


@pytest.mark.parametrize("n", [256, 1024])
@pytest.mark.parametrize("path", ["sinkhorn_cost", "bare ops"])
def test_first_order_path_against_bare_ops(benchmark, path, n):
    """sinkhorn_cost + backward against the same two compiled ops called directly:
    the price of the Python layers (checks, autograd.Function) on the fast path."""
    x, y = embeddings(n)
    benchmark.group = f"cpu first-order path vs bare compiled ops n={n}"
    if path == "bare ops":
        value, grad = benchmark.pedantic(lambda: _bare_value_and_grad(x, y), rounds=8, warmup_rounds=1)
    else:
        value, grad = benchmark.pedantic(lambda: value_and_grad(sinsim_ext.sinkhorn_cost, x, y, **KW), rounds=8, warmup_rounds=1)
    want_value, want_grad = float64_answer(n)
    benchmark.extra_info["grad_rel_err_vs_float64"] = rel_err(grad, want_grad)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_hessian_vector_product(benchmark, monkeypatch, impl):
    """Double backward: implicit differentiation (CG on the Schur complement) for
    the kernel, autograd through the 100 iterations for the reference."""
    fn, path = _use(impl, monkeypatch)
    benchmark.extra_info["cpu_path"] = path
    x, y = embeddings(256)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    benchmark.group = "cpu Hessian-vector product n=256"

    def hvp():
        xg = x.detach().requires_grad_()
        (g,) = torch.autograd.grad(fn(xg, y, **KW), xg, create_graph=True)
        return torch.autograd.grad((g * v).sum(), xg)[0]

    got = benchmark.pedantic(hvp, rounds=3 if impl == "reference" else 5, warmup_rounds=1)
    x64, y64 = embeddings(256, dtype=torch.float64)
    xg = x64.requires_grad_()
    (g,) = torch.autograd.grad(reference.sinkhorn_cost(xg, y64, **KW), xg, create_graph=True)
    want = torch.autograd.grad((g * v.double()).sum(), xg)[0]
    benchmark.extra_info["hvp_rel_err_vs_float64_reference"] = rel_err(got, want)


@pytest.mark.parametrize("n", [64, 512])
@pytest.mark.parametrize("term", ["entropic", "divergence"])
def test_sinsim_term(benchmark, term, n):
    """SinSim's two terms on the encoder features (512-d), forward + backward with the kernel: what the
    default (the divergence: three problems, two of them symmetric) costs over the paper's entropic term."""
    x, y = embeddings(n, d=512)
    debias = term == "divergence"
    benchmark.group = f"cpu SinSim term, n={n}, d=512"
    benchmark.pedantic(lambda: value_and_grad(sinsim_ext.sinkhorn_cost, x, y, debias=debias, **KW),
                       rounds=20, warmup_rounds=2)
