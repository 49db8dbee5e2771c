"""Every CPU code path of the kernel gives the float64 answer.

The CPU loops are compiled once per instruction set (csrc/cpu/loops.h:
default, avx2, avx512) and SINSIM_CPU_CAPABILITY forces one per call. Each
test below runs on every path this build and CPU can run, against the
pure-PyTorch reference in float64 with the same iterations (an independent
implementation); the gradient is checked against the envelope formula
evaluated on the reference's potentials in float64.

Sizes are odd on purpose (vector tails of 4, 8 and 16 lanes, partial blocks
of 32 rows and 256 columns, n != m); the float32 tolerances are those of a scalar
float32 loop (value 1.2e-7, gradient 1e-6 on these inputs).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch

import sinsim_ext
from sinsim_ext import reference

from helpers import COSTS, points, rel_err

PATHS = list(torch.ops.sinsim_ext.cpu_capabilities())
ITERS = 40
TOL = {torch.float32: (5e-7, 3e-6), torch.float64: (1e-12, 1e-11)}  # (value, gradient)


def active_path() -> str:
    return torch.ops.sinsim_ext.cpu_capability()


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    monkeypatch.setenv("SINSIM_CPU_CAPABILITY", request.param)
    assert active_path() == request.param
    return request.param


def envelope_grad_x(x, y, a, b, f, g, eps):
    """d value / d x = 2 (r x - P y) for the squared Euclidean cost, in float64."""
    C = reference.cost_matrix(x[None], y[None])[0]
    P = a[:, None] * b[None, :] * torch.exp((f[:, None] + g[None, :] - C) / eps)
    return 2.0 * (P.sum(1, keepdim=True) * x - P @ y)


@functools.lru_cache(maxsize=None)
def problem(n: int, m: int, d: int, eps: float, zero_weights: bool):
    """Inputs and the float64 answer (value, gradient in x) for ITERS iterations."""
    gen = torch.Generator().manual_seed(1000 * n + m + d)
    x = points(gen, n, d, scale=d**-0.5)
    y = points(gen, m, d, scale=d**-0.5)
    a = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1
    b = torch.rand(m, generator=gen, dtype=torch.float64) + 0.1
    if zero_weights:  # zeros first, last and in between: -inf log-weights inside the kernel
        a[:: max(1, n // 3)] = 0.0
        a[-1] = 0.0
        b[:: max(1, m // 4)] = 0.0
        b[-1] = 0.0
        a[n // 2] = b[m // 2] = 1.0  # keep some mass
    a, b = a / a.sum(), b / b.sum()
    kw = dict(a=a, b=b, eps=eps, max_iter=ITERS)
    res = reference.sinkhorn(x, y, **kw)
    f, g = res.f.reshape(-1), res.g.reshape(-1)
    value = (a * f).sum() + (b * g).sum()  # the value's definition (docs/design/maths.md)
    grad = envelope_grad_x(x, y, a, b, f, g, eps)
    return x, y, a, b, value, grad


def kernel_value_and_grad(x, y, a, b, eps, dtype):
    xx = x.to(dtype).requires_grad_()
    value = sinsim_ext.sinkhorn_cost(xx, y.to(dtype), a=a.to(dtype), b=b.to(dtype), eps=eps, max_iter=ITERS)
    (grad,) = torch.autograd.grad(value, xx)
    return value, grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,m,d", [(1, 1, 3), (7, 5, 4), (33, 40, 17), (1000, 999, 32)])
@pytest.mark.parametrize("zero_weights", [False, True], ids=["positive", "zero-weights"])
def test_value_and_gradient_match_float64(path, dtype, n, m, d, zero_weights):
    if zero_weights and min(n, m) < 5:
        pytest.skip("needs a few points to zero out")
    x, y, a, b, want_value, want_grad = problem(n, m, d, 0.05, zero_weights)
    value, grad = kernel_value_and_grad(x, y, a, b, 0.05, dtype)
    value_tol, grad_tol = TOL[dtype]
    assert rel_err(value, want_value) < value_tol
    assert rel_err(grad, want_grad) < grad_tol
    if zero_weights:  # no mass moves to or from the zero-weight points
        zero_rows = a == 0
        assert float(grad[zero_rows].abs().max()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cost", COSTS)
def test_debiased_and_cosine_match_float64(path, gen, dtype, cost):
    x, y = points(gen, 37, 9), points(gen, 29, 9)
    kw = dict(eps=0.1, cost=cost, debias=True, max_iter=ITERS)
    want = reference.sinkhorn_cost(x, y, **kw)
    got = sinsim_ext.sinkhorn_cost(x.to(dtype), y.to(dtype), **kw)
    assert rel_err(got, want) < TOL[dtype][0] * 10  # a difference of three values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_potentials_far_from_the_shift_guess(path, gen, dtype):
    """Costs of order 100 at eps = 1e-3: the potentials start at 0, far more
    than 60 (in log2 units) from their values, so the first updates cannot
    use the previous iteration as the shift and take the exact two-pass form."""
    x = 10 * points(gen, 45, 3)
    y = 10 * points(gen, 38, 3) + 3.0
    kw = dict(eps=1e-3, max_iter=ITERS)
    want = reference.sinkhorn_cost(x, y, **kw)
    got = sinsim_ext.sinkhorn_cost(x.to(dtype), y.to(dtype), **kw)
    assert rel_err(got, want) < TOL[dtype][0]


def test_float32_potentials_beyond_the_fast_exp2_range(path, gen):
    """|LSE| > 2^21 (costs of order 1e4 at eps = 1e-3): float32 cannot use the
    fast shifted exp2 at all and every update is exact two-pass. The float64
    answer is taken on the same float32-rounded points."""
    x = (100 * points(gen, 21, 2)).float()
    y = (100 * points(gen, 18, 2) + 50.0).float()
    kw = dict(eps=1e-3, max_iter=ITERS)
    want = reference.sinkhorn_cost(x.double(), y.double(), **kw)
    assert abs(float(want)) * 1.4427 / 1e-3 > 2**21  # the premise
    got = sinsim_ext.sinkhorn_cost(x, y, **kw)
    assert rel_err(got, want) < 1e-6


def test_batch_of_small_problems(path, gen):
    x, y = points(gen, 6, 11, 5), points(gen, 6, 13, 5)
    kw = dict(eps=0.2, max_iter=ITERS)
    assert rel_err(sinsim_ext.sinkhorn_cost(x.float(), y.float(), **kw), reference.sinkhorn_cost(x, y, **kw)) < 5e-7


def test_nan_propagates(path, gen):
    x, y = points(gen, 20, 4), points(gen, 19, 4)
    x[3, 1] = float("nan")
    for dtype in (torch.float32, torch.float64):
        value = sinsim_ext.sinkhorn_cost(x.to(dtype), y.to(dtype), check_finite=False, max_iter=5)
        assert torch.isnan(value)


# ------------------------------------------------------------ choosing a path


def test_default_path_is_always_there():
    assert "default" in PATHS


def test_unset_follows_torch(monkeypatch):
    monkeypatch.delenv("SINSIM_CPU_CAPABILITY", raising=False)
    torch_choice = torch.backends.cpu.get_cpu_capability().lower()
    assert active_path() == (torch_choice if torch_choice in PATHS else "default")


@pytest.mark.parametrize("bad", ["sse9", "avx1024"])
def test_unknown_path_is_refused_with_the_choices(monkeypatch, gen, bad):
    monkeypatch.setenv("SINSIM_CPU_CAPABILITY", bad)
    x, y = points(gen, 4, 2), points(gen, 3, 2)
    with pytest.raises(ValueError, match=rf"SINSIM_CPU_CAPABILITY='{bad}' is not available.*default"):
        sinsim_ext.sinkhorn_cost(x, y)
    with pytest.raises(ValueError, match="SINSIM_CPU_CAPABILITY"):
        active_path()


def test_path_names_are_case_insensitive(monkeypatch):
    monkeypatch.setenv("SINSIM_CPU_CAPABILITY", PATHS[-1].upper())
    assert active_path() == PATHS[-1]


def _x86_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    match = re.search(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.M)
    return set(match.group(1).split()) if match else set()


def test_build_has_every_path_this_x86_cpu_runs():
    """A build that lost its per-file -mavx2 / -mavx512f flags would fall back
    to the slow default loops silently; this catches it on x86-64 Linux."""
    flags = _x86_flags()
    if "sse2" not in flags:
        pytest.skip("not an x86-64 Linux machine")
    if {"avx2", "fma"} <= flags:
        assert "avx2" in PATHS
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= flags:
        assert "avx512" in PATHS
