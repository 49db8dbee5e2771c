"""The geometry of a run's encoder, measured once at the end of every run.

What is measured (the same for every run of a dataset, so runs compare):

* the points: a fixed random subsample of the test split (``--geometry-points``,
  NumPy generator seed :data:`SUBSAMPLE_SEED`; all of it when smaller). No
  label is used except by the silhouette;
* the features: the frozen encoder's ``h`` (the probes' input) of the
  un-augmented images;
* uniformity, effective rank and silhouette on those features, alignment on
  two augmented views of the same images, drawn with the SimCLR recipe from
  a generator seeded :data:`VIEWS_SEED` (identical views for every method).
  The formulas and their papers: :mod:`train.geometry`.

:func:`measure` returns the record stored as ``results.json["geometry"]`` and
the features, which the paper protocol saves for its t-SNE / UMAP figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np
import torch
from torch import nn

from . import geometry
from .augment import TwoViews, view_specs
from .datasets import DATASETS, ImageData
from .evaluate import extract_features
from .progress import NO_PROGRESS, EvalProgress

SUBSAMPLE_SEED = 0
VIEWS_SEED = 0
GEOMETRY_KEYS = ("alignment", "uniformity", "effective_rank", "silhouette")


def subsample(n: int, k: int) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` items (all when ``k >= n``), seed 0."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(SUBSAMPLE_SEED).permutation(n)[:k])


@dataclass
class Embedding:
    record: Dict  # the numbers (results.json "geometry")
    features: np.ndarray  # (points, d) float32, the un-augmented images' h
    labels: np.ndarray
    indices: np.ndarray  # into the test split


def measure(encoder: nn.Module, data: ImageData, dataset: str, image_size: int, points: int,
            precision: str = "fp32", progress: EvalProgress = NO_PROGRESS) -> Embedding:
    """Alignment, uniformity, effective rank and silhouette of ``encoder``
    (on its device) on ``points`` test images of ``data``."""
    device = next(encoder.parameters()).device
    idx = subsample(len(data.test_images), points)
    images, labels = data.test_images[torch.from_numpy(idx)], data.test_labels[torch.from_numpy(idx)].numpy()
    mean, std = data.channel_stats()
    spec = DATASETS[dataset]
    views = TwoViews(view_specs("simclr", image_size, spec.hflip, spec.crop_min_scale), mean, std)
    gen = torch.Generator(device=device).manual_seed(VIEWS_SEED)

    def view(k):
        aug = views.views[k]
        return lambda part: aug.apply(part, aug.sample(part, gen), views.stats(part.device))

    def features_of(to_input, what):
        return extract_features(encoder, images, to_input, precision=precision, progress=progress,
                                what=f"geometry's {what}").cpu()

    features = features_of(views.plain, "images")
    v1 = features_of(view(0), "first views")
    v2 = features_of(view(1), "second views")
    classes = len(np.unique(labels))
    record = {
        "alignment": round(geometry.alignment(v1, v2), 6),
        "uniformity": round(geometry.uniformity(features), 6),
        "effective_rank": round(geometry.effective_rank(features), 4),
        "silhouette": round(geometry.silhouette(features, labels), 6) if 2 <= classes < len(idx) else None,
        "feature_dim": int(features.shape[1]),
        "points": len(idx),
        "test_images": len(data.test_images),
        "subsample_seed": SUBSAMPLE_SEED,
        "features": f"frozen encoder features h ({features.shape[1]}-d); alignment, uniformity and silhouette "
                    "L2-normalised, effective rank raw",
        "alignment_views": f"SimCLR augmentation recipe, generator seed {VIEWS_SEED}",
    }
    return Embedding(record, features.numpy().astype(np.float32), labels, idx)
