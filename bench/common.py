"""Inputs and measurements shared by the Sinkhorn benchmarks.

The workload is the one SinSim runs: L2-normalised 128-d embeddings of two
views, eps = 0.05, 100 iterations, float32 (docs/performance/index.md).
"""

from __future__ import annotations

from collections import defaultdict

import torch

from sinsim_ext.testing import rel_err, saved_tensor_bytes  # noqa: F401  (re-exported for the benches)

D, EPS, ITERS = 128, 0.05, 100


def embeddings(n: int, *, batch=None, d: int = D, device="cpu", dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    x = torch.randn(*lead, n, d, generator=g, dtype=torch.float64)
    # two noisy views of the same points, like the two augmentations of a batch
    y = x + 0.5 * torch.randn(*lead, n, d, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True)
    y = y / y.norm(dim=-1, keepdim=True)
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


def value_and_grad(fn, x, y, **kw):
    """Value and d value / d x of fn(x, y, **kw)."""
    x = x.detach().requires_grad_()
    value = fn(x, y, **kw)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


class Speedups:
    """Medians of the entries of a group, for the end-of-run summary
    (bench/conftest.py): each entry's speed-up over the group's "reference"
    entry, measured in the same run, and its time per unit of work."""

    def __init__(self):
        self.groups = defaultdict(dict)  # group -> {entry: (median s, work units)}

    def record(self, group: str, entry: str, median_s: float, work: int) -> None:
        self.groups[group][entry] = (median_s, work)

    def lines(self):
        for group, entries in sorted(self.groups.items()):
            ref = entries.get("reference", (None, None))[0]
            for entry, (median, work) in sorted(entries.items(), key=lambda kv: kv[1][0]):
                speedup = f"{ref / median:6.1f}x the reference" if ref else ""
                yield f"{group:38s} {entry:16s} {median * 1e3:9.2f} ms  {median * 1e9 / work:7.3f} ns/entry/iter  {speedup}"


SPEEDUPS = Speedups()
