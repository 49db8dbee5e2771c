"""The paired tests of experiments/paper/paired_tests.py against independent answers: scipy's permutation test,
exact enumeration of the bootstrap over seeds, the normal approximation over images, a hand-counted McNemar."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from experiments.paper.paired_tests import mcnemar_exact, paired_bootstrap, sign_flip_floor, sign_flip_test


@pytest.mark.parametrize("diffs", [[1.0, 2.0, 3.0], [0.4, -0.1, 0.9, 0.3, 0.6], [1.5, -2.0, 0.5, -0.25, 3.0, 0.1]])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_sign_flip_matches_scipys_exact_permutation_test(diffs, alternative):
    expected = stats.permutation_test((np.array(diffs),), np.mean, permutation_type="samples",
                                      alternative=alternative, n_resamples=10_000).pvalue
    assert sign_flip_test(diffs, alternative) == pytest.approx(expected)


def test_sign_flip_floor_is_reached_when_every_seed_agrees():
    assert sign_flip_test([1.0, 2.0, 3.0]) == 0.25 == sign_flip_floor(3)  # the 3-seed floor: 2 of 8 patterns
    assert sign_flip_test([0.5] * 5, "greater") == 1 / 32 == sign_flip_floor(5, "greater")
    assert sign_flip_floor(5) == 0.0625  # 5 seeds cannot pass a two-sided 0.05 test


@pytest.mark.parametrize("bad,message", [([], "1 to 20"), ([[1.0]], "1 to 20"), ([1.0, float("nan")], "finite")])
def test_sign_flip_refuses_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        sign_flip_test(bad)


def test_bootstrap_over_seeds_alone_matches_exact_enumeration():
    """Each seed's images all differ by d_s: only the seed draw matters, and its 27 equally likely draws
    (3 seeds with replacement) give the exact distribution of the resampled mean."""
    d = np.array([0.02, 0.05, -0.01])
    a = np.zeros((3, 400))
    b = np.zeros((3, 400))
    a[:, :] = d[:, None] > 0
    b[:, :] = d[:, None] < 0
    per_image = (a - b)  # +1 on seeds 0 and 1, -1 on seed 2
    exact = sorted(100 * per_image[list(pick)].mean() for pick in itertools.product(range(3), repeat=3))
    result = paired_bootstrap(a, b, replicates=20_000)
    assert result.mean == pytest.approx(100 * per_image.mean())
    assert result.low == pytest.approx(np.quantile(exact, 0.025, method="inverted_cdf"), abs=1e-9)
    assert result.high == pytest.approx(np.quantile(exact, 0.975, method="inverted_cdf"), abs=1e-9)


def test_bootstrap_over_images_alone_matches_the_normal_interval():
    rng = np.random.default_rng(1)
    a = rng.random((1, 5000)) < 0.80
    b = rng.random((1, 5000)) < 0.78
    d = (a.astype(float) - b.astype(float))[0]
    half = 1.96 * 100 * d.std(ddof=1) / np.sqrt(len(d))
    result = paired_bootstrap(a, b, replicates=4000)
    assert result.mean == pytest.approx(100 * d.mean())
    assert (result.high - result.low) / 2 == pytest.approx(half, rel=0.1)


def test_bootstrap_of_identical_runs_is_exactly_zero_and_refuses_mismatched_shapes():
    a = np.random.default_rng(0).random((3, 100)) < 0.5
    result = paired_bootstrap(a, a, replicates=500)
    assert (result.mean, result.low, result.high) == (0.0, 0.0, 0.0) and not result.excludes_zero
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap(a, a[:, :50])


def test_mcnemar_by_hand():
    a = np.array([True] * 8 + [False] * 2 + [True] * 5)
    b = np.array([False] * 8 + [True] * 2 + [True] * 5)  # discordant: 8 for a, 2 for b; 5 concordant
    assert mcnemar_exact(a, b) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 2 P(X <= 2), X ~ Bin(10, 1/2)
    assert mcnemar_exact(a, a) == 1.0
