"""Image-folder datasets (``train/<class>/*``, ``test/<class>/*``), decoded once.

The source is a directory or a ``.tar.gz`` archive holding that layout (at
its top or under one folder, e.g. ``cifar10/train/airplane/0001.jpg``).
Class indices follow the sorted class-folder names, as in
``torchvision.datasets.ImageFolder``; the mapping is printed as a note. A
class folder without images is an error (dropping it would shift the labels
of every class after it), and so is a test class without a train folder; a
class without test images is a note. Every image is decoded with Pillow,
converted to RGB (16-bit grey images scaled by 255/65535, not clipped) and,
unless it already has that size, resized and centre-cropped to
``image_size`` (``PIL.ImageOps.fit``); the decoded uint8
arrays are cached as ``.npy`` under ``cache_dir`` (keyed by the source's
path, size and modification time, and ``image_size``) so later runs skip
decoding. Cache writes are atomic: a directory renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Dict, Iterator, List, Set, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from .base import DatasetError, ImageData, from_arrays

SPLITS = ("train", "test")
LAYOUT = "train/<class>/<image> and test/<class>/<image>"
_CACHE_VERSION = 2  # 2: 16-bit images scaled, class folders in the fingerprint
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _split_and_class(path: str):
    """``(split, class)`` for a path ending in ``<split>/<class>/<file>``, else None."""
    parts = PurePosixPath(path).parts
    if len(parts) >= 3 and parts[-3] in SPLITS and parts[-1].lower().endswith(IMG_EXTENSIONS):
        return parts[-3], parts[-2]
    return None


def _class_folder(path: str):
    """``(split, class)`` for a path ending in ``<split>/<class>``, else None."""
    parts = PurePosixPath(path).parts
    return (parts[-2], parts[-1]) if len(parts) >= 2 and parts[-2] in SPLITS else None


def _archive_members(path: Path, folders: Set[Tuple[str, str]]) -> Iterator[Tuple[str, str, str, bytes]]:
    """``(split, class, name, bytes)`` for each image in a tar archive; every
    class folder seen (with images or not) is added to ``folders``."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                folder = _class_folder(member.name if member.isdir() else str(PurePosixPath(member.name).parent))
                if folder is not None:
                    folders.add(folder)
                where = _split_and_class(member.name) if member.isfile() else None
                if where is not None:
                    yield where[0], where[1], member.name, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DatasetError(f"{path} is corrupt or not a tar archive ({exc}); expected an archive of {LAYOUT}") from exc


def _class_dirs(root: Path) -> Iterator[Tuple[str, Path]]:
    for split in SPLITS:
        split_dir = root / split
        if split_dir.is_dir():
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                yield split, class_dir


def _directory_files(root: Path, folders: Set[Tuple[str, str]]) -> Iterator[Tuple[str, str, str, Path]]:
    for split, class_dir in _class_dirs(root):
        folders.add((split, class_dir.name))
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and f.name.lower().endswith(IMG_EXTENSIONS):
                yield split, class_dir.name, str(f.relative_to(root)), f


def _as_rgb(img: Image.Image, name: str) -> Image.Image:
    """8-bit RGB. Pillow's ``convert`` clips 16-bit grey values at 255 (a
    16-bit image would come out nearly white), so those are scaled by
    255/65535 first; 32-bit integer and float images have no known range."""
    sixteen_bit = img.mode in _SIXTEEN_BIT or (img.mode == "I" and img.format in ("PNG", "PPM"))
    if sixteen_bit:
        values = np.asarray(img).astype(np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DatasetError(f"cannot decode image {name}: 16-bit values outside 0..65535")
        img = Image.fromarray(np.rint(values / 257.0).astype(np.uint8))
    elif img.mode in ("I", "F"):
        kind = "32-bit integer" if img.mode == "I" else "floating-point"
        raise DatasetError(f"cannot decode image {name}: {kind} pixels (Pillow mode {img.mode!r}) have no known "
                           "range; convert the image to 8- or 16-bit")
    return img.convert("RGB")


def _decode(blob, name: str, size: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(blob) if isinstance(blob, bytes) else blob) as img:
            img = _as_rgb(img, name)
            if img.size != (size, size):
                img = ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"cannot decode image {name}: {exc}") from exc


def _fingerprint(source: Path) -> str:
    h = hashlib.sha1(f"v{_CACHE_VERSION}:{source.resolve()}".encode())
    if source.is_file():
        st = source.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        folders: Set[Tuple[str, str]] = set()
        for _split, _cls, rel, f in _directory_files(source, folders):
            st = f.stat()
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns};".encode())
        h.update(repr(sorted(folders)).encode())
    return h.hexdigest()[:16]


