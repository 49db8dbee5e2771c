r"""A method made data-parallel: global-batch losses, global BatchNorm, DDP.

The gradient convention, and why it is exact. Let ``L`` be the loss of the
global batch of ``B`` images, spread over ``W`` processes (``B/W`` each), and
``z_r`` the outputs of rank r's shard. Every rank all-gathers the outputs
with :func:`torch.distributed.nn.functional.all_gather` and computes ``L``
itself (the same number on every rank). Backward on rank r gives
``dL/dz_q`` for every shard q; the all-gather's backward sums, over the
ranks, the gradient each computed for rank r's shard, so ``z_r`` receives
``W dL/dz_r`` and rank r's parameters ``W (dL/dz_r)(dz_r/dtheta)``.
DistributedDataParallel averages over the ranks:
``(1/W) sum_r W (dL/dz_r)(dz_r/dtheta) = dL/dtheta``, exactly the gradient
of one process on the whole batch (given the same BatchNorm statistics:
``--sync-bn``). Every piece of the loss keeps that convention:

* NT-Xent, VICReg, Barlow Twins, BYOL: all-gather of the outputs with
  gradient (BYOL's loss is a mean over images; gathering it keeps the same
  convention and gives every rank the same loss to log and to check);
* global BatchNorm (:mod:`.batchnorm`): an all-gather of the statistics with
  gradient, or torch's SyncBatchNorm, whose backward sums the same way;
* a method's own distributed pieces (:meth:`train.methods.base.Method.distribute`;
  SinSim's Sinkhorn term is either gathered like the rest, or row-sharded,
  :func:`sinsim_ext.distributed.sharded_sinkhorn_cost`, whose gradient is by
  construction that of the gathered computation) keep the same convention.

Without ``--sync-bn`` each rank normalises its own ``B/W`` images (per-rank
BatchNorm, as plain DistributedDataParallel does); the gradient is then
exactly that of one process running the W shards through the network one
after the other and computing the loss on their joint outputs.
"""

from __future__ import annotations

import warnings
from typing import Tuple

import torch
import torch.distributed.nn.functional as dist_nn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .batchnorm import convert_sync_batchnorm

# torch 2.9+ marks torch.distributed.nn.functional deprecated in favour of the private
# torch.distributed._functional_collectives; the public one is what this code relies on.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated",
                        category=FutureWarning)

class GatheredBatch:
    """All-gathers per-image outputs over the processes, with gradient."""

    def __init__(self, group=None):
        self.group = group

    def gather(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Each ``(b, ...)`` tensor becomes the ``(W b, ...)`` global one (rank
        order). Tensors of one dtype and row count travel in one all-gather."""
        out = list(tensors)
        groups = {}
        for i, t in enumerate(tensors):
            groups.setdefault((t.dtype, t.shape[0], t.device), []).append(i)
        for members in groups.values():
            flat = torch.cat([tensors[i].reshape(tensors[i].shape[0], -1) for i in members], dim=1)
            every = torch.cat(dist_nn.all_gather(flat.contiguous(), group=self.group))
            widths = [tensors[i][0].numel() for i in members]
            for i, part in zip(members, every.split(widths, dim=1)):
                out[i] = part.reshape(every.shape[0], *tensors[i].shape[1:])
        return tuple(out)


class TrainingStep(nn.Module):
    """The method's training step as a module's ``forward``: what
    DistributedDataParallel wraps (it synchronises the gradients of what its
    forward ran, and broadcasts rank 0's BatchNorm buffers before each)."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        return self.method.training_step(x1, x2)


def make_data_parallel(method: nn.Module, device: torch.device, *, sync_bn: bool, global_batch: int,
                       local_rank: int) -> DistributedDataParallel:
    """Turn ``method`` (on ``device``, the same initial weights on every rank)
    into its data-parallel training step, in place: global BatchNorm with
    ``sync_bn``, gathered outputs and the method's own distributed pieces
    (:meth:`~train.methods.base.Method.distribute`); returns the DDP module
    whose call is the step."""
    if sync_bn:
        converted = convert_sync_batchnorm(method, device)
        if converted is not method:
            raise RuntimeError("convert_sync_batchnorm replaced the method itself")
    method.distribute(GatheredBatch(), global_batch)
    if device.type == "cuda":
        method.to(memory_format=torch.channels_last)  # before DDP takes the parameters' layout
    return DistributedDataParallel(TrainingStep(method), device_ids=[local_rank] if device.type == "cuda" else None)

