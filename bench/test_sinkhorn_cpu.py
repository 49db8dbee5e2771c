"""CPU: the compiled kernel against the pure-PyTorch reference.

    pytest bench/test_sinkhorn_cpu.py --benchmark-only --benchmark-group-by=group

Each group times both implementations on the same inputs; each entry's
extra_info holds the relative error of its value and gradient against a
float64 run of the reference (same iterations), and the bytes it keeps for
the backward.
"""

from __future__ import annotations

import functools

import pytest
import torch

import sinsim_ext
from sinsim_ext import reference

from common import EPS, ITERS, embeddings, rel_err, saved_tensor_bytes, value_and_grad

IMPLS = {"kernel": sinsim_ext.sinkhorn_cost, "reference": reference.sinkhorn_cost}
KW = dict(eps=EPS, max_iter=ITERS)


@functools.lru_cache(maxsize=None)
def float64_answer(n: int):
    x, y = embeddings(n, dtype=torch.float64)
    return value_and_grad(reference.sinkhorn_cost, x, y, **KW)


def _rounds(impl: str, n: int) -> int:
    return 3 if (impl == "reference" and n >= 1024) else 8


@pytest.mark.parametrize("n", [256, 1024])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward(benchmark, impl, n):
    fn = IMPLS[impl]
    x, y = embeddings(n)
    benchmark.group = f"cpu forward n={n}"
    value = benchmark.pedantic(lambda: fn(x, y, **KW), rounds=_rounds(impl, n), warmup_rounds=1)
    want, _ = float64_answer(n)
    benchmark.extra_info["value_rel_err_vs_float64"] = rel_err(value, want)


@pytest.mark.parametrize("n", [256, 1024])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward_backward(benchmark, impl, n):
    fn = IMPLS[impl]
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


@pytest.mark.parametrize("max_iter", [10, 100, 1000])
def test_backward_cost_does_not_depend_on_iterations(benchmark, max_iter):
    """Backward alone, after forwards of different lengths: same time, same memory."""
    x, y = embeddings(1024)
    x = x.requires_grad_()
    benchmark.group = "cpu kernel backward only, n=1024"

    def setup():
        return (sinsim_ext.sinkhorn_cost(x, y, eps=EPS, max_iter=max_iter),), {}

    benchmark.pedantic(lambda v: torch.autograd.grad(v, x), setup=setup, rounds=5)
    benchmark.extra_info["backward_saved_MB"] = saved_tensor_bytes(
        lambda: sinsim_ext.sinkhorn_cost(x, y, eps=EPS, max_iter=max_iter)
    ) / 2**20


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
