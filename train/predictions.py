"""Every probed image's predicted class, kept per run as ``predictions.npz``.

Accuracies averaged over seeds hide the test set's own sampling error: every
run is scored on the same test images, so a difference between two methods
carries the error of that one sample of images, which no number of seeds
averages out (about 0.4-0.5 points on a paired difference at 10,000 images).
With the predictions kept image by image, a comparison can resample the
images too (:mod:`train.campaign.stats`: the paired bootstrap over seeds and
images, McNemar's test per seed).

The file holds, for each evaluated split ``s`` ("test", and "val" when the
run had a validation split): ``s_indices`` (the images' indices into the
dataset's split, the same for every run of a dataset with the same probe
settings), ``s_labels`` and ``s_linear``, ``s_mlp``, ``s_knn`` (the probes'
predicted classes), all int32. It is small (about 200 KB for CIFAR-10's
10,000 test and 5,000 validation images) and committed with a run's results.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .storage import atomic_write_bytes

PREDICTIONS = "predictions.npz"
PROBES = ("linear", "mlp", "knn")


def write_predictions(folder, predictions: Dict[str, Dict[str, np.ndarray]], splits) -> Path:
    """Write ``folder/predictions.npz`` from :func:`train.evaluate.evaluate_encoder`'s
    ``predictions`` and the :class:`train.splits.ProbeSplits` they were made on."""
    arrays = {}
    for name, by_probe in predictions.items():
        split = getattr(splits, name)
        arrays[f"{name}_indices"] = np.asarray(split.indices, dtype=np.int32)
        arrays[f"{name}_labels"] = split.labels.cpu().numpy().astype(np.int32)
        for probe in PROBES:
            pred = np.asarray(by_probe[probe], dtype=np.int32)
            if pred.shape != arrays[f"{name}_labels"].shape:
                raise ValueError(f"{probe} predictions on {name}: {pred.shape[0]} for {len(split)} images")
            arrays[f"{name}_{probe}"] = pred
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path = Path(folder) / PREDICTIONS
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_predictions(folder) -> Optional[Dict[str, np.ndarray]]:
    """The arrays of ``folder/predictions.npz``, or None when it is absent."""
    path = Path(folder) / PREDICTIONS
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def correct(arrays: Dict[str, np.ndarray], split: str, probe: str) -> np.ndarray:
    """Boolean array: was each image of ``split`` classified right by ``probe``."""
    return arrays[f"{split}_{probe}"] == arrays[f"{split}_labels"]
