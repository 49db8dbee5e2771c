"""CUDA: the fused kernels against the pure-PyTorch reference (on the GPU) and
the CPU kernel, and the newer paths selected by SINSIM_CUDA_KERNEL (the
``v2`` cases: fused backward, online mode, eps-scaling on the device) beside
the verified kernel in the same groups.

    pytest bench/test_sinkhorn_cuda.py --benchmark-only --benchmark-group-by=group
    pytest bench/test_sinkhorn_cuda.py --benchmark-only -k v2     # the newer paths only

The workload of docs/performance/index.md: unit-norm embeddings, d = 128, eps = 0.05,
100 iterations, float32. Each entry's extra_info: gpu_median_ms (CUDA events,
warm-up excluded), peak_extra_MB, and the relative error of the value and of
the gradient against a float64 run of the reference.
"""

from __future__ import annotations

import contextlib
import functools
import os

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


# --- the newer paths (SINSIM_CUDA_KERNEL), each beside the verified kernel of its group ---


@contextlib.contextmanager
def cuda_kernel(parts):
    """SINSIM_CUDA_KERNEL=parts for the calls inside (the C++ side reads it on every call)."""
    old = os.environ.get("SINSIM_CUDA_KERNEL")
    os.environ["SINSIM_CUDA_KERNEL"] = parts
    try:
        yield
    finally:
        if old is None:
            del os.environ["SINSIM_CUDA_KERNEL"]
        else:
            os.environ["SINSIM_CUDA_KERNEL"] = old


V2_VARIANTS = {  # name: (parts, extra kwargs)
    "v2-fused-backward": ("backward", {}),
    "v2-online": ("online,backward", {"cost_mode": "online"}),
    "v2-passes": ("passes,backward", {}),  # plain iterations on the pass solver, stored cost
}


@pytest.mark.parametrize("case", ["n256", "n1024", "n4096", "64x256", "n1024-debias"])
@pytest.mark.parametrize("variant", list(V2_VARIANTS))
def test_forward_backward_v2(benchmark, variant, case):
    """Joins the group of test_forward_backward: same problem, same float64 answer."""
    x, y, extra = _case(case)
    parts, kw = V2_VARIANTS[variant]
    benchmark.group = f"cuda forward+backward {case}"

    def step():
        with cuda_kernel(parts):
            return value_and_grad(
                lambda x, y, **k: sinsim_ext.sinkhorn_cost(x, y, check_finite=False, **k).sum(), x, y, **KW, **extra, **kw
            )

    value, grad = cuda_timing.run(benchmark, step, rounds=20)
    want_value, want_grad = float64_answer(case)
    benchmark.extra_info["value_rel_err_vs_float64"] = rel_err(value, want_value)
    benchmark.extra_info["grad_rel_err_vs_float64"] = rel_err(grad, want_grad)


SCALED = dict(eps=0.01, max_iter=ITERS)
SCALING_ENTRIES = {  # name: (parts, kwargs): 100 iterations each, so times compare per iteration
    "plain (fused kernel)": ("v1", {}),
    "scaling 0.9, generic solver": ("v1", {"scaling": 0.9}),
    "v2-scaling 0.9, device stages": ("scaling", {"scaling": 0.9}),
    "v2-scaling 0.9, online": ("online", {"scaling": 0.9, "cost_mode": "online"}),
}


@pytest.mark.parametrize("case", ["n1024", "n4096"])
@pytest.mark.parametrize("entry", list(SCALING_ENTRIES))
def test_scaling_per_iteration_v2(benchmark, entry, case):
    """Eps-scaling against plain iterations at the same budget (eps = 0.01)."""
    x, y, _ = _case(case)
    parts, kw = SCALING_ENTRIES[entry]
    benchmark.group = f"cuda eps-scaling eps0.01 {case}, 100 iterations"

    def step():
        with cuda_kernel(parts):
            return value_and_grad(
                lambda x, y, **k: sinsim_ext.sinkhorn_cost(x, y, check_finite=False, **k).sum(), x, y, **SCALED, **kw
            )

    cuda_timing.run(benchmark, step, rounds=5 if "generic" in entry else 10)


@pytest.mark.parametrize("n", [16384, 65536])
def test_online_large_v2(benchmark, n):
    """The online mode where the stored cost would not fit comfortably: forward + backward,
    20 iterations (n = 65,536 stored would hold 16 GiB of cost), one round."""
    x, y = embeddings(n, device="cuda")
    benchmark.group = f"cuda online n{n}, 20 iterations"

    def step():
        with cuda_kernel("online,backward"):
            return value_and_grad(
                lambda x, y, **k: sinsim_ext.sinkhorn_cost(x, y, check_finite=False, **k).sum(),
                x, y, eps=EPS, max_iter=20, cost_mode="online",
            )

    value, grad = cuda_timing.run(benchmark, step, rounds=1, warmup=0)
    benchmark.extra_info["value"] = float(value)
    benchmark.extra_info["grad_finite"] = bool(torch.isfinite(grad).all())
