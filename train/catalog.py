"""The one list of datasets and methods, without importing torch.

The command line needs the names (its choices), the descriptions (its
``--help``) and the datasets' default budgets before it imports anything
heavy, so that ``--help`` and argument errors answer at once. Loaders and
method classes are named here as ``"module:attribute"`` (relative to the
``train`` package) and imported on first use: ``train.datasets.DATASETS`` and
``train.methods.METHODS`` are this catalog, not copies of it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, Tuple


def import_object(target: str) -> Any:
    """The object named ``".module:attribute"`` (relative to ``train``)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module, __package__), attribute)


@dataclass(frozen=True)
class DatasetSpec:
    """How to load a dataset and the defaults of a run on it."""

    loader: str  # ".datasets.<module>:<function>", called with loader_args first
    image_size: int  # side of the images the encoder sees
    epochs: int
    batch_size: int
    hflip: bool = True  # mirror images are still the same class
    crop_min_scale: float = 0.08  # smallest random-resized-crop area fraction
    description: str = ""
    loader_args: Tuple = ()
    table_note: str = ""  # what a results table on this dataset shows ({epochs}: its pretraining epochs)

    def load(self, **kwargs):
        return import_object(self.loader)(*self.loader_args, **kwargs)


DATASETS: Dict[str, DatasetSpec] = {
    # Sized so that `--method all` (5 methods, pretraining and probes) takes
    # about 3 minutes on 2 CPU cores; the 8x8 digits are upsampled to 12x12.
    # A smoke test of the whole pipeline: an untrained ResNet-18 already
    # scores ~98% here, and 3 epochs do not make the methods differ.
    "digits": DatasetSpec(
        ".datasets.digits:load", image_size=12, epochs=3, batch_size=64, hflip=False, crop_min_scale=0.3,
        description="scikit-learn's 8x8 digits (bundled, no download)",
        table_note=("What this table shows: a pipeline check, not a comparison of the methods. Every method "
                    "pretrained ({epochs} epochs on {images} 8x8 digits) and every probe ran, end to end; but an "
                    "untrained ResNet-18 already separates these digits well (the last row), and so short a "
                    "pretraining does not make the methods differ. Compare methods on CIFAR-10 (--dataset "
                    "cifar10, 50 epochs) or with the paper protocol (--protocol paper), over several seeds."),
    ),
    "mnist": DatasetSpec(
        ".datasets.mnist:load", image_size=28, epochs=50, batch_size=256, hflip=False, crop_min_scale=0.3,
        description="MNIST (IDX files; torchvision download)",
    ),
    # CIFAR budget: the H100 reference point of docs/performance/gpu.md (50 epochs, batch 512).
    "cifar10": DatasetSpec(".datasets.cifar:load", loader_args=("cifar10",), image_size=32, epochs=50,
                           batch_size=512, description="CIFAR-10 (pickles, image folder or JPEG archive)"),
    "cifar100": DatasetSpec(".datasets.cifar:load", loader_args=("cifar100",), image_size=32, epochs=50,
                            batch_size=512, description="CIFAR-100 (pickles, image folder or JPEG archive)"),
    "stl10": DatasetSpec(".datasets.stl10:load", image_size=96, epochs=50, batch_size=256,
                         description="STL-10 (stl10_binary; pretrains on train+unlabeled)"),
    "folder": DatasetSpec(".datasets.folder:load", image_size=64, epochs=50, batch_size=256,
                          description="your images: DATA_DIR/{train,test}/<class>/* or a .tar.gz of it"),
}

# In the order `--method all` runs them and the tables list them.
METHOD_CLASSES: Dict[str, str] = {
    "sinsim": ".methods.sinsim:SinSim",
    "simclr": ".methods.simclr:SimCLR",
    "byol": ".methods.byol:BYOL",
    "vicreg": ".methods.vicreg:VICReg",
    "barlow": ".methods.barlow:BarlowTwins",
}
METHOD_NAMES: Tuple[str, ...] = tuple(METHOD_CLASSES)
