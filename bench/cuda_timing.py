"""CUDA-event timing for pytest-benchmark entries.

pytest-benchmark times with the host clock; on a GPU each timed call here
also records CUDA events around the work and synchronises, and the median of
the event times (warm-up rounds excluded) goes to the entry's extra_info as
``gpu_median_ms``, alongside the peak memory the call added.
"""

from __future__ import annotations

import statistics

import torch


class EventTimer:
    def __init__(self):
        self.times_ms = []

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn(*args, **kwargs)
            end.record()
            end.synchronize()
            self.times_ms.append(start.elapsed_time(end))
            return out

        return timed

    def median(self, warmup: int) -> float:
        return statistics.median(self.times_ms[warmup:])


def run(benchmark, fn, *, rounds: int, warmup: int = 2, iterations: int = 1):
    """Time fn with events; record median event time and peak extra memory."""
    timer = EventTimer()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = benchmark.pedantic(timer.wrap(fn), rounds=rounds, warmup_rounds=warmup, iterations=iterations)
    benchmark.extra_info["gpu_median_ms"] = timer.median(warmup)
    benchmark.extra_info["peak_extra_MB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    benchmark.extra_info["device"] = torch.cuda.get_device_name()
    return out
