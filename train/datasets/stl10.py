"""STL-10 from the official binary files (``stl10_binary/``, torchvision's layout).

``{train,test}_X.bin``: uint8 images, N x 3 x 96 x 96, each channel stored
column-major; ``{train,test}_y.bin``: uint8 labels 1..10; ``unlabeled_X.bin``:
100,000 images without labels; ``class_names.txt``: one name per line.
Pretraining uses train + unlabeled (as in the STL-10 protocol); the probes
use train / test. Missing files are downloaded with
``torchvision.datasets.STL10`` when there is a network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DatasetError, ImageData, from_arrays
from .download import try_download

FOLDER = "stl10_binary"
FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")
_IMAGE_BYTES = 3 * 96 * 96


def read_images(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size == 0 or size % _IMAGE_BYTES:
        raise DatasetError(f"{path} is corrupt: {size} bytes is not a whole number of 3x96x96 images")
    images = np.fromfile(path, dtype=np.uint8).reshape(-1, 3, 96, 96)
    return images.transpose(0, 1, 3, 2)  # column-major -> row-major


def read_labels(path: Path, count: int) -> np.ndarray:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != count or (count and (labels.min() < 0 or labels.max() > 9)):
        raise DatasetError(f"{path} is corrupt: expected {count} labels in 1..10")
    return labels


def load(data_dir: Path, download: bool = True, **_ignored) -> ImageData:
    data_dir = Path(data_dir).expanduser()
    folder = data_dir / FOLDER
    if not all((folder / f).is_file() for f in FILES):
        from torchvision.datasets import STL10

        reason = try_download(lambda root: STL10(root, split="train", download=True), data_dir, download)
        missing = [f for f in FILES if not (folder / f).is_file()]
        if missing:
            raise DatasetError(
                f"STL-10 not found: {', '.join(missing)} missing in {folder} (the official stl10_binary/ "
                f"layout; {reason}). Pass --data-dir DIR where DIR/{FOLDER} holds {', '.join(FILES)}."
            )
    train_x = read_images(folder / "train_X.bin")
    test_x = read_images(folder / "test_X.bin")
    unlabeled = read_images(folder / "unlabeled_X.bin")
    names_file = folder / "class_names.txt"
    classes = names_file.read_text().split() if names_file.is_file() else [str(i) for i in range(10)]
    return from_arrays("stl10", (train_x, read_labels(folder / "train_y.bin", len(train_x))),
                       (test_x, read_labels(folder / "test_y.bin", len(test_x))),
                       classes=classes, source=str(folder), unlabeled=unlabeled)