def decode_source(source: Path, image_size: int, num_workers: int = 4) -> Dict[str, object]:
    """Decode every image of ``source`` to uint8 ``(N, 3, S, S)`` arrays."""
    folders: Set[Tuple[str, str]] = set()
    items = _archive_members(source, folders) if source.is_file() else _directory_files(source, folders)
    records: List[Tuple[str, str, str]] = []
    blobs = []
    for split, cls, name, blob in items:
        records.append((split, cls, name))
        blobs.append(blob)
    classes = sorted({cls for split, cls, _ in records if split == "train"})
    missing = [s for s in SPLITS if not any(r[0] == s for r in records)]
    if missing:
        raise DatasetError(f"no images for split(s) {', '.join(missing)} in {source}; expected {LAYOUT}")
    empty = sorted(folders - {(split, cls) for split, cls, _ in records})
    if empty:
        raise DatasetError(
            f"{source}: class folder(s) {', '.join(f'{s}/{c}' for s, c in empty)} hold no images "
            f"({' '.join(IMG_EXTENSIONS)}); an empty class would be dropped and every later label shifted. "
            "Add images or remove the folder(s)")
    unknown = sorted({cls for split, cls, _ in records if split == "test"} - set(classes))
    if unknown:
        raise DatasetError(f"{source}: test classes {unknown} have no train folder; expected {LAYOUT}")
    order = sorted(range(len(records)), key=lambda i: records[i])
    chunks = [order[k : k + 1024] for k in range(0, len(order), 1024)]  # per-task overhead >> a 32 px decode

    def decode_chunk(chunk):
        return [_decode(blobs[i], records[i][2], image_size) for i in chunk]

    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        images = [img for part in pool.map(decode_chunk, chunks) for img in part]
    index = {c: i for i, c in enumerate(classes)}
    out: Dict[str, object] = {"classes": classes}
    for split in SPLITS:
        picks = [k for k, i in enumerate(order) if records[i][0] == split]
        out[f"{split}_x"] = np.stack([images[k] for k in picks])
        out[f"{split}_y"] = np.array([index[records[order[k]][1]] for k in picks], dtype=np.int64)
    return out


def _write_cache(target: Path, arrays: Dict[str, object]) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for split in SPLITS:
        np.save(tmp / f"{split}_x.npy", arrays[f"{split}_x"])
        np.save(tmp / f"{split}_y.npy", arrays[f"{split}_y"])
    (tmp / "classes.json").write_text(json.dumps(arrays["classes"]))
    try:
        os.replace(tmp, target)
    except OSError:  # another process filled the cache first
        shutil.rmtree(tmp, ignore_errors=True)


def _read_cache(target: Path) -> Dict[str, object]:
    arrays: Dict[str, object] = {"classes": json.loads((target / "classes.json").read_text())}
    for split in SPLITS:
        arrays[f"{split}_x"] = np.load(target / f"{split}_x.npy")
        arrays[f"{split}_y"] = np.load(target / f"{split}_y.npy")
    return arrays


def cached_decode(source: Path, image_size: int, cache_dir: Path, num_workers: int = 4) -> Tuple[Dict[str, object], Path]:
    """Decoded arrays of ``source``, from the cache when it holds them."""
    target = Path(cache_dir).expanduser() / "decoded" / f"{source.name}-{image_size}px-{_fingerprint(source)}"
    if target.is_dir():
        try:
            return _read_cache(target), target
        except (OSError, ValueError, KeyError) as exc:
            print(f"note: decoded cache {target} is unreadable ({exc}); decoding again")
            shutil.rmtree(target, ignore_errors=True)
    arrays = decode_source(source, image_size, num_workers)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_cache(target, arrays)
    return arrays, target


def label_mapping(classes: List[str], limit: int = 12) -> str:
    """``0 airplane, 1 automobile, ...`` (the first and last few when there are many)."""
    pairs = [f"{i} {c}" for i, c in enumerate(classes)]
    if len(pairs) > limit:
        pairs = pairs[: limit // 2] + ["..."] + pairs[-limit // 2 :]
    return ", ".join(pairs)


def image_data(name: str, source: Path, image_size: int, cache_dir: Path, num_workers: int = 4) -> ImageData:
    arrays, cache = cached_decode(source, image_size, cache_dir, num_workers)
    classes = list(arrays["classes"])
    data = from_arrays(name, (arrays["train_x"], arrays["train_y"]), (arrays["test_x"], arrays["test_y"]),
                       classes=classes, source=f"{source} (decoded cache: {cache})")
    data.notes.append(f"{name}: {len(classes)} classes from the sorted class-folder names of {source}, "
                      f"labels {label_mapping(classes)}")
    untested = [c for i, c in enumerate(classes) if not (arrays["test_y"] == i).any()]
    if untested:
        data.notes.append(f"{name}: class(es) {', '.join(untested)} have no test images; the probes' test "
                          "accuracy does not cover them")
    return data


def load(data_dir: Path, image_size: int = 64, cache_dir: Path = Path("~/.cache/sinsim"), num_workers: int = 4, **_ignored) -> ImageData:
    source = Path(data_dir).expanduser()
    if not source.exists():
        raise DatasetError(
            f"image folder not found: {source}. Pass --data-dir DIR holding {LAYOUT}, or a .tar.gz of that layout"
        )
    if source.is_dir() and not all((source / s).is_dir() for s in SPLITS):
        raise DatasetError(f"{source} has no {' and '.join(s + '/' for s in SPLITS)} folders; expected {LAYOUT}")
    return image_data("folder", source, image_size, cache_dir, num_workers)
