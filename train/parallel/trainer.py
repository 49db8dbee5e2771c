"""A pretraining run on every rank of the job: data, randomness, the step, the checkpoint's part.

:func:`make_trainer` is what :func:`train.build.build_trainer` returns under
torchrun. On the driver it first announces the run to the workers (they
build the same trainer: :mod:`.worker`), then every rank wraps the method
(:func:`.model.make_data_parallel`: DistributedDataParallel's construction is
the first collective of the run).

* **Batch**: ``--batch-size B`` is the global batch; rank r trains on rows
  ``[r B/W, (r+1) B/W)`` of each (``B`` must be divisible by ``W``). The
  learning rate scales with ``B`` (per 256 images), as in one process.
* **Data order**: each epoch's permutation comes from a generator seeded with
  the run's seed, the same on every rank (so the shards never overlap and
  together cover the batch), kept apart from the augmentations.
* **Augmentations**: rank r's generator is seeded from ``(seed, r)``
  (:func:`augment_seed`), so a run is reproducible for a given world size
  (a different number of processes draws other augmentations).
* **Checkpoint**: after every epoch the ranks' generator states are gathered
  to the driver, which saves them with the rest (``trainer.rank_generators``);
  on resume the driver sends each worker the restored model, optimiser,
  schedule and its own generator states, so every rank continues exactly.
* **Stopping**: the divergence checks read the loss and the first non-finite
  step reduced over the ranks, so every rank stops at the same step. A stop
  signal (:mod:`train.stopping`) is reduced there too: when any rank got
  one, every rank stops before the step after that check, the ranks'
  generator states are gathered as at an epoch's end, and the driver saves
  the checkpoint.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist

from .. import stopping
from ..engine import EpochStats, Trainer, TrainingDiverged, TrainingStopped
from ..errors import RunError, TrainerError
from .context import Context
from .model import make_data_parallel


class JobAborted(TrainerError):
    """The driver left a pretraining run the workers are still in: the job
    cannot go on in step, so the whole command stops."""


def augment_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s augmentation generator: a 64-bit number
    from NumPy's SeedSequence of ``(seed, rank)`` (independent streams per rank)."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint64)[0])


class DistributedTrainer(Trainer):
    """:class:`train.engine.Trainer` on one rank of the job."""

    def __init__(self, *args, ctx: Context, **kwargs):
        super().__init__(*args, **kwargs)
        self.ctx = ctx
        self.rank_generators: Optional[List[Dict[str, torch.Tensor]]] = None
        self.agreed_stop: Optional[int] = None  # the stop signal every rank honours, decided at a check

    # ---------------------------------------------------------------- checkpoint part

    def train_epoch(self, epoch: int, first_step: int) -> EpochStats:
        try:
            stats = super().train_epoch(epoch, first_step)
        except TrainingStopped:
            self._gather_generators()
            raise
        self._gather_generators()
        return stats

    def _gather_generators(self) -> None:
        mine = {name: g.get_state() for name, g in self.generators.items()}
        every: List = [None] * self.ctx.world
        dist.all_gather_object(every, mine, group=self.ctx.control)
        self.rank_generators = every

    def state_dict(self) -> Dict:
        return {**super().state_dict(), "world_size": self.ctx.world, "rank_generators": self.rank_generators}

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        every = state.get("rank_generators")
        if every is None:
            return
        if len(every) != self.ctx.world:
            raise RunError(f"the checkpoint holds the generators of {len(every)} processes, this job has "
                           f"{self.ctx.world}; resume with the same number of processes")
        self.rank_generators = every
        for name, g in self.generators.items():
            g.set_state(every[self.ctx.rank][name])

    # ---------------------------------------------------------------- the same decision everywhere

    def stop_requested(self) -> Optional[int]:
        return self.agreed_stop

    def _check(self, loss_sum, first_bad, window, done, step, epoch, worst=None, limits=None, epoch_worst=None):
        loss_sum = loss_sum.detach().clone()
        dist.all_reduce(loss_sum)
        signum = stopping.requested()
        flags = torch.stack([first_bad, torch.full_like(first_bad, -1 if signum is None else signum)])
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        first_bad = flags[0]
        agreed = int(flags[1])
        self.agreed_stop = None if agreed < 0 else agreed
        if worst:  # convergence reports: the worst over the processes, so every rank warns alike
            names = list(worst)
            stacked = torch.stack([worst[k].detach().float().reshape(()) for k in names])
            dist.all_reduce(stacked, op=dist.ReduceOp.MAX)
            worst = dict(zip(names, stacked.unbind()))
        return super()._check(loss_sum / self.ctx.world, first_bad, window, done, step, epoch, worst, limits,
                              epoch_worst)

    # ---------------------------------------------------------------- the run

    def fit(self, start_epoch: int, on_epoch_end: Callable[[EpochStats], None]) -> List[EpochStats]:
        """On the driver: send the workers where to start (and, when resuming,
        the restored state), then train with them. Workers call
        :meth:`fit_with` after receiving that message."""
        if not self.ctx.is_driver:
            raise RuntimeError("workers start training with fit_with()")
        state = None
        if start_epoch > 0:
            state = {"method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "trainer": self.state_dict()}
        self.ctx.send(("state", start_epoch, state))
        self.ctx.job_open = True  # until the workers are out of this run with us
        try:
            stats = super().fit(start_epoch, on_epoch_end)
        except (TrainingDiverged, TrainingStopped):
            self.ctx.job_open = False  # every rank stopped at the same step
            raise
        except RunError as exc:  # the paper protocol would go on to the next cell without the workers
            raise JobAborted(f"{exc} (the other processes were still in this run, so the whole job stops)") from exc
        self.ctx.job_open = False
        return stats

    def fit_with(self, start_epoch: int, state: Optional[Dict]) -> None:
        """A worker's side of :meth:`fit`: load the driver's state, train."""
        if state is not None:
            self.method.load_state_dict(state["method"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.load_state_dict(state["trainer"])
        super().fit(start_epoch, lambda stats: None)


def make_trainer(ctx: Context, cfg, method, images, views, optimizer, scheduler, batch_size: int,
                 **trainer_options) -> DistributedTrainer:
    """The rank's trainer for ``cfg`` (see the module docstring)."""
    if batch_size % ctx.world or batch_size // ctx.world < 2:  # decided alike on every rank, before announcing
        raise RunError(f"{cfg.method}: a global batch of {batch_size} images cannot be split over {ctx.world} "
                       f"processes into equal shards of 2 or more; use a --batch-size divisible by {ctx.world} "
                       f"and at least {2 * ctx.world}")
    if ctx.is_driver:
        ctx.send(("train", cfg))
    device = images.device
    shard = batch_size // ctx.world
    step = make_data_parallel(method, device, sync_bn=cfg.sync_bn, global_batch=batch_size,
                              local_rank=ctx.local_rank)
    order = torch.Generator(device=device).manual_seed(cfg.seed)
    augment = torch.Generator(device=device).manual_seed(augment_seed(cfg.seed, ctx.rank))
    if not ctx.is_driver:
        trainer_options.update(progress=False, progress_every=0.0)
    return DistributedTrainer(method, images, views, optimizer, scheduler, batch_size=batch_size, epochs=cfg.epochs,
                              generator=augment, order_generator=order, step=step,
                              rows=slice(ctx.rank * shard, (ctx.rank + 1) * shard), ctx=ctx, **trainer_options)
