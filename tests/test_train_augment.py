"""Batched augmentations: shapes, dtypes, ranges, geometry, per-sample randomness."""

from __future__ import annotations


import pytest
import torch


from train.augment import Augment, TwoViews, ViewSpec, _gray, _rotate_hue, view_specs

IDENTITY = ViewSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # mean / std that leave [0, 1] values as they are


def images(n=6, c=3, size=16, seed=0):
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def run(spec, x, seed=0, mean_std=UNIT):
    aug = Augment(spec, *(m[: x.shape[1]] for m in mean_std))
    gen = torch.Generator().manual_seed(seed)
    return aug.apply(x, aug.sample(x, gen))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("recipe", ["simclr", "byol"])
@pytest.mark.parametrize("size", [16, 40])
def test_views_keep_shape_dtype_and_range(channels, recipe, size):
    x = images(c=channels, size=size)
    specs = view_specs(recipe, size)
    for spec in specs:
        out = run(spec, x)
        assert out.shape == x.shape and out.dtype == torch.float32
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_normalisation_uses_the_given_statistics():
    x = images()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    plain = run(IDENTITY, x)
    normed = run(IDENTITY, x, mean_std=(mean, std))
    expected = (plain - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(normed, expected)


def test_identity_spec_returns_the_image():
    x = images()
    torch.testing.assert_close(run(IDENTITY, x), x.float() / 255, atol=1e-5, rtol=0)


def test_flip_mirrors_the_image():
    x = images()
    out = run(ViewSpec(**{**IDENTITY.__dict__, "hflip_p": 1.0}), x)
    torch.testing.assert_close(out, x.flip(-1).float() / 255, atol=1e-5, rtol=0)


def test_crop_covers_the_requested_area():
    # pixel value = column index: a crop of width fraction w spans w of the columns
    size = 64
    ramp = torch.arange(size, dtype=torch.float32).repeat(size, 1)
    x = ramp.expand(4, 1, size, size).to(torch.uint8)
    spec = ViewSpec(**{**IDENTITY.__dict__, "crop_scale": (0.25, 0.25)})  # w = h = 0.5
    out = run(spec, x, mean_std=((0.0,), (1.0 / 255,)))  # back to 0..255 units
    span = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    torch.testing.assert_close(span, torch.full((4,), (size - 1) * 0.5), atol=1.0, rtol=0)
    # crops stay inside the image, and their positions differ per sample
    assert out.min() >= 0 and out.max() <= size - 1
    assert len(set(out[:, 0, 0, 0].round().tolist())) > 1


def test_grayscale_and_solarize():
    x = images()
    gray = run(ViewSpec(**{**IDENTITY.__dict__, "grayscale_p": 1.0}), x)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    torch.testing.assert_close(gray[:, :1], _gray(x.float() / 255), atol=1e-5, rtol=0)
    sol = run(ViewSpec(**{**IDENTITY.__dict__, "solarize_p": 1.0}), x)
    v = x.float() / 255
    torch.testing.assert_close(sol, torch.where(v >= 0.5, 1 - v, v), atol=1e-5, rtol=0)


def test_hue_rotation_keeps_luma_and_zero_is_identity():
    rgb = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_rotate_hue(rgb, torch.zeros(5)), rgb, atol=1e-5, rtol=0)
    rotated = _rotate_hue(rgb, torch.linspace(-3, 3, 5))
    torch.testing.assert_close(_gray(rotated), _gray(rgb), atol=1e-5, rtol=0)
    assert not torch.allclose(rotated, rgb, atol=1e-2)
    # a full turn comes back; gray pixels have no chroma to rotate
    torch.testing.assert_close(_rotate_hue(rgb, torch.full((5,), 2 * torch.pi)), rgb, atol=1e-5, rtol=0)
    gray = rgb[:, :1].expand(-1, 3, -1, -1)
    torch.testing.assert_close(_rotate_hue(gray, torch.full((5,), 1.0)), gray, atol=1e-4, rtol=0)


def test_blur_smooths_and_keeps_the_mean():
    x = images(size=32)
    spec = ViewSpec(**{**IDENTITY.__dict__, "blur_p": 1.0})
    out, v = run(spec, x), x.float() / 255
    torch.testing.assert_close(out.mean(dim=(2, 3)), v.mean(dim=(2, 3)), atol=0.02, rtol=0)
    assert (out.std(dim=(2, 3)) < v.std(dim=(2, 3))).all()


def test_randomness_is_per_sample_and_reproducible():
    x = images(n=1).expand(8, -1, -1, -1).contiguous()  # eight copies of one image
    views = TwoViews(view_specs("simclr", 16), *UNIT)
    v1, v2 = views(x, torch.Generator().manual_seed(5))
    distinct = {tuple(v.flatten()[:64].tolist()) for v in v1}
    assert len(distinct) == 8, "copies of one image must get different augmentations"
    assert not torch.allclose(v1, v2)
    w1, w2 = views(x, torch.Generator().manual_seed(5))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    u1, _ = views(x, torch.Generator().manual_seed(6))
    assert not torch.equal(v1, u1)


def test_probabilities_are_respected_per_sample():
    x = images(n=4000, size=8)
    aug = Augment(ViewSpec(hflip_p=0.5, jitter_p=0.8, grayscale_p=0.2, solarize_p=0.3), *UNIT)
    p = aug.sample(x, torch.Generator().manual_seed(0))
    assert abs(p["flip"].float().mean().item() - 0.5) < 0.03
    assert abs(p["grayscale"].float().mean().item() - 0.2) < 0.03
    assert abs(p["solarize"].float().mean().item() - 0.3) < 0.03
    jittered = p["brightness"] != 1
    assert abs(jittered.float().mean().item() - 0.8) < 0.03
    area = p["crop_w"] * p["crop_h"]
    assert area.min() >= 0.08 - 1e-6 and area.max() <= 1 + 1e-6


def test_recipes_follow_the_papers():
    simclr_small, _ = view_specs("simclr", 32)
    assert simclr_small.blur_p == 0 and simclr_small.saturation == 0.4  # SimCLR CIFAR: strength 0.5, no blur
    simclr_large, _ = view_specs("simclr", 96)
    assert simclr_large.blur_p == 0.5 and simclr_large.brightness == 0.8
    b1, b2 = view_specs("byol", 96)
    assert (b1.blur_p, b2.blur_p, b1.solarize_p, b2.solarize_p) == (1.0, 0.1, 0.0, 0.2)
    assert view_specs("byol", 32, hflip=False)[0].hflip_p == 0.0
    # VICReg on CIFAR: solo-learn scripts/pretrain/cifar/vicreg.yaml (symmetric, crop 0.2, solarisation 0.1, no blur)
    v1, v2 = view_specs("vicreg", 32)
    assert v1 == v2 and v1.crop_scale == (0.2, 1.0) and (v1.blur_p, v1.solarize_p, v1.grayscale_p) == (0.0, 0.1, 0.2)
    assert (v1.brightness, v1.contrast, v1.saturation, v1.hue, v1.jitter_p) == (0.4, 0.4, 0.2, 0.1, 0.8)
    assert view_specs("vicreg", 28, crop_min_scale=0.3)[0].crop_scale == (0.3, 1.0)  # a dataset's larger minimum
    assert view_specs("vicreg", 96) == view_specs("byol", 96)  # larger images: the authors' (BYOL's) pipeline
    with pytest.raises(ValueError):
        view_specs("mocov9", 32)
