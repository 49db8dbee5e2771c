"""A pool of W processes joined in a gloo group, for bench/test_distributed.py.

The benchmark process starts the ranks once (``torch.multiprocessing``,
spawn) and sends each the same job through its queue; every rank runs it
(the collectives meet), times it from a barrier to a barrier, and answers
with its time and what the job reports about memory. So the timing covers
the steady-state work and none of the process start-up.

Jobs:

* ``("train", method, global_batch, size, world_steps)``: the trainer's step
  (augment, forward, loss, backward, optimiser) on rank r's B/W images; with
  W > 1 the method is wrapped as under torchrun
  (:func:`train.parallel.model.make_data_parallel`: DDP, gathered loss);
* ``("sinkhorn", mode, n, iters, debias)``: SinSim's Sinkhorn term (value and
  gradient) of two global batches of n L2-normalised 128-d points spread over
  the ranks, ``mode`` "sharded" (:mod:`sinsim_ext.distributed`) or
  "gathered" (all-gather both clouds, the CPU kernel on the whole problem);
  it reports the bytes autograd keeps between forward and backward on the
  rank (``sinsim_ext.testing.saved_tensor_bytes``).
"""

from __future__ import annotations

import os
import time


def _trainer(job, rank, world):
    import torch

    from train import build_trainer, run_config

    _, name, batch, size, _steps = job
    torch.manual_seed(0)
    cfg = run_config(name, "cifar10", device="cpu", image_size=size, batch_size=batch, precision="fp32",
                     sinkhorn_shard="never")
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    trainer = build_trainer(cfg, images, 3, (0.5,) * 3, (0.25,) * 3)
    shard = images[rank * batch // world : (rank + 1) * batch // world]
    if world > 1:
        from train.parallel.model import make_data_parallel

        trainer.step_fn = make_data_parallel(trainer.method, torch.device("cpu"), sync_bn=False,
                                             global_batch=trainer.batch_size, local_rank=0)
    trainer.method.train()
    return (lambda: trainer._train_step(shard)), 0


def _sinkhorn(job, rank, world):
    import torch
    import torch.distributed as dist

    import sinsim_ext
    from sinsim_ext.distributed import sharded_sinkhorn_cost

    _, mode, n, iters, debias = job
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, 128, generator=g), dim=1)
    y = torch.nn.functional.normalize(x + 0.5 * torch.randn(n, 128, generator=g), dim=1)
    mine = slice(rank * n // world, (rank + 1) * n // world)
    x_r, y_r = x[mine].clone().requires_grad_(), y[mine].clone().requires_grad_()

    def sharded():
        value = sharded_sinkhorn_cost(x_r, y_r, eps=0.05, max_iter=iters, debias=debias)
        value.backward()
        return value

    def gathered():
        import torch.distributed.nn.functional as dist_nn

        xs = torch.cat(dist_nn.all_gather(x_r)) if world > 1 else x_r
        ys = torch.cat(dist_nn.all_gather(y_r)) if world > 1 else y_r
        value = sinsim_ext.sinkhorn_cost(xs, ys, eps=0.05, max_iter=iters, debias=debias)
        value.backward()
        return value

    del dist
    run = sharded if mode == "sharded" else gathered
    from sinsim_ext.testing import saved_tensor_bytes

    kept = saved_tensor_bytes(lambda: run().detach())  # the first call: also the warm-up
    return run, kept


def serve(rank: int, world: int, port: int, threads: int, jobs, answers) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    prepared = {}
    while True:
        job = jobs.get()
        if job is None:
            break
        try:
            key = job[:-1] if job[0] == "train" else job
            if key not in prepared:
                prepared.clear()
                prepared[key] = (_trainer if job[0] == "train" else _sinkhorn)(job, rank, world)
                prepared[key][0]()  # warm-up (allocations, DDP's first-step bucket rebuild)
            run, kept = prepared[key]
            repeats = job[-1] if job[0] == "train" else 1
            dist.barrier()
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            dist.barrier()
            answers.put((rank, time.perf_counter() - start, kept, None))
        except Exception as exc:  # the benchmark reports it instead of hanging
            answers.put((rank, None, None, f"{type(exc).__name__}: {exc}"))
    dist.destroy_process_group()


class Pool:
    """``world`` ranks with ``threads`` threads each."""

    def __init__(self, world: int, threads: int = 1):
        import socket

        import torch.multiprocessing as mp

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx = mp.get_context("spawn")
        self.world = world
        self.jobs = [ctx.Queue() for _ in range(world)]
        self.answers = ctx.Queue()
        self.procs = [ctx.Process(target=serve, args=(r, world, port, threads, self.jobs[r], self.answers),
                                  daemon=True) for r in range(world)]
        for p in self.procs:
            p.start()

    def run(self, job, timeout: float = 600):
        """Run ``job`` on every rank: (slowest rank's seconds, the largest bytes a rank reported)."""
        for q in self.jobs:
            q.put(job)
        answers = [self.answers.get(timeout=timeout) for _ in range(self.world)]
        errors = [f"rank {r}: {e}" for r, _, _, e in answers if e]
        if errors:
            raise RuntimeError("; ".join(errors))
        return max(a[1] for a in answers), max(a[2] for a in answers)

    def close(self):
        for q in self.jobs:
            q.put(None)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
