"""Data parallel on CPUs (gloo): images/s of 1 and 2 processes, and the
row-sharded Sinkhorn solve against the gathered one.

    pytest bench/test_distributed.py --benchmark-only --benchmark-group-by=group

The ranks are started once per configuration (bench/distributed_pool.py)
and each timed call runs the same job on all of them, barrier to barrier,
so process start-up is not timed.

* **train step**: SimCLR, ResNet-18, global batch 32 of 3 x 16 x 16 images,
  fp32, 2 steps per call: one process with 1 thread, one with 2 threads,
  and two processes with 1 thread each (DistributedDataParallel, the loss
  all-gathered: what ``torchrun --nproc-per-node 2`` runs). ``extra_info``
  has ``images_per_second``.
* **Sinkhorn term**: value and gradient of OT_eps between two global batches
  of n 128-d points (eps 0.05, 100 iterations, fp32) spread over 2
  processes: ``gathered`` (all-gather, the CPU kernel on the n x n problem
  on both) and ``sharded`` (each process its n/2 rows,
  sinsim_ext.distributed). ``extra_info`` has the bytes autograd keeps per
  process between forward and backward (measured: saved-tensor hooks) and
  the largest matrix each mode builds per process during the forward (by
  construction: n x n floats gathered; n/2 x n sharded).
"""

from __future__ import annotations

import pytest

from distributed_pool import Pool

TRAIN = ("train", "simclr", 32, 16, 2)  # method, global batch, image side, steps per call
POOLS = {"1 process x 1 thread": (1, 1), "1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}
SINKHORN_N = [512, 1024, 2048]


@pytest.fixture(scope="module")
def pools():
    started = {}

    def get(name):
        if name not in started:
            for other in list(started):  # one pool at a time: the machine has few cores
                started.pop(other).close()
            started[name] = Pool(*POOLS[name])
        return started[name]

    yield get
    for pool in started.values():
        pool.close()


@pytest.mark.parametrize("name", list(POOLS))
def test_train_step_images_per_second(benchmark, pools, name):
    pool = pools(name)
    benchmark.group = f"data parallel train step, cpu, simclr, global batch {TRAIN[2]}, {TRAIN[3]} px"
    benchmark.pedantic(pool.run, args=(TRAIN,), rounds=3, warmup_rounds=1)
    if benchmark.stats is not None:
        benchmark.extra_info["images_per_second"] = TRAIN[2] * TRAIN[4] / benchmark.stats.stats.median


@pytest.mark.parametrize("n", SINKHORN_N)
@pytest.mark.parametrize("mode", ["gathered", "sharded"])
def test_sinkhorn_term_sharded_vs_gathered(benchmark, pools, mode, n):
    pool = pools("2 processes x 1 thread")
    job = ("sinkhorn", mode, n, 100, False)
    benchmark.group = f"Sinkhorn term over 2 processes, n {n} (global), d 128, 100 iterations, fp32"
    _, kept = benchmark.pedantic(pool.run, args=(job,), rounds=2, warmup_rounds=0)
    benchmark.extra_info["saved_for_backward_mb_per_process"] = kept / 2**20
    benchmark.extra_info["largest_matrix_mb_per_process"] = 4 * n * (n if mode == "gathered" else n // 2) / 2**20


GPU_BATCHES = [32, 64, 128, 256, 512]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("batch", GPU_BATCHES)
def test_single_gpu_step_time_per_batch(benchmark, batch):
    """The compute side of docs/scaling.md: one GPU's SimCLR step
    (ResNet-18, CIFAR 32 px, bf16, channels-last, eager) at the per-GPU
    batches of a global batch of 256-4096 on 8 GPUs."""
    import torch

    from train import build_trainer, run_config

    torch.manual_seed(0)
    cfg = run_config("simclr", "cifar10", device="cuda", image_size=32, batch_size=batch, precision="bf16")
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device="cuda")
    trainer = build_trainer(cfg, images, 3, (0.5,) * 3, (0.25,) * 3)
    trainer.method.train()

    def step():
        loss, _ = trainer._train_step(images)
        torch.cuda.synchronize()
        return loss

    benchmark.group = "single-GPU SimCLR step by batch (ResNet-18, 32 px, bf16)"
    benchmark.pedantic(step, rounds=30, warmup_rounds=5)
    if benchmark.stats is not None:
        benchmark.extra_info["images_per_second"] = batch / benchmark.stats.stats.median
        benchmark.extra_info["device"] = torch.cuda.get_device_name()
