"""A worker rank (every rank but 0): train what the driver announces, until it says stop.

Messages from the driver (:meth:`train.parallel.context.Context.send`):

* ``("train", cfg)``: a pretraining run is starting. Load the data (kept
  for the next run of the same dataset) and build the same trainer as the
  driver (:func:`train.build.build_trainer`; its DistributedDataParallel
  construction meets the driver's);
* ``("state", start_epoch, state)``: train from ``start_epoch`` (with the
  driver's restored model, optimiser, schedule and this rank's generators
  when resuming). Another ``("train", ...)`` instead means the driver gave
  the announced run up before training (a corrupt checkpoint in the paper
  protocol): that run is dropped;
* ``("stop",)``: the command is finished (or was stopped by a signal).

A worker reads no output folder and writes nothing: the data comes from
``--data-dir`` on its own machine, without downloading (the driver
downloads before it announces anything; on several machines each needs its
copy).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from .. import cpu_threads, stopping
from ..build import build_trainer, seed_everything
from ..datasets import ImageData, load_dataset
from ..engine import TrainingDiverged, TrainingStopped
from .context import Context


def load_data(cfg, cache: Dict[Tuple, ImageData]) -> ImageData:
    key = (cfg.dataset, cfg.data_dir, cfg.cache_dir, cfg.image_size)
    if key not in cache:
        cache.clear()  # one dataset at a time, as the driver
        cache[key] = load_dataset(cfg.dataset, cfg.data_dir, cfg.cache_dir, cfg.image_size, download=False,
                                  num_workers=cfg.num_workers)
    return cache[key]


def build(cfg, cache: Dict[Tuple, ImageData], ctx: Context):
    """The trainer the driver builds for ``cfg`` (same seed, same sequence as
    ``train.protocol._run_method``)."""
    data = load_data(cfg, cache)
    cpu_threads.configure(cfg.cpu_threads, cfg.device)
    seed_everything(cfg.seed)
    images = data.with_pretrain_subset(cfg.train_subset, cfg.seed).pretrain.to(torch.device(cfg.device))
    mean, std = data.channel_stats()
    return build_trainer(cfg, images, data.channels, mean, std, job=ctx)


def serve(ctx: Context) -> int:
    """The worker's life: returns its exit status when the driver says stop
    (0, or 128 + the signal when this process was told to stop too)."""
    with stopping.deferred(raise_on_leave=False):
        try:
            _serve(ctx)
        finally:
            cpu_threads.reset()
    signum = stopping.requested()
    return 0 if signum is None else 128 + signum


def _serve(ctx: Context) -> None:
    cache: Dict[Tuple, ImageData] = {}
    message = ctx.receive()
    while message[0] != "stop":
        if message[0] != "train":
            raise RuntimeError(f"{ctx.who()}: expected a run from the driver, got {message[0]!r}")
        trainer = build(message[1], cache, ctx)
        message = ctx.receive()
        if message[0] != "state":
            continue  # the driver gave the announced run up; message is its next one
        _, start_epoch, state = message
        try:
            trainer.fit_with(start_epoch, state)
        except (TrainingDiverged, TrainingStopped):
            pass  # every rank stopped at the same step; the driver reports it
        del trainer
        message = ctx.receive()
