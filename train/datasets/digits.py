"""scikit-learn's bundled 8x8 handwritten digits: runs anywhere, no download.

1,797 grey images of 10 classes (values 0..16, rescaled here to 0..255). A
fixed stratified split (25% test, ``random_state=0``) keeps results comparable
across seeds; the trainer upsamples the images to ``--image-size``.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from .base import ImageData, from_arrays


def load(data_dir=None, **_ignored) -> ImageData:
    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, stratify=digits.target, random_state=0
    )
    return from_arrays("digits", (x_train, y_train), (x_test, y_test), classes=[str(d) for d in range(10)],
                       source="sklearn.datasets.load_digits")
