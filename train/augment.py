r"""Batched image augmentations as tensor ops, on whatever device the data is.

Input: a uint8 batch ``(B, C, H, W)``; output: normalised float32 views of
the same shape. Every random draw comes from one ``torch.Generator`` (on the
data's device), one value per sample, so views differ from image to image and
a run is reproducible from its seed and generator state. The work is split in
two: :meth:`Augment.sample` draws the parameters (small tensors) and
:meth:`Augment.apply` is a pure function of the images and parameters, which
``torch.compile`` can fuse.

The operations (SimCLR, Chen et al. 2020, appendix A; BYOL, Grill et al.
2020, table 6):

* random resized crop (area fraction ``s ~ U(scale)``, aspect ratio
  log-uniform in ``[3/4, 4/3]``, up to 10 tries as in torchvision, else the
  whole image) and horizontal flip, together as one affine ``grid_sample``;
* colour jitter with probability ``p``: brightness ``x * b``, contrast
  ``c x + (1 - c) mean(gray(x))``, saturation ``s x + (1 - s) gray(x)``, hue
  (a rotation of the chroma plane in YIQ space, the GPU-friendly form of an
  HSV hue shift), in this fixed order, clamped to [0, 1] after each step;
* grayscale with probability ``p`` (ITU-R 601 luma, as torchvision);
* Gaussian blur with probability ``p``, ``sigma ~ U(0.1, 2.0)``, kernel 10%
  of the image side;
* solarisation with probability ``p``: ``x -> 1 - x`` where ``x >= 0.5``.

On one-channel images the colour steps reduce to brightness and contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

# ITU-R 601 luma and the NTSC YIQ transform (its Y is the luma), kept as Python
# numbers: a tensor made from them in a step would be a blocking host-to-device
# copy on CUDA.
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_I = (0.596, -0.274, -0.322)
_RGB_TO_Q = (0.211, -0.523, 0.312)
_YIQ_TO_RGB = tuple(
    map(tuple, torch.linalg.inv(torch.tensor((_LUMA, _RGB_TO_I, _RGB_TO_Q), dtype=torch.float64)).tolist())
)


@dataclass(frozen=True)
class ViewSpec:
    """The augmentation recipe of one view."""

    crop_scale: Tuple[float, float] = (0.08, 1.0)
    crop_ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    solarize_p: float = 0.0


#: Images of at most this side get a recipe's ``small`` views (the CIFAR recipes), larger ones its ``large``.
SMALL_IMAGES = 32


def view_specs(recipe: str, image_size: int, hflip: bool = True, crop_min_scale: float = 0.08) -> Tuple[ViewSpec, ViewSpec]:
    """The two views of method ``recipe``'s augmentations, from its recipe's
    ``[views]`` (``train/recipes/methods/<recipe>.toml``, where each value's
    source is given): ``small`` for images of :data:`SMALL_IMAGES` px or
    less, else ``large``; one table for both views or a list of two. Each
    table changes the :class:`ViewSpec` defaults; its ``crop_min_scale`` is a
    floor on the dataset's own (``crop_min_scale``, the smallest crop area that
    keeps an image's class), and ``hflip`` False (a mirror image may be another
    class) turns flips off."""
    from .catalog import METHOD_RECIPES

    if recipe not in METHOD_RECIPES:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; the methods' are {', '.join(METHOD_RECIPES)}")
    chosen = METHOD_RECIPES[recipe].views["small" if image_size <= SMALL_IMAGES else "large"]
    tables = chosen if isinstance(chosen, list) else [chosen, chosen]
    base = ViewSpec(crop_scale=(crop_min_scale, 1.0), hflip_p=0.5 if hflip else 0.0)
    specs = []
    for table in tables:
        table = dict(table)
        floor = table.pop("crop_min_scale", None)
        view = replace(base, **table)
        if floor is not None:
            view = replace(view, crop_scale=(max(crop_min_scale, floor), 1.0))
        specs.append(view)
    return specs[0], specs[1]


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def stats_tensors(mean: Sequence[float], std: Sequence[float], device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std as ``(1, C, 1, 1)`` tensors on ``device``."""
    return (torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1),
            torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1))


def _mix(x: torch.Tensor, w: Sequence[float]) -> torch.Tensor:
    """``w[0] R + w[1] G + w[2] B``, shape ``(B, 1, H, W)``."""
    return w[0] * x[:, 0:1] + w[1] * x[:, 1:2] + w[2] * x[:, 2:3]


