"""Data-parallel training under ``torchrun``: the processes, the model, the data, the writer.

``torchrun --nproc-per-node N train/run.py ...`` starts N copies of the
trainer; ``WORLD_SIZE > 1`` in their environment switches this package on
(:func:`launch.run_distributed`). A plain ``python train/run.py`` never
touches it and runs exactly as before.

Roles. Rank 0 is the **driver**: it runs the whole protocol as one process
does (folder lock, checkpoints, metrics, evaluation, results, reports, the
paper grid) and is the only process that reads or writes the output folder.
The other ranks are **workers** (:mod:`.worker`): they wait for the driver
to announce a pretraining run, train it with the driver, and wait again. So
every decision that depends on files (resume or not, a finished cell) is the
driver's, and a job on several machines needs no shared file system for its
outputs.

A pretraining run (:mod:`.trainer`, :mod:`.model`):

* every rank holds the whole uint8 pretraining set on its device (as one
  process does) and trains on its shard of each global batch: the epoch's
  permutation is drawn from the run's seed on every rank (the same on all),
  and rank r takes rows ``[r B/W, (r+1) B/W)`` of each global batch of
  ``--batch-size B``;
* its augmentations come from its own generator, seeded from (seed, rank);
* the method's per-image outputs are all-gathered with gradient and every
  rank computes the loss of the whole global batch; DistributedDataParallel
  averages the gradients, which gives exactly the one-process gradient
  (see :mod:`.model`);
* ``--sync-bn``: BatchNorm statistics of the global batch;
* SinSim's Sinkhorn term: the gathered solve, or the row-sharded one
  (:mod:`sinsim_ext.distributed`, ``--sinkhorn-shard``).

The process group and this rank's place in it: :func:`.context.current`
(None in one process). This package's ``__init__`` imports no torch, so
``train/run.py`` can ask :func:`torchrun_world_size` before parsing finishes.
"""

from __future__ import annotations

from .env import torchrun_world_size

__all__ = ["torchrun_world_size"]
