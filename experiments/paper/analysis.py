"""The test-set features of the figure methods' cells, saved for figure 1.

Every run measures its own geometry (alignment, uniformity, effective rank,
silhouette) once, into ``results.json["geometry"]`` (the trainer's
``train/embedding.py``). The cells that figure 1 draws (SimCLR, SinSim,
VICReg) also keep the features of that same fixed test subsample in
``embedding.npz`` (``features`` float32, ``labels``, ``indices`` into the test
split, ``classes``), which :mod:`.figures` maps to 2-D later, from the file
alone. The features are those of the cell's final checkpoint (the untrained
encoder of the run's seed for ``random-init``), the un-augmented images, as
the probes see them (:func:`train.test_features`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from train import Config, ImageData, atomic_write_bytes, test_features

from .cells import RANDOM_INIT, Cell

EMBEDDING_NPZ = "embedding.npz"


def save_features(cfg: Config, cell: Cell, data: ImageData) -> Path:
    """Write the cell's ``embedding.npz`` (the subsample of ``--geometry-points``
    test images its geometry was measured on)."""
    features, labels, idx = test_features(cfg, data, untrained=cell.method == RANDOM_INIT)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=features, labels=labels, indices=idx, classes=np.asarray(data.classes))
    path = Path(cfg.out) / EMBEDDING_NPZ
    atomic_write_bytes(path, buffer.getvalue())
    return path
