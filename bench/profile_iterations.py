"""Where the time of one Sinkhorn call goes on a GPU (diagnostic, not a test).

For each size: forward time at max_iter = 1, 10, 100 (the slope is the cost
of one iteration, the intercept the fixed cost: cost matrix, launches,
Python), and the backward alone. CUDA-event medians over 20 runs after
warm-up. With --layouts, also the per-iteration cost of forced kernel
layouts (SINSIM_CUDA_LAYOUT="G,Q": G blocks per cluster, Q clusters).

    python bench/profile_iterations.py [--layouts]
"""

from __future__ import annotations

import os
import statistics
import sys

import torch

import sinsim_ext
from common import embeddings


def gpu_ms(fn, reps=20, warmup=3):
    times = []
    for i in range(warmup + reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    print(f"{'case':18s} {'it=1':>8s} {'it=10':>8s} {'it=100':>8s} {'us/iter':>8s} {'bwd':>8s} {'fwd+bwd':>8s}  (ms)")
    for name, n, batch, extra in [
        ("n256", 256, None, {}),
        ("n1024", 1024, None, {}),
        ("n4096", 4096, None, {}),
        ("64x256", 256, 64, {}),
        ("n1024 debias", 1024, None, {"debias": True}),
    ]:
        x, y = embeddings(n, batch=batch, device="cuda")
        fwd = {}
        for it in (1, 10, 100):
            fwd[it] = gpu_ms(lambda: sinsim_ext.sinkhorn_cost(x, y, max_iter=it, check_finite=False, **extra))
        xg = x.clone().requires_grad_()

        def both():
            v = sinsim_ext.sinkhorn_cost(xg, y, check_finite=False, **extra).sum()
            torch.autograd.grad(v, xg)

        total = gpu_ms(both)
        per_iter = (fwd[100] - fwd[10]) / 90 * 1e3
        print(f"{name:18s} {fwd[1]:8.3f} {fwd[10]:8.3f} {fwd[100]:8.3f} {per_iter:8.2f} {total - fwd[100]:8.3f} {total:8.3f}")


LAYOUTS = {
    "n256": [(1, 1), (2, 1), (4, 1), (8, 1), (16, 1), (8, 2), (16, 2)],
    "n1024": [(4, 1), (8, 1), (16, 1), (16, 2), (16, 4), (8, 8), (8, 15), (4, 31)],
    "n4096": [(16, 4), (16, 7), (8, 15), (4, 31)],
    "64x256": [(1, 1), (2, 1), (4, 1)],
}
SHAPES = {"n256": (256, None), "n1024": (1024, None), "n4096": (4096, None), "64x256": (256, 64)}


def sweep_layouts():
    print("\nper-iteration cost (us) by forced layout G,Q")
    for name, layouts in LAYOUTS.items():
        n, batch = SHAPES[name]
        x, y = embeddings(n, batch=batch, device="cuda")
        cells = []
        for G, Q in layouts:
            os.environ["SINSIM_CUDA_LAYOUT"] = f"{G},{Q}"
            try:
                t10 = gpu_ms(lambda: sinsim_ext.sinkhorn_cost(x, y, max_iter=10, check_finite=False), reps=10)
                t100 = gpu_ms(lambda: sinsim_ext.sinkhorn_cost(x, y, max_iter=100, check_finite=False), reps=10)
                cells.append(f"{G},{Q}: {(t100 - t10) / 90 * 1e3:.2f}")
            except RuntimeError as exc:
                cells.append(f"{G},{Q}: failed ({str(exc).splitlines()[0][:40]})")
            finally:
                del os.environ["SINSIM_CUDA_LAYOUT"]
        print(f"{name:8s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
    if "--layouts" in sys.argv:
        sweep_layouts()
