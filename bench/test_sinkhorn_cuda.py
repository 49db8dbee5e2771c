"""CUDA: the fused kernels against the pure-PyTorch reference (on the GPU) and
the CPU kernel.

    pytest bench/test_sinkhorn_cuda.py --benchmark-only --benchmark-group-by=group

The workload of docs/performance/index.md: unit-norm embeddings, d = 128, eps = 0.05,
100 iterations, float32. Each entry's extra_info: gpu_median_ms (CUDA events,
warm-up excluded), peak_extra_MB, and the relative error of the value and of
the gradient against a float64 run of the reference.
"""

from __future__ import annotations

import functools

import pytest
import torch

import sinsim_ext
from sinsim_ext import reference

import cuda_timing
from common import EPS, ITERS, embeddings, rel_err, value_and_grad

if not torch.cuda.is_available() or "cuda" not in sinsim_ext.backends():
    pytest.skip("needs a CUDA GPU and the CUDA build of sinsim_ext", allow_module_level=True)

# the kernel is benchmarked as a training step calls it: no value checks (they sync)
IMPLS = {
    "kernel": functools.partial(sinsim_ext.sinkhorn_cost, check_finite=False),
    "reference": reference.sinkhorn_cost,
}
KW = dict(eps=EPS, max_iter=ITERS)
CASES = {  # name: (n, batch, d, extra kwargs)
    "n256": (256, None, 128, {}),
    "n1024": (1024, None, 128, {}),
    "n4096": (4096, None, 128, {}),
    "64x256": (256, 64, 128, {}),
    "n1024-d2048": (1024, None, 2048, {}),
    "n1024-debias": (1024, None, 128, {"debias": True}),
}


@functools.lru_cache(maxsize=None)
def float64_answer(case: str):
    n, batch, d, extra = CASES[case]
    x, y = embeddings(n, batch=batch, d=d, device="cuda", dtype=torch.float64)
    value, grad = value_and_grad(lambda x, y, **kw: reference.sinkhorn_cost(x, y, **kw).sum(), x, y, **KW, **extra)
    return value.cpu(), grad.cpu()


def _case(case):
    n, batch, d, extra = CASES[case]
    x, y = embeddings(n, batch=batch, d=d, device="cuda")
    return x, y, extra


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward(benchmark, impl, case):
    x, y, extra = _case(case)
    fn = IMPLS[impl]
    benchmark.group = f"cuda forward {case}"
    value = cuda_timing.run(benchmark, lambda: fn(x, y, **KW, **extra), rounds=20 if impl == "kernel" else 5)
    benchmark.extra_info["value_rel_err_vs_float64"] = rel_err(value.sum(), float64_answer(case)[0])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward_backward(benchmark, impl, case):
    x, y, extra = _case(case)
    fn = IMPLS[impl]
    benchmark.group = f"cuda forward+backward {case}"
    step = lambda: value_and_grad(lambda x, y, **kw: fn(x, y, **kw).sum(), x, y, **KW, **extra)
    value, grad = cuda_timing.run(benchmark, step, rounds=20 if impl == "kernel" else 5)
    want_value, want_grad = float64_answer(case)
    benchmark.extra_info["value_rel_err_vs_float64"] = rel_err(value, want_value)
    benchmark.extra_info["grad_rel_err_vs_float64"] = rel_err(grad, want_grad)


@pytest.mark.parametrize("case", ["n256", "n1024"])
def test_forward_backward_cpu_kernel(benchmark, case):
    """The same problem on the CPU kernel, for scale (data already on the host)."""
    x, y, extra = _case(case)
    x, y = x.cpu(), y.cpu()
    benchmark.group = f"cuda forward+backward {case}"
    benchmark.pedantic(
        lambda: value_and_grad(lambda x, y, **kw: sinsim_ext.sinkhorn_cost(x, y, **kw).sum(), x, y, **KW, **extra),
        rounds=3,
        warmup_rounds=1,
    )


@pytest.mark.parametrize("max_iter", [10, 100, 1000])
def test_backward_memory_does_not_depend_on_iterations(benchmark, max_iter):
    x, y = embeddings(4096, device="cuda")
    x.requires_grad_()
    benchmark.group = "cuda kernel forward+backward n4096, by max_iter"
    cuda_timing.run(
        benchmark,
        lambda: torch.autograd.grad(sinsim_ext.sinkhorn_cost(x, y, eps=EPS, max_iter=max_iter, check_finite=False), x),
        rounds=5,
    )
