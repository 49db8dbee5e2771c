"""The frozen encoder of a finished run, and its features of a fixed subsample of test images.

What figure-drawing and analysis code outside the trainer needs from a run:
the encoder of its final checkpoint (or, for the untrained floor, the encoder
its seed initialises) and its features ``h`` of the un-augmented images, as
the probes see them, on the fixed test subsample of ``--geometry-points``
images (:func:`train.embedding.subsample`, seed 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from torch import nn

from .augment import plain_input
from .build import seed_everything
from .checkpoint import load_checkpoint
from .config import Config
from .datasets import ImageData
from .embedding import subsample
from .evaluate import extract_features
from .models import resnet18_encoder
from .protocol import CHECKPOINT


def trained_encoder(cfg: Config, channels: int, untrained: bool = False) -> Tuple[nn.Module, int]:
    """``(encoder, epochs trained)``: the backbone of the run's final
    checkpoint in ``cfg.out`` (checked against ``cfg``'s training settings),
    or with ``untrained`` the encoder the run's seed initialises (as
    :func:`train.protocol.random_init_reference` builds it)."""
    if untrained:
        seed_everything(cfg.seed)
        return resnet18_encoder(channels, cfg.image_size)[0], 0
    encoder, _ = resnet18_encoder(channels, cfg.image_size)
    state = load_checkpoint(Path(cfg.out) / CHECKPOINT, cfg.training_signature())
    if state is None:
        raise FileNotFoundError(f"{Path(cfg.out) / CHECKPOINT} is missing: cannot embed a finished run without it")
    prefix = "backbone."
    encoder.load_state_dict({k[len(prefix):]: v for k, v in state["method"].items() if k.startswith(prefix)})
    return encoder, state["epoch"]


def test_features(cfg: Config, data: ImageData, untrained: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(features, labels, indices)`` of the run's encoder (:func:`trained_encoder`)
    on ``cfg.geometry_points`` test images of ``data`` (a fixed random
    subsample, seed 0): float32 ``(points, d)`` features, their labels and
    their indices into the test split."""
    device = torch.device(cfg.device)
    encoder, _ = trained_encoder(cfg, data.channels, untrained)
    idx = subsample(len(data.test_images), cfg.geometry_points)
    mean, std = data.channel_stats()
    features = extract_features(encoder.to(device), data.test_images[torch.from_numpy(idx)], plain_input(mean, std),
                                precision=cfg.precision).cpu().numpy().astype(np.float32)
    return features, data.test_labels[torch.from_numpy(idx)].numpy(), idx
