"""Measurements shared by the tests and the benchmarks, and useful for
checking the operator inside your own models."""

from __future__ import annotations

from typing import Callable

import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64 (``b`` is the reference answer)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd keeps for the backward of ``fn()``: for
    ``sinkhorn_cost`` this does not depend on ``max_iter`` (implicit backward)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total
