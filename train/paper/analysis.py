"""A finished cell's test-set embedding: the geometry numbers and, for the
figure methods, the features themselves.

What is measured (the same for every cell of a dataset, so cells compare):

* the points: a fixed random subsample of the test split (``--embedding-points``,
  NumPy generator seed 0; all of it when smaller);
* the features: the frozen encoder's ``h`` (the probes' input) of the
  un-augmented images, from the cell's final checkpoint (the untrained
  encoder of the run's seed for ``random-init``);
* uniformity and silhouette on those features, alignment on two augmented
  views of the same images, drawn with the SimCLR recipe from a generator
  seeded 0 (identical views for every method). See :mod:`.geometry`.

Writes ``embedding.json`` (the numbers) and, when asked, ``embedding.npz``
(``features`` float32, ``labels``, ``indices`` into the test split) for the
t-SNE / UMAP figure, which :mod:`.figures` draws later from the file alone.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch
from torch import nn

from ..augment import TwoViews, view_specs
from ..checkpoint import atomic_write_bytes, atomic_write_json, load_checkpoint
from ..config import Config
from ..datasets import DATASETS, ImageData
from ..evaluate import extract_features
from ..models import resnet18_encoder
from ..protocol import CHECKPOINT, seed_everything
from . import geometry
from .cells import RANDOM_INIT, Cell

EMBEDDING_JSON = "embedding.json"
EMBEDDING_NPZ = "embedding.npz"
SUBSAMPLE_SEED = 0
VIEWS_SEED = 0


def subsample(n: int, k: int) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` items (all when ``k >= n``), seed 0."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(SUBSAMPLE_SEED).permutation(n)[:k])


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


def analyse_cell(cfg: Config, cell: Cell, data: ImageData, points: int, save_features: bool) -> Dict:
    """Measure the cell's embedding and write ``embedding.json`` (+ ``.npz``)."""
    out = Path(cfg.out)
    device = torch.device(cfg.device)
    encoder, epoch = trained_encoder(cfg, cell, data.channels)
    encoder = encoder.to(device)
    idx = subsample(len(data.test_images), points)
    images, labels = data.test_images[torch.from_numpy(idx)], data.test_labels[torch.from_numpy(idx)].numpy()
    mean, std = data.channel_stats()
    spec = DATASETS[cfg.dataset]
    views = TwoViews(view_specs("simclr", cfg.image_size, spec.hflip, spec.crop_min_scale), mean, std)
    gen = torch.Generator(device=device).manual_seed(VIEWS_SEED)

    def view(k):
        aug = views.views[k]
        return lambda part: aug.apply(part, aug.sample(part, gen), views.stats(part.device))

    features = extract_features(encoder, images, views.plain, precision=cfg.precision).cpu()
    v1 = extract_features(encoder, images, view(0), precision=cfg.precision).cpu()
    v2 = extract_features(encoder, images, view(1), precision=cfg.precision).cpu()
    record = {
        "cell": cell.name,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "alignment": round(geometry.alignment(v1, v2), 6),
        "uniformity": round(geometry.uniformity(features), 6),
        "silhouette": round(geometry.silhouette(features, labels), 6),
        "points": len(idx),
        "test_images": len(data.test_images),
        "subsample_seed": SUBSAMPLE_SEED,
        "features": f"frozen encoder features h ({features.shape[1]}-d), L2-normalised",
        "alignment_views": f"SimCLR augmentation recipe, generator seed {VIEWS_SEED}",
        "checkpoint_epoch": epoch,
    }
    if save_features:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, features=features.numpy().astype(np.float32), labels=labels, indices=idx,
                            classes=np.asarray(data.classes))
        atomic_write_bytes(out / EMBEDDING_NPZ, buffer.getvalue())
    atomic_write_json(out / EMBEDDING_JSON, record)
    return record