def _gray(x: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 1 else _mix(x, _LUMA)


def _uniform(gen, n, low, high, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _bernoulli(gen, n, p, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def _rotate_hue(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate each image's chroma plane (I, Q of YIQ) by its angle ``theta``;
    the luma Y is unchanged."""
    y, i, q = _gray(x), _mix(x, _RGB_TO_I), _mix(x, _RGB_TO_Q)
    cos, sin = torch.cos(theta).view(-1, 1, 1, 1), torch.sin(theta).view(-1, 1, 1, 1)
    yiq = (y, cos * i - sin * q, sin * i + cos * q)
    return torch.cat([sum(c * t for c, t in zip(row, yiq)) for row in _YIQ_TO_RGB], dim=1)


def _blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` (grouped convolution)."""
    b, c, h, w = x.shape
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (b*c, K)
    y = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


class Augment:
    """One view's augmentation: ``apply(x, sample(x.shape[0], gen))``."""

    def __init__(self, spec: ViewSpec, mean: Sequence[float], std: Sequence[float]):
        self.spec = spec
        self.mean, self.std = tuple(mean), tuple(std)

    def sample(self, x: torch.Tensor, gen: torch.Generator) -> Dict[str, torch.Tensor]:
        """Random parameters for the batch ``x``, one draw per sample."""
        s, n, dev = self.spec, x.shape[0], x.device
        tries = 10
        area = _uniform(gen, (n, tries), s.crop_scale[0], s.crop_scale[1], dev)
        log_ratio = _uniform(gen, (n, tries), math.log(s.crop_ratio[0]), math.log(s.crop_ratio[1]), dev)
        w, h = torch.sqrt(area * log_ratio.exp()), torch.sqrt(area / log_ratio.exp())
        fits = (w <= 1) & (h <= 1)
        first = fits.int().argmax(dim=1, keepdim=True)  # first try that fits
        ok = fits.any(dim=1)
        w = torch.where(ok, w.gather(1, first).squeeze(1), torch.ones_like(ok, dtype=w.dtype))
        h = torch.where(ok, h.gather(1, first).squeeze(1), torch.ones_like(ok, dtype=h.dtype))
        params = {
            "crop_w": w,
            "crop_h": h,
            "crop_cx": (torch.rand(n, generator=gen, device=dev) * 2 - 1) * (1 - w),
            "crop_cy": (torch.rand(n, generator=gen, device=dev) * 2 - 1) * (1 - h),
            "flip": _bernoulli(gen, n, s.hflip_p, dev),
        }
        jitter = _bernoulli(gen, n, s.jitter_p, dev)
        one = torch.ones(n, device=dev)
        for name in ("brightness", "contrast", "saturation"):
            amount = getattr(s, name)
            factor = _uniform(gen, n, max(0.0, 1 - amount), 1 + amount, dev)
            params[name] = torch.where(jitter, factor, one)
        params["hue"] = torch.where(jitter, _uniform(gen, n, -s.hue, s.hue, dev), torch.zeros_like(one))
        params["grayscale"] = _bernoulli(gen, n, s.grayscale_p, dev)
        params["blur"] = _bernoulli(gen, n, s.blur_p, dev)
        params["sigma"] = _uniform(gen, n, 0.1, 2.0, dev)
        params["solarize"] = _bernoulli(gen, n, s.solarize_p, dev)
        return params

    def apply(self, x: torch.Tensor, p: Dict[str, torch.Tensor],
              stats: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """The augmented, normalised float32 view of the uint8 batch ``x``;
        ``stats`` are the mean and std on the device (made here when None)."""
        x = to_unit_float(x)
        n, c, size = x.shape[0], x.shape[1], x.shape[-1]
        zero = torch.zeros_like(p["crop_w"])
        sx = torch.where(p["flip"], -p["crop_w"], p["crop_w"])
        theta = torch.stack(
            [torch.stack([sx, zero, p["crop_cx"]], 1), torch.stack([zero, p["crop_h"], p["crop_cy"]], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

        col = lambda v: v.view(n, 1, 1, 1)  # noqa: E731
        if self.spec.jitter_p > 0:
            x = (x * col(p["brightness"])).clamp(0, 1)
            x = (x * col(p["contrast"]) + (1 - col(p["contrast"])) * _gray(x).mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
            if c == 3:
                x = (x * col(p["saturation"]) + (1 - col(p["saturation"])) * _gray(x)).clamp(0, 1)
                x = _rotate_hue(x, p["hue"] * (2 * math.pi)).clamp(0, 1)
        if c == 3 and self.spec.grayscale_p > 0:
            x = torch.where(col(p["grayscale"]), _gray(x).expand_as(x), x)
        if self.spec.blur_p > 0:
            kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
            x = torch.where(col(p["blur"]), _blur(x, p["sigma"], kernel), x)
        if self.spec.solarize_p > 0:
            x = torch.where(col(p["solarize"]) & (x >= 0.5), 1 - x, x)
        mean, std = stats if stats is not None else stats_tensors(self.mean, self.std, x.device)
        return (x - mean) / std


def plain_input(mean, std):
    """The un-augmented, normalised input of uint8 images (for evaluation):
    ``(x / 255 - mean) / std`` per channel."""
    return TwoViews((ViewSpec(), ViewSpec()), mean, std).plain


class TwoViews:
    """The pair of augmentations a method trains on."""

    def __init__(self, specs: Tuple[ViewSpec, ViewSpec], mean, std):
        self.views = (Augment(specs[0], mean, std), Augment(specs[1], mean, std))
        self.mean, self.std = tuple(mean), tuple(std)
        self._stats: Dict[torch.device, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._apply = self.apply

    def compile(self) -> None:
        self._apply = torch.compile(self.apply, dynamic=False)

    def stats(self, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean and std on ``device``, copied there once."""
        if device not in self._stats:
            self._stats[device] = stats_tensors(self.mean, self.std, device)
        return self._stats[device]

    def apply(self, x, p1, p2, stats):
        return self.views[0].apply(x, p1, stats), self.views[1].apply(x, p2, stats)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        p1, p2 = self.views[0].sample(x, gen), self.views[1].sample(x, gen)
        return self._apply(x, p1, p2, self.stats(x.device))

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        """The un-augmented, normalised input (for evaluation)."""
        mean, std = self.stats(x.device)
        return (to_unit_float(x) - mean) / std
