"""Total images per second of K training processes sharing one device (the campaign's --jobs).

    pytest bench/test_concurrent_cells.py --benchmark-only

A ResNet-18 CIFAR step is launch-bound on a large GPU, so several training
processes on one device can get more images through than one. Each of K
spawned processes builds the trainer of a SimCLR cell (the campaign's
workers run whole cells the same way), warms up (and compiles, with
``compile``), waits for the others at a barrier, then times ``steps`` steps;
``extra_info`` holds the total images/s over the K processes (sum of each
process's batch * steps / its time) and the per-process figure, so that the
campaign's K is chosen by this measurement.

* CPU: batch 32 of 3 x 16 x 16 images, K = 1, 2, one thread per process.
* CUDA, when present: the CIFAR-10 setting (batch 512, 32 px, bf16), K = 1,
  2, 4, 8 eager and K = 1, 4 with ``torch.compile``.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.multiprocessing as mp


SETTINGS = {"cpu": dict(batch=32, size=16, precision="fp32", steps=3, warmup=1, ks=(1, 2), compile=(False,))}
if torch.cuda.is_available():
    SETTINGS["cuda"] = dict(batch=512, size=32, precision="bf16", steps=60, warmup=10, ks=(1, 2, 4, 8),
                            compile=(False, True))
CASES = [(device, k, c) for device, s in SETTINGS.items() for k in s["ks"] for c in s["compile"]
         if not c or k in (1, 4)]


def _worker(device: str, s: dict, compiled: bool, barrier, results) -> None:
    torch.set_num_threads(1 if device == "cpu" else 2)
    from train import build_trainer, run_config

    torch.manual_seed(0)
    cfg = run_config("simclr", "cifar10", device=device, image_size=s["size"], batch_size=s["batch"],
                     precision=s["precision"], compile=compiled)
    images = torch.randint(0, 256, (4 * s["batch"], 3, s["size"], s["size"]), dtype=torch.uint8, device=device)
    trainer = build_trainer(cfg, images, 3, (0.5,) * 3, (0.25,) * 3)
    trainer.method.train()
    batch = trainer.images[: s["batch"]]

    def step():
        loss, _ = trainer._train_step(batch)
        trainer.method.after_optimizer_step(1, 10)
        return loss

    for _ in range(s["warmup"]):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    barrier.wait()
    start = time.perf_counter()
    for _ in range(s["steps"]):
        loss = step()
    if device == "cuda":
        torch.cuda.synchronize()
    results.put((s["batch"] * s["steps"] / (time.perf_counter() - start), bool(torch.isfinite(loss))))


def run_concurrently(device: str, k: int, compiled: bool):
    s = SETTINGS[device]
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(device, s, compiled, barrier, results)) for _ in range(k)]
    for p in procs:
        p.start()
    rates = [results.get(timeout=1800) for _ in range(k)]
    for p in procs:
        p.join(timeout=60)
    return rates


@pytest.mark.parametrize("device,k,compiled", CASES, ids=[f"{d}-K{k}{'-compile' if c else ''}" for d, k, c in CASES])
def test_total_images_per_second_of_k_processes(benchmark, device, k, compiled):
    benchmark.group = f"concurrent SimCLR cells, {device}"
    rates = benchmark.pedantic(run_concurrently, args=(device, k, compiled), rounds=1, iterations=1)
    assert len(rates) == k and all(finite for _, finite in rates)
    benchmark.extra_info.update(processes=k, compile=compiled, total_images_per_second=sum(r for r, _ in rates),
                                per_process_images_per_second=[round(r, 1) for r, _ in rates])
