"""Dataset registry: name -> loader and the defaults a run on it starts from.

The registry itself is :data:`train.catalog.DATASETS`, read from the
datasets' recipes in ``train/recipes/datasets/`` (no torch needed to list
it); ``load_dataset(name, ...)`` returns an :class:`ImageData` (uint8
images in memory) or raises :class:`DatasetError` with a message that says
what was expected where.
"""

from __future__ import annotations

from pathlib import Path

from ..catalog import DATASETS, DatasetSpec
from .base import DatasetError, ImageData

__all__ = ["DATASETS", "DatasetError", "DatasetSpec", "ImageData", "load_dataset"]


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
    data = DATASETS[name].load(
        data_dir=Path(data_dir).expanduser() if data_dir is not None else None,
        cache_dir=Path(cache_dir).expanduser(),
        image_size=image_size,
        download=download,
        num_workers=num_workers,
    )
    return data.resized(image_size)
