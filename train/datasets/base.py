"""The in-memory form every dataset loader returns, and its error type."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import TrainerError


class DatasetError(TrainerError):
    """A dataset is missing, incomplete or corrupt; the message says what was
    expected where and which flag changes it."""


@dataclass
class ImageData:
    """A labelled image dataset held in memory as uint8 tensors.

    Images are ``(N, C, H, W)`` uint8 in 0..255; labels are int64 class
    indices into ``classes``. ``pretrain`` is what self-supervised training
    sees: the train split, or for STL-10 the train and unlabeled splits.
    """

    name: str
    pretrain: torch.Tensor
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: List[str]
    source: str = ""  # where it was read from, for the run's config
    notes: List[str] = field(default_factory=list)

    def __post_init__(self):
        for split in ("pretrain", "train_images", "test_images"):
            t = getattr(self, split)
            if t.dtype != torch.uint8 or t.dim() != 4:
                raise ValueError(f"{self.name}.{split} must be uint8 (N, C, H, W), got {t.dtype} {tuple(t.shape)}")
        for images, labels in ((self.train_images, self.train_labels), (self.test_images, self.test_labels)):
            if len(images) != len(labels):
                raise ValueError(f"{self.name}: {len(images)} images but {len(labels)} labels")

    @cached_property
    def fingerprint(self) -> str:
        """The first 16 hex digits of the SHA-256 of the class names, images
        and labels of every split: what a run was trained on, whatever the
        path it was read from (a copy of the same files has the same one)."""
        h = hashlib.sha256(json.dumps(list(self.classes)).encode())
        for t in (self.pretrain, self.train_images, self.train_labels, self.test_images, self.test_labels):
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.contiguous().numpy().data)
        return h.hexdigest()[:16]

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def channel_stats(self, chunk: int = 1024) -> tuple:
        """Per-channel mean and std of the pretraining images, in [0, 1] units
        (accumulated in float64 over chunks: STL-10's 105,000 images would
        not fit in memory as floats). A constant channel (:meth:`constant_channels`)
        gets std 1, as scikit-learn's ``StandardScaler`` gives a constant
        feature: standardised, it is 0 rather than 0/0 (or a rounding residue)."""
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        for part in self.pretrain.split(chunk):
            x = part.float().div_(255.0)
            total += x.sum(dim=(0, 2, 3)).double()
            squares += x.square().sum(dim=(0, 2, 3)).double()
        count = self.pretrain.numel() // self.channels
        mean = total / count
        std = ((squares - count * mean.square()) / (count - 1)).clamp_min(0).sqrt()
        for c, value in self.constant_channels().items():
            mean[c], std[c] = value / 255.0, 1.0
        return tuple(mean.tolist()), tuple(std.tolist())

    def constant_channels(self, chunk: int = 1024) -> Dict[int, int]:
        """``{channel: value}`` for the channels that hold one value in every pretraining pixel."""
        low = torch.full((self.channels,), 255, dtype=torch.uint8)
        high = torch.zeros(self.channels, dtype=torch.uint8)
        for part in self.pretrain.split(chunk):
            flat = part.transpose(0, 1).reshape(self.channels, -1)
            low = torch.minimum(low, flat.amin(dim=1))
            high = torch.maximum(high, flat.amax(dim=1))
        return {c: int(low[c]) for c in range(self.channels) if low[c] == high[c]}

    def resized(self, size: int) -> "ImageData":
        """The same data with every image resized to ``size`` x ``size`` once
        (bilinear, antialiased), so that training never resizes a full image."""
        if self.train_images.shape[-2:] == (size, size) and self.pretrain.shape[-2:] == (size, size):
            return self
        return replace(
            self,
            pretrain=resize_uint8(self.pretrain, size),
            train_images=resize_uint8(self.train_images, size),
            test_images=resize_uint8(self.test_images, size),
        )

    def with_pretrain_subset(self, k: Optional[int], seed: int) -> "ImageData":
        """Keep ``k`` pretraining images, drawn without replacement with
        ``seed``; the labelled splits used by the probes are unchanged."""
        if k is None:
            return self
        n = len(self.pretrain)
        if k > n:
            raise DatasetError(f"--train-subset {k} is larger than the {n} pretraining images of {self.name}")
        keep = np.sort(np.random.default_rng(seed).permutation(n)[:k])
        return replace(self, pretrain=self.pretrain[torch.from_numpy(keep)])

    def with_labelled_subset(self, train_k: Optional[int], test_k: Optional[int], seed: int = 0) -> "ImageData":
        """Keep ``train_k`` labelled train and ``test_k`` test images (None:
        all), each drawn without replacement with ``seed``; the pretraining
        images are unchanged. The seed is fixed (not the run's), so that every
        method and seed is probed on the same images and their scores can be
        compared pair by pair."""
        picks = {}
        for split, k in (("train", train_k), ("test", test_k)):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if k is None or k >= len(images):
                picks[split] = (images, labels)
                continue
            keep = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(images))[:k]))
            picks[split] = (images[keep], labels[keep])
        (train_images, train_labels), (test_images, test_labels) = picks["train"], picks["test"]
        return replace(self, train_images=train_images, train_labels=train_labels,
                       test_images=test_images, test_labels=test_labels)


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    out = []
    for part in images.split(chunk):
        x = F.interpolate(part.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_empty((0, images.shape[1], size, size))


def as_tensors(images: np.ndarray, labels: Sequence[int]) -> tuple:
    """``(N, C, H, W)`` uint8 and int64 tensors from numpy arrays (no copy when contiguous)."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    return torch.from_numpy(images), torch.as_tensor(np.asarray(labels, dtype=np.int64))


def from_arrays(name: str, train: tuple, test: tuple, *, classes: List[str], source: str,
                unlabeled: Optional[np.ndarray] = None) -> ImageData:
    """:class:`ImageData` from ``(images, labels)`` numpy pairs of the train and
    test splits; pretraining uses the train images, plus ``unlabeled`` ones
    when given (STL-10)."""
    train_images, train_labels = as_tensors(*train)
    test_images, test_labels = as_tensors(*test)
    pretrain = train_images
    if unlabeled is not None:
        pretrain = torch.cat([train_images, torch.from_numpy(np.ascontiguousarray(unlabeled, dtype=np.uint8))])
    return ImageData(name=name, pretrain=pretrain, train_images=train_images, train_labels=train_labels,
                     test_images=test_images, test_labels=test_labels, classes=classes, source=source)
