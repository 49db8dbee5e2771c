"""The test-set features of the figure methods' cells, saved for figure 1.

Every run measures its own geometry (alignment, uniformity, effective rank,
silhouette) once, into ``results.json["geometry"]`` (:mod:`train.embedding`).
The cells that figure 1 draws (SimCLR, SinSim, VICReg) also keep the features
of that same fixed test subsample in ``embedding.npz`` (``features``
float32, ``labels``, ``indices`` into the test split, ``classes``), which
:mod:`.figures` maps to 2-D later, from the file alone. The features are
those of the cell's final checkpoint (the untrained encoder of the run's
seed for ``random-init``), the un-augmented images, as the probes see them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from torch import nn

from ..augment import TwoViews, view_specs
from ..checkpoint import atomic_write_bytes, load_checkpoint
from ..config import Config
from ..datasets import ImageData
from ..embedding import subsample
from ..evaluate import extract_features
from ..models import resnet18_encoder
from ..protocol import CHECKPOINT, seed_everything
from .cells import RANDOM_INIT, Cell

EMBEDDING_NPZ = "embedding.npz"
EMBEDDING_JSON = "embedding.json"  # written by older code: its geometry numbers (the report still reads them)


def trained_encoder(cfg: Config, cell: Cell, channels: int) -> Tuple[nn.Module, int]:
    """``(encoder, epochs trained)``: the cell's checkpointed backbone, or
    the seed's random init."""
    if cell.method == RANDOM_INIT:
        seed_everything(cfg.seed)  # as train.protocol.random_init_reference
        return resnet18_encoder(channels, cfg.image_size)[0], 0
    encoder, _ = resnet18_encoder(channels, cfg.image_size)
    state = load_checkpoint(Path(cfg.out) / CHECKPOINT, cfg.training_signature())
    if state is None:
        raise FileNotFoundError(f"{Path(cfg.out) / CHECKPOINT} is missing: cannot embed a finished cell without it")
    prefix = "backbone."
    encoder.load_state_dict({k[len(prefix):]: v for k, v in state["method"].items() if k.startswith(prefix)})
    return encoder, state["epoch"]


def save_features(cfg: Config, cell: Cell, data: ImageData) -> Path:
    """Write the cell's ``embedding.npz`` (the subsample of ``--geometry-points``
    test images its geometry was measured on)."""
    device = torch.device(cfg.device)
    encoder, _ = trained_encoder(cfg, cell, data.channels)
    idx = subsample(len(data.test_images), cfg.geometry_points)
    mean, std = data.channel_stats()
    plain = TwoViews(view_specs("simclr", cfg.image_size), mean, std).plain
    features = extract_features(encoder.to(device), data.test_images[torch.from_numpy(idx)], plain,
                                precision=cfg.precision).cpu().numpy().astype(np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=features, labels=data.test_labels[torch.from_numpy(idx)].numpy(),
                        indices=idx, classes=np.asarray(data.classes))
    path = Path(cfg.out) / EMBEDDING_NPZ
    atomic_write_bytes(path, buffer.getvalue())
    return path
