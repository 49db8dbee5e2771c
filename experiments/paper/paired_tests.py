r"""Paired tests beyond the t-test: exact sign flips over seeds, and the test images' own error.

Two runs at the same seed share their initial weights, data order and
augmentations, so two methods compare through their per-seed differences
``d_s = a_s - b_s`` (:mod:`.aggregate` has the paired t-test).

**Exact sign-flip test** (Fisher's randomisation test for paired data). Under
the null hypothesis that the two methods are exchangeable, each ``d_s`` is as
likely to have the opposite sign. Over all ``2^S`` sign patterns ``e`` the
statistic ``mean(e * d)`` is recomputed; the p-value is the fraction of
patterns at least as extreme as the observed one (two-sided: ``|mean| >=``;
"greater": ``mean >=``). It assumes nothing about the differences'
distribution, and it has a floor: with ``S`` seeds the smallest two-sided
p-value is ``2 / 2^S`` (0.25 at 3 seeds, 0.0625 at 5, 0.031 at 6), the
smallest one-sided ``1 / 2^S``.

**Paired bootstrap over seeds and images.** Every run is scored on the same
test images, one sample of the test distribution; the seed-paired t interval
treats that sample as fixed, so its error (about 0.4-0.5 points on a paired
difference at 10,000 images) is in no interval built from seeds alone. With
every image's correctness kept (:mod:`train.predictions`), the difference in
accuracy is resampled two ways at once (a two-way random-effects bootstrap):
each replicate draws ``S`` seeds with replacement and ``N`` images with
replacement, the same images for both methods and every drawn seed, and
takes the mean difference in correctness. The percentile interval of the
replicates includes both sources of error.

**McNemar's exact test** (one seed): of the images exactly one of the two
runs gets right, how many each gets; under the null each such image is a
fair coin (binomial test on the discordant counts).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

MAX_SIGN_FLIP_SEEDS = 20  # 2^20 patterns; more seeds would call for a Monte Carlo version
TIE = 1e-12


def sign_flip_test(diffs: Sequence[float], alternative: str = "two-sided") -> float:
    """Exact p-value of the paired sign-flip test on the per-seed differences ``diffs``."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or not 1 <= len(d) <= MAX_SIGN_FLIP_SEEDS:
        raise ValueError(f"diffs: expected 1 to {MAX_SIGN_FLIP_SEEDS} per-seed differences, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("diffs: every per-seed difference must be finite")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    means = signs @ d / len(d)
    observed = d.mean()
    if alternative == "two-sided":
        extreme = np.abs(means) >= abs(observed) - TIE
    elif alternative == "greater":
        extreme = means >= observed - TIE
    else:
        extreme = means <= observed + TIE
    return float(extreme.mean())


def sign_flip_floor(seeds: int, alternative: str = "two-sided") -> float:
    """The smallest p-value :func:`sign_flip_test` can give with ``seeds`` differences."""
    return (2.0 if alternative == "two-sided" else 1.0) / 2 ** seeds


@dataclass(frozen=True)
class BootstrapInterval:
    """Difference in accuracy (points) with its percentile interval."""

    mean: float
    low: float
    high: float
    seeds: int
    images: int
    replicates: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def text(self) -> str:
        return (f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] (bootstrap over {self.seeds} seeds and "
                f"{self.images:,} images, {self.replicates:,} replicates)")


def paired_bootstrap(correct_a, correct_b, replicates: int = 10_000, level: float = 0.95, seed: int = 0,
                     chunk: int = 500) -> BootstrapInterval:
    """Accuracy difference ``a - b`` in points, resampling seeds and images.

    ``correct_a``, ``correct_b``: ``(S, N)`` arrays, whether run ``s`` got
    image ``i`` right, rows paired by seed, columns the same images."""
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"correct_a, correct_b: expected two (seeds, images) arrays of one shape, got {a.shape} "
                         f"and {b.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    diff = a - b
    n_seeds, n_images = diff.shape
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, replicates, chunk):
        k = min(chunk, replicates - start)
        picks = rng.integers(0, n_images, size=(k, n_images)) + (np.arange(k) * n_images)[:, None]
        image_counts = np.bincount(picks.ravel(), minlength=k * n_images).reshape(k, n_images)
        seed_counts = np.stack([np.bincount(rng.integers(0, n_seeds, n_seeds), minlength=n_seeds)
                                for _ in range(k)])
        per_seed = image_counts @ diff.T  # (k, S): image-resampled sums for every seed
        draws.append((seed_counts * per_seed).sum(axis=1) / (n_seeds * n_images))
    values = 100.0 * np.concatenate(draws)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return BootstrapInterval(100.0 * float(diff.mean()), float(low), float(high), n_seeds, n_images, replicates)


def mcnemar_exact(correct_a, correct_b) -> float:
    """Two-sided exact McNemar p-value of one seed's paired per-image correctness."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correct_a, correct_b: expected two 1-d arrays of one length, got {a.shape}, {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
