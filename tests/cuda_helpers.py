"""Inputs and output poisoning shared by the CUDA tests (tests/test_sinkhorn_cuda*.py)."""

from __future__ import annotations

import torch

DEV = "cuda"


def poison_allocator():
    """Leave NaN-filled free blocks in both pools of the caching allocator, so
    an output element a kernel forgets to write shows up as NaN."""
    torch.cuda.synchronize()
    blocks = [torch.full((n,), float("nan"), device=DEV) for n in (1 << 28, 1 << 22, 1 << 18, 1 << 12) for _ in range(3)]
    blocks += [torch.full((n,), float("nan"), device=DEV, dtype=torch.float64) for n in (1 << 20, 1 << 10) for _ in range(3)]
    del blocks


def unit(gen, *shape, dtype=torch.float64):
    p = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return (p / p.norm(dim=-1, keepdim=True)).to(device=DEV, dtype=dtype)


def views(gen, *shape, dtype=torch.float64, noise=0.5):
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    y = x + noise * torch.randn(*shape, generator=gen, dtype=torch.float64)
    x, y = x / x.norm(dim=-1, keepdim=True), y / y.norm(dim=-1, keepdim=True)
    return x.to(device=DEV, dtype=dtype), y.to(device=DEV, dtype=dtype)


def solve(fn, x, y, **kw):
    poison_allocator()
    return fn(x, y, **kw)
