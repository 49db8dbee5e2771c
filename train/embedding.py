"""The geometry of a run's encoder, measured once at the end of every run.

What is measured (the same for every run of a dataset, so runs compare):

* the points: a fixed random subsample (``--geometry-points``, NumPy
  generator seed :data:`SUBSAMPLE_SEED`; all of it when smaller) of the
  validation split when the run has one (so nothing is read off the test
  images, which only give final numbers), else of the test split; the
  record's ``split`` says which. No label is used except by the silhouette;
* the features: the frozen encoder's ``h`` (the probes' input) of the
  un-augmented images;
* uniformity, effective rank and silhouette on those features, their centred
  uniformity, centred effective rank and mean offset ratio (which tell
  collapse from a common offset), alignment on two augmented views of the
  same images, drawn with the SimCLR recipe from a generator seeded
  :data:`VIEWS_SEED` (identical views for every method). The formulas and
  their papers: :mod:`train.geometry`.

:func:`measure` returns the record stored as ``results.json["geometry"]`` and
the features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from . import geometry
from .augment import TwoViews, view_specs
from .catalog import METHOD_RECIPES
from .datasets import DATASETS, ImageData
from .evaluate import extract_features
from .progress import NO_PROGRESS, EvalProgress

SUBSAMPLE_SEED = 0
VIEWS_SEED = 0
#: The augmentations alignment is measured with: the same for every method, so runs compare.
ALIGNMENT_VIEWS = "simclr"
GEOMETRY_KEYS = ("alignment", "uniformity", "effective_rank", "silhouette", "uniformity_centred",
                 "effective_rank_centred", "mean_offset_ratio")


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
    indices: np.ndarray  # into the split measured (the record's "split")


def _centred_rank(features) -> Optional[float]:
    try:
        return round(geometry.centred_effective_rank(features), 4)
    except ValueError:  # every row the same: no spread to take a rank of
        return None


def measure(encoder: nn.Module, data: ImageData, dataset: str, image_size: int, points: int,
            precision: str = "fp32", validation=None, progress: EvalProgress = NO_PROGRESS) -> Embedding:
    """The geometry of ``encoder``'s features (on its device) on ``points``
    images: of ``validation`` (a :class:`train.splits.Split`) when given,
    else of ``data``'s test split."""
    device = next(encoder.parameters()).device
    split_name = "validation" if validation is not None else "test"
    pool_images = validation.images if validation is not None else data.test_images
    pool_labels = validation.labels if validation is not None else data.test_labels
    idx = subsample(len(pool_images), points)
    images, labels = pool_images[torch.from_numpy(idx)], pool_labels[torch.from_numpy(idx)].numpy()
    mean, std = data.channel_stats()
    spec = DATASETS[dataset]
    views = TwoViews(view_specs(ALIGNMENT_VIEWS, image_size, spec.hflip, spec.crop_min_scale), mean, std)
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
        "uniformity_centred": round(geometry.centred_uniformity(features), 6),
        "effective_rank_centred": _centred_rank(features),
        "mean_offset_ratio": round(geometry.mean_offset_ratio(features), 6),
        "feature_dim": int(features.shape[1]),
        "points": len(idx),
        "split": split_name,
        "split_images": len(pool_images),
        "subsample_seed": SUBSAMPLE_SEED,
        "features": f"frozen encoder features h ({features.shape[1]}-d); alignment, uniformity and silhouette "
                    "L2-normalised, effective rank raw; the centred ones after subtracting the mean feature",
        "alignment_views": f"{METHOD_RECIPES[ALIGNMENT_VIEWS].title} augmentation recipe, generator seed {VIEWS_SEED}",
    }
    return Embedding(record, features.numpy().astype(np.float32), labels, idx)
