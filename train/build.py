"""A pretraining run's parts: the method, its augmentations, the optimiser, the schedule, the trainer.

:func:`build_trainer` is the one place they are put together, by the
protocol (:mod:`train.protocol`) and, under torchrun, by every worker
(:mod:`train.parallel.worker`), so all ranks build the same run from the same
config and seed.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .augment import TwoViews, view_specs
from .config import Config
from .datasets import DATASETS
from .engine import Trainer
from .methods import METHODS
from .models import resnet18_encoder
from .optim import build_optimizer, build_scheduler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _configure_backends(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")


def build_trainer(cfg: Config, images: torch.Tensor, channels: int, mean, std, job=None) -> Trainer:
    """The method, augmentations, optimiser, schedule and generator of a run
    on the uint8 ``images`` (already on ``cfg.device``), ready to train.
    ``job``: the torchrun job this process is part of
    (:class:`train.parallel.context.Context`), which builds this rank's
    data-parallel trainer from the same parts; None in one process."""
    device = torch.device(cfg.device)
    _configure_backends(device)
    backbone, feature_dim = resnet18_encoder(channels, cfg.image_size)
    method = METHODS[cfg.method](backbone, feature_dim, cfg).to(device)
    spec = DATASETS[cfg.dataset]
    views = TwoViews(view_specs(cfg.method, cfg.image_size, spec.hflip, spec.crop_min_scale), mean, std)
    batch_size = min(cfg.batch_size, len(images))
    steps_per_epoch = len(images) // batch_size
    optimizer = build_optimizer(cfg.optimizer, method.trainable(), cfg.lr * batch_size / 256, cfg.weight_decay,
                                cfg.momentum, cfg.bias_lr_scale)
    scheduler = build_scheduler(optimizer, steps_per_epoch * cfg.epochs, round(cfg.warmup_epochs * steps_per_epoch))
    options = dict(precision=cfg.precision, compile=cfg.compile, check_every=cfg.check_every,
                   progress_every=cfg.progress_every, label=cfg.method)
    if job is not None:
        return job.make_trainer(cfg, method, images, views, optimizer, scheduler, batch_size, **options)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    return Trainer(method, images, views, optimizer, scheduler, batch_size=batch_size, epochs=cfg.epochs,
                   generator=generator, **options)
