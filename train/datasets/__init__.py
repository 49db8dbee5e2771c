"""Dataset registry: name -> loader and the defaults a run on it starts from.

``load_dataset(name, ...)`` returns an :class:`ImageData` (uint8 images in
memory) or raises :class:`DatasetError` with a message that says what was
expected where.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict

from . import cifar, digits, folder, mnist, stl10
from .base import DatasetError, ImageData

__all__ = ["DATASETS", "DatasetError", "DatasetSpec", "ImageData", "load_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """How to load a dataset and the defaults of a run on it."""

    loader: Callable[..., ImageData]
    image_size: int  # side of the images the encoder sees
    epochs: int
    batch_size: int
    hflip: bool = True  # mirror images are still the same class
    crop_min_scale: float = 0.08  # smallest random-resized-crop area fraction
    description: str = ""


DATASETS: Dict[str, DatasetSpec] = {
    # Sized so that `--method all` (5 methods, pretraining and probes) takes
    # about 3 minutes on 2 CPU cores; the 8x8 digits are upsampled to 12x12.
    # A smoke test of the whole pipeline: an untrained ResNet-18 already
    # scores ~98% here, and 3 epochs do not make the methods differ.
    "digits": DatasetSpec(
        digits.load, image_size=12, epochs=3, batch_size=64, hflip=False, crop_min_scale=0.3,
        description="scikit-learn's 8x8 digits (bundled, no download)",
    ),
    "mnist": DatasetSpec(
        mnist.load, image_size=28, epochs=50, batch_size=256, hflip=False, crop_min_scale=0.3,
        description="MNIST (IDX files; torchvision download)",
    ),
    # CIFAR budget: the DESIGN.md anchor (50 epochs, batch 512).
    "cifar10": DatasetSpec(partial(cifar.load, "cifar10"), image_size=32, epochs=50, batch_size=512,
                           description="CIFAR-10 (pickles, image folder or JPEG archive)"),
    "cifar100": DatasetSpec(partial(cifar.load, "cifar100"), image_size=32, epochs=50, batch_size=512,
                            description="CIFAR-100 (pickles, image folder or JPEG archive)"),
    "stl10": DatasetSpec(stl10.load, image_size=96, epochs=50, batch_size=256,
                         description="STL-10 (stl10_binary; pretrains on train+unlabeled)"),
    "folder": DatasetSpec(folder.load, image_size=64, epochs=50, batch_size=256,
                          description="your images: DATA_DIR/{train,test}/<class>/* or a .tar.gz of it"),
}


def load_dataset(
    name: str,
    data_dir: Path,
    cache_dir: Path,
    image_size: int,
    download: bool = True,
    num_workers: int = 4,
) -> ImageData:
    """Load ``name`` and resize it once to ``image_size``."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    data = DATASETS[name].loader(
        data_dir=Path(data_dir).expanduser() if data_dir is not None else None,
        cache_dir=Path(cache_dir).expanduser(),
        image_size=image_size,
        download=download,
        num_workers=num_workers,
    )
    return data.resized(image_size)
