"""The labelled images the probes see: probe-train, validation and test.

Three disjoint sets, fixed for every run of a dataset (their seeds are
constants, not the run's seed), so that every method and seed is probed on
the same images and scores pair up seed by seed:

* **validation**: a stratified random ``--val-fraction`` of the labelled
  train split (``sklearn.model_selection.train_test_split``, seed
  :data:`VAL_SEED`). Every choice (SinSim's variant, lambda, eps, probe
  settings) is made on it; no probe ever trains on it.
* **probe-train**: the rest of the labelled train split (or a fixed random
  ``--probe-train-subset`` of it, seed :data:`SUBSET_SEED`): what the linear
  and MLP probes fit and kNN's memory bank.
* **test**: the test split (or a fixed random ``--probe-test-subset`` of it,
  seed :data:`SUBSET_SEED`): the final numbers only.

Pretraining is self-supervised and sees the train split's images without
labels, validation ones included (as in the published protocols); it never
sees a test image (STL-10 adds its unlabeled split).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from sklearn.model_selection import train_test_split

VAL_SEED = 0
SUBSET_SEED = 0


@dataclass(frozen=True)
class Split:
    images: torch.Tensor
    labels: torch.Tensor
    indices: np.ndarray  # into the dataset's train split (probe-train, validation) or test split

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class ProbeSplits:
    train: Split
    val: Optional[Split]  # None with --val-fraction 0
    test: Split

    def budget(self) -> Dict[str, int]:
        """Image counts, for ``results.json``."""
        return {"probe_train_images": len(self.train), "val_images": len(self.val) if self.val else 0,
                "probe_test_images": len(self.test)}


def validation_indices(labels, fraction: float, seed: int = VAL_SEED) -> np.ndarray:
    """Sorted indices of a stratified random ``fraction`` of the labelled
    train split (at least one image; unstratified when a class has fewer
    than two images)."""
    if not 0 < fraction < 1:
        raise ValueError(f"val fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    n = len(labels)
    size = max(1, int(round(fraction * n)))
    if size >= n:
        raise ValueError(f"a validation fraction of {fraction} leaves no probe-train image of {n}")
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 and size >= len(counts[counts > 0]) else None
    _, val = train_test_split(np.arange(n), test_size=size, stratify=stratify, random_state=seed)
    return np.sort(val)


def _subset(indices: np.ndarray, k: Optional[int], seed: int = SUBSET_SEED) -> np.ndarray:
    if k is None or k >= len(indices):
        return indices
    return np.sort(indices[np.random.default_rng(seed).permutation(len(indices))[:k]])


def _take(images: torch.Tensor, labels: torch.Tensor, indices: np.ndarray) -> Split:
    idx = torch.from_numpy(indices)
    return Split(images[idx], labels[idx], indices)


def probe_splits(data, val_fraction: float, train_subset: Optional[int] = None,
                 test_subset: Optional[int] = None) -> ProbeSplits:
    """The three sets of ``data`` (an :class:`~train.datasets.ImageData`)."""
    n_train = len(data.train_labels)
    val = validation_indices(data.train_labels.numpy(), val_fraction) if val_fraction > 0 else np.array([], int)
    rest = np.setdiff1d(np.arange(n_train), val, assume_unique=True)
    train = _subset(rest, train_subset)
    # the test subset is drawn as train.datasets.ImageData.with_labelled_subset always drew it
    test = np.arange(len(data.test_labels))
    if test_subset is not None and test_subset < len(test):
        test = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(test))[:test_subset])
    return ProbeSplits(
        train=_take(data.train_images, data.train_labels, train),
        val=_take(data.train_images, data.train_labels, val) if len(val) else None,
        test=_take(data.test_images, data.test_labels, test),
    )
