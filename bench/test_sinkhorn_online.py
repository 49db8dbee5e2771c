"""CPU: the online cost mode (cost recomputed in blocks at every pass)
against the stored-cost mode, forward + backward, one thread.

    pytest bench/test_sinkhorn_online.py --benchmark-only --benchmark-group-by=group \
        --benchmark-timer=time.process_time

d = 128, eps = 0.05, 20 iterations (enough to see the per-iteration cost;
the iterations dominate both modes), float32, unit-norm embeddings. Each
entry's extra_info holds the memory the mode needs for the (n, m) arrays:
the stored cost K of the forward and the plan P of the backward (stored),
or the row blocks (online: 8 rows of K per task, and 32 MB blocks of the
plan). The time ratio online / stored is the price of not storing; the
memory column is where "auto" switches (the summary calls the stored mode
"reference": the speed-up printed for "online" is below 1, its slowdown) (sinsim_ext.ops.ONLINE_THRESHOLD_BYTES).
"""

from __future__ import annotations

import pytest
import torch

import sinsim_ext

from common import EPS, SPEEDUPS, embeddings, rel_err, value_and_grad

ITERS = 20
KW = dict(eps=EPS, max_iter=ITERS)


def _bytes(mode: str, n: int) -> int:
    entry = 4
    if mode == "stored":
        return 2 * n * n * entry  # K (forward) + P (backward)
    return 8 * n * entry * torch.get_num_threads() + min(32 << 20, n * n * entry)


@pytest.mark.parametrize("n", [512, 1024, 2048])
@pytest.mark.parametrize("mode", ["stored", "online"])
def test_online_vs_stored(benchmark, mode, n):
    torch.set_num_threads(1)
    x, y = embeddings(n)
    benchmark.group = f"online vs stored, n = {n}"
    benchmark.extra_info.update(mode=mode, nm_bytes=_bytes(mode, n))
    value, grad = benchmark.pedantic(
        value_and_grad, args=(sinsim_ext.sinkhorn_cost, x, y), kwargs=dict(cost_mode=mode, **KW),
        rounds=3 if n >= 2048 else 5, iterations=1,
    )
    want, want_grad = value_and_grad(sinsim_ext.sinkhorn_cost, x, y, cost_mode="stored", **KW)
    benchmark.extra_info.update(value_rel_err=rel_err(value, want), grad_rel_err=rel_err(grad, want_grad))
    assert rel_err(value, want) < 1e-5 and rel_err(grad, want_grad) < 1e-4
    if benchmark.stats is not None:  # None under --benchmark-disable: nothing was timed
        SPEEDUPS.record(f"online vs stored n={n}", "reference" if mode == "stored" else mode,
                        benchmark.stats.stats.median, n * n * ITERS)
