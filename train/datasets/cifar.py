"""CIFAR-10 and CIFAR-100, from any of the layouts they come in.

Looked for under ``DATA_DIR`` in this order:

1. the official python pickles, torchvision's layout:
   ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` or
   ``cifar-100-python/{train,test,meta}``;
2. an image folder ``cifar10/{train,test}/<class>/*`` (or ``cifar100/...``);
3. the JPEG archive ``cifar10-jpeg.tar.gz`` (or ``cifar100-jpeg.tar.gz``),
   decoded once and cached (see :mod:`train.datasets.folder`);
4. otherwise the pickles are downloaded with torchvision's ``CIFAR10`` /
   ``CIFAR100`` classes, when there is a network.

For CIFAR-100 the sorted fine-class folder names give the official label
order (apple = 0 ... worm = 99), so all layouts agree on labels. The JPEG
copies are lossy: report their accuracies as "CIFAR-10 (JPEG copy)".
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from . import folder
from .base import DatasetError, ImageData, from_arrays
from .download import try_download

@dataclass(frozen=True)
class Layout:
    """Where a CIFAR dataset's files are and what they hold (from its recipe's ``[loader]``)."""

    name: str  # also the image folder DATA_DIR/<name>/ and the archive DATA_DIR/<name>-jpeg.tar.gz
    pickle_dir: str
    train_batches: Tuple[str, ...]
    test_batches: Tuple[str, ...]
    meta: Tuple[str, str]  # the file of the class names, and its key
    label_key: str
    torchvision_class: str
    classes: Optional[Tuple[str, ...]] = None  # the official label order, when given
    num_classes: Optional[int] = None  # else: how many class folders an image folder must hold


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DatasetError(f"{path} is corrupt: not a CIFAR python pickle ({exc})") from exc


def read_pickles(folder_path: Path, layout: Layout) -> ImageData:
    """Read the official python-pickle batches of ``layout`` from ``folder_path``."""
    name = layout.name
    splits = {}
    for split, batches in (("train", layout.train_batches), ("test", layout.test_batches)):
        xs, ys = [], []
        for batch in batches:
            entry = _unpickle(folder_path / batch)
            try:
                data, labels = np.asarray(entry["data"], dtype=np.uint8), entry[layout.label_key]
            except KeyError as exc:
                raise DatasetError(f"{folder_path / batch} has no {exc} entry: not a {name} batch") from exc
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
                raise DatasetError(f"{folder_path / batch}: data {data.shape} / {len(labels)} labels is not CIFAR's N x 3072")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.extend(labels)
        splits[split] = (np.concatenate(xs), ys)
    meta_file, key = layout.meta
    if (folder_path / meta_file).is_file():
        classes = list(_unpickle(folder_path / meta_file)[key])
    else:
        classes = [str(i) for i in range(int(max(max(splits["train"][1]), max(splits["test"][1]))) + 1)]
    return from_arrays(name, splits["train"], splits["test"], classes=classes, source=str(folder_path))


def check_classes(layout: Layout, classes, source: Path) -> None:
    """An image folder of ``layout.name`` must hold every official class: a
    missing one would shift every later label away from the official numbering."""
    name, expected = layout.name, layout.classes
    if expected is not None and list(classes) != list(expected):
        missing, extra = sorted(set(expected) - set(classes)), sorted(set(classes) - set(expected))
        raise DatasetError(
            f"{source} is not {name}'s {len(expected)} classes (missing: {', '.join(missing) or '-'}; unexpected: "
            f"{', '.join(extra) or '-'}): its labels would not be the official ones. Its folders give "
            f"{folder.label_mapping(list(classes))}")
    if expected is None and len(classes) != layout.num_classes:
        raise DatasetError(
            f"{source} has {len(classes)} class folders, not {name}'s {layout.num_classes}: a missing class "
            f"shifts every later label away from the official numbering. Its folders give "
            f"{folder.label_mapping(list(classes))}")


def _has_pickles(data_dir: Path, layout: Layout) -> Optional[Path]:
    path = data_dir / layout.pickle_dir
    needed = layout.train_batches + layout.test_batches
    return path if all((path / f).is_file() for f in needed) else None


def _jpeg_source(data_dir: Path, name: str) -> Optional[Path]:
    for candidate in (data_dir / name, data_dir / f"{name}-jpeg" / name):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    archive = data_dir / f"{name}-jpeg.tar.gz"
    return archive if archive.is_file() else None


def load(data_dir: Path, cache_dir: Path, download: bool = True, num_workers: int = 4, *, name: str, pickle_dir: str,
         train_batches, test_batches, meta, label_key: str, torchvision_class: str, classes=None,
         num_classes: Optional[int] = None, **_ignored) -> ImageData:
    """The dataset a recipe's ``[loader]`` describes (the :class:`Layout` fields)."""
    layout = Layout(name=name, pickle_dir=pickle_dir, train_batches=tuple(train_batches),
                    test_batches=tuple(test_batches), meta=tuple(meta), label_key=label_key,
                    torchvision_class=torchvision_class, classes=None if classes is None else tuple(classes),
                    num_classes=num_classes)
    data_dir = Path(data_dir).expanduser()
    pickles = _has_pickles(data_dir, layout)
    if pickles is not None:
        return read_pickles(pickles, layout)
    jpeg = _jpeg_source(data_dir, name)
    if jpeg is not None:
        data = folder.image_data(name, jpeg, 32, cache_dir, num_workers)
        check_classes(layout, data.classes, jpeg)
        data.notes.append(f"{name} read from the lossy JPEG copy {jpeg}: report as '{name} (JPEG copy)'")
        return data
    import torchvision.datasets

    tv_class = getattr(torchvision.datasets, layout.torchvision_class)
    reason = try_download(lambda root: tv_class(root, train=True, download=True), data_dir, download)
    pickles = _has_pickles(data_dir, layout)
    if pickles is None:
        raise DatasetError(
            f"{name} not found in {data_dir}: expected the python pickles "
            f"{data_dir / layout.pickle_dir}/ (torchvision's layout), an image folder "
            f"{data_dir / name}/{{train,test}}/<class>/, or the archive {data_dir / (name + '-jpeg.tar.gz')} "
            f"({reason}). Pass --data-dir DIR holding one of these (this project's offline copy: --data-dir ../shared/data)."
        )
    return read_pickles(pickles, layout)
