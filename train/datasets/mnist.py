"""MNIST from the official IDX files (torchvision's ``MNIST/raw`` layout).

Looks in ``DATA_DIR/MNIST/raw``, then ``DATA_DIR/raw`` and ``DATA_DIR``, for
the four files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, each plain or
gzipped. Missing files are downloaded with ``torchvision.datasets.MNIST``
when there is a network and ``--download`` is on.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional

import numpy as np

from .base import DatasetError, ImageData, from_arrays
from .download import try_download

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped when its name ends in ``.gz``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable IDX file ({exc})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(f"{path} is truncated or corrupt: {len(data)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(bytearray(data), dtype=dtype, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(data_dir: Path) -> Optional[dict]:
    for folder in (data_dir / "MNIST" / "raw", data_dir / "raw", data_dir):
        found = {key: _find(folder, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found
    return None


def load(data_dir: Path, download: bool = True, **_ignored) -> ImageData:
    data_dir = Path(data_dir).expanduser()
    files = _locate(data_dir)
    if files is None:
        from torchvision.datasets import MNIST

        reason = try_download(lambda root: MNIST(root, train=True, download=True), data_dir, download)
        files = _locate(data_dir)
        if files is None:
            expected = ", ".join(f"{s}[.gz]" for s in FILES.values())
            raise DatasetError(
                f"MNIST not found: expected {expected} in {data_dir / 'MNIST' / 'raw'} "
                f"(torchvision's layout; {reason}). Pass --data-dir DIR where DIR/MNIST/raw "
                "holds these files (this project's offline copy: --data-dir ../shared/data), or run once with internet access."
            )
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"MNIST {split} files do not match: images {images.shape}, labels {labels.shape} "
                f"({files[f'{split}_images'].parent})"
            )
    return from_arrays("mnist", (arrays["train_images"][:, None], arrays["train_labels"]),
                       (arrays["test_images"][:, None], arrays["test_labels"]),
                       classes=[str(d) for d in range(10)], source=str(files["train_images"].parent))
