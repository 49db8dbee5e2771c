"""Run under ``torchrun --standalone --nproc-per-node 2``: the loss and the
gradients of every method trained data-parallel (2 ranks x B/2 images)
against one process on the whole batch of B. Rank 0 writes the comparison
to the JSON file named on the command line (tests/test_parallel_training.py
reads it; fp32, tolerances there).

For each case every rank builds the method from the same seed, wraps it with
``train.parallel.model.make_data_parallel`` (what the trainer uses), runs one
step's forward and backward on its half of a fixed batch of views, and
rank 0 compares DistributedDataParallel's averaged gradients and the loss
with the reference computed in plain autograd on one process:

* ``--sync-bn``: the plain method on the whole batch (BatchNorm over B);
* without it: the plain method run on each half separately (BatchNorm over
  B/2, as each rank does), its outputs joined, the loss of the whole batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist


from train.config import Config, run_config
from train.methods import METHODS
from train.models import resnet18_encoder
from train.parallel.model import make_data_parallel

BATCH = 16
CASES = [(name, sync, "never") for name in METHODS for sync in (True, False)]
CASES += [("sinsim", sync, "always") for sync in (True, False)]  # the row-sharded Sinkhorn term
CASES += [("sinsim-entropic", True, "always"), ("sinsim-entropic", True, "never")]


def config(case: str, shard: str) -> Config:
    name, _, term = case.partition("-")
    return run_config(name, image_size=8, batch_size=BATCH, proj_hidden_dim=64, proj_output_dim=32,
                      pred_hidden_dim=64, sinkhorn_weight=1.0, sinkhorn_iters=30, sinkhorn_term=term or "divergence",
                      sinkhorn_shard=shard, device="cpu")


def build(cfg: Config):
    torch.manual_seed(0)
    backbone, dim = resnet18_encoder(1, cfg.image_size)
    return METHODS[cfg.method](backbone, dim, cfg)


def views():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 1, 8, 8, generator=g), torch.randn(BATCH, 1, 8, 8, generator=g)


def reference(cfg: Config, sync_bn: bool, world: int):
    """Loss, gradients and BatchNorm running statistics of one process."""
    method = build(cfg)
    v1, v2 = views()
    if sync_bn:
        loss, _ = method.training_step(v1, v2)
    else:
        shards = [slice(r * BATCH // world, (r + 1) * BATCH // world) for r in range(world)]
        parts = [method.embed(v1[s], v2[s]) for s in shards]
        loss, _ = method.loss_from(*(torch.cat(outputs) for outputs in zip(*parts)))
    loss.backward()
    grads = {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}
    stats = {k: b.clone() for k, b in method.named_buffers() if k.endswith(("running_mean", "running_var"))}
    return float(loss.detach()), grads, stats


def distributed(cfg: Config, sync_bn: bool, rank: int, world: int):
    method = build(cfg)
    step = make_data_parallel(method, torch.device("cpu"), sync_bn=sync_bn, global_batch=BATCH, local_rank=0)
    v1, v2 = views()
    mine = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    loss, _ = step(v1[mine], v2[mine])
    loss.backward()
    grads = {k: p.grad.clone() for k, p in method.named_parameters() if p.grad is not None}
    stats = {k: b.clone() for k, b in method.named_buffers() if k.endswith(("running_mean", "running_var"))}
    return float(loss.detach()), grads, stats


def rel(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-30) -> float:
    """``|a - b| / max(|b|, floor)``."""
    return float((a.double() - b.double()).norm() / max(float(b.double().norm()), floor))


def worst_parameter(grads, ref_grads) -> float:
    """The largest error of one parameter's gradient, relative to its norm or,
    for the gradients that are 0 in exact arithmetic (a bias followed by
    BatchNorm: rounding noise on both sides), to 1e-3 of the largest norm."""
    floor = 1e-3 * max(float(g.norm()) for g in ref_grads.values())
    return max(rel(grads[k], ref_grads[k], floor) for k in ref_grads if k in grads)


def main(out: str) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank, world = dist.get_rank(), dist.get_world_size()
    report = {}
    for name, sync_bn, shard in CASES:
        case = f"{name} sync-bn={sync_bn} sinkhorn-shard={shard}"
        cfg = config(name, shard)
        loss, grads, stats = distributed(cfg, sync_bn, rank, world)
        losses = [None] * world
        dist.all_gather_object(losses, loss)
        flat = torch.cat([g.flatten() for g in grads.values()])
        every = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(every, flat)
        if rank == 0:
            ref_loss, ref_grads, ref_stats = reference(cfg, sync_bn, world)
            report[case] = {
                "loss": losses,
                "reference_loss": ref_loss,
                "missing": sorted(set(ref_grads) ^ set(grads)),
                "grad_rel_err": worst_parameter(grads, ref_grads),
                "total_grad_rel_err": rel(flat, torch.cat([ref_grads[k].flatten() for k in grads])),
                "ranks_identical": all(torch.equal(e, every[0]) for e in every),
                "running_stats_rel_err": (max(rel(stats[k], ref_stats[k]) for k in ref_stats) if sync_bn else None),
            }
        dist.barrier()
    if rank == 0:
        Path(out).write_text(json.dumps(report, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
