"""The geometry every run records (train/geometry.py) against hand computations
on synthetic features: identical points, orthonormal points, a regular simplex."""

from __future__ import annotations

import math

import pytest
import torch

from train import geometry


def test_identical_points_are_collapsed_uniformity_zero_rank_one():
    x = torch.tensor([[0.3, -1.2, 2.0]]).repeat(50, 1)
    assert geometry.uniformity(x) == pytest.approx(0.0, abs=1e-12)  # every pairwise distance is 0: log mean exp(0)
    assert geometry.effective_rank(x) == pytest.approx(1.0, abs=1e-5)  # one singular value: entropy 0
    assert geometry.alignment(x, x) == 0


def test_points_on_one_line_through_zero_have_rank_one_but_may_spread():
    x = torch.tensor([[1.0, 2.0], [-2.0, -4.0], [3.0, 6.0]])  # rank 1, two antipodal directions
    assert geometry.effective_rank(x) == pytest.approx(1.0, abs=1e-5)
    # normalised: u, -u, u -> squared distances 4, 0, 4 over the pairs (1,2), (1,3), (2,3)
    assert geometry.uniformity(x) == pytest.approx(math.log((2 * math.exp(-8) + 1) / 3))


@pytest.mark.parametrize("k", [2, 5, 16])
def test_orthonormal_points_rank_k_and_uniformity_minus_four(k):
    x = torch.eye(k) * torch.linspace(1, 3, k).view(-1, 1)  # scale changes the rank, not the uniformity
    # every pair of distinct unit basis vectors is at squared distance 2: log exp(-2 * 2) = -4
    assert geometry.uniformity(x) == pytest.approx(-4.0)
    assert geometry.effective_rank(torch.eye(k)) == pytest.approx(k, rel=1e-5)  # k equal singular values
    assert 1 < geometry.effective_rank(x) < k


def test_effective_rank_by_hand_for_two_unequal_singular_values():
    x = torch.diag(torch.tensor([3.0, 1.0]))  # singular values 3 and 1: p = (3/4, 1/4)
    p = torch.tensor([0.75, 0.25]) + 1e-7
    assert geometry.effective_rank(x) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-6)
    assert geometry.effective_rank(x) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))),
                                                       rel=1e-5)


def test_regular_simplex_uniformity():
    # n points of a regular simplex on the unit sphere: pairwise squared distance 2 + 2 / (n - 1)
    n = 4
    e = torch.eye(n, dtype=torch.float64)
    x = e - e.mean(dim=0)
    assert geometry.uniformity(x) == pytest.approx(-2 * (2 + 2 / (n - 1)))
    assert geometry.effective_rank(x) == pytest.approx(n - 1, rel=1e-5)  # centred: n - 1 equal singular values


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="all-zero"):
        geometry.effective_rank(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="matrix"):
        geometry.effective_rank(torch.ones(3))


def test_a_common_offset_reads_as_collapse_uncentred_but_not_centred():
    """Spread points plus a large shared offset b: on the sphere they crowd around b / |b| (uncentred uniformity
    near 0, rank near 1), while the centred measures are those of the points themselves, and the offset ratio
    is |b| over their RMS spread."""
    x = torch.eye(8, dtype=torch.float64) - 1 / 8  # a regular simplex: centred, spread in 7 directions
    offset = torch.zeros(8, dtype=torch.float64)
    offset[0] = 1e3
    shifted = x + offset
    assert geometry.uniformity(shifted) > -1e-4 and geometry.effective_rank(shifted) < 1.1
    assert geometry.centred_uniformity(shifted) == pytest.approx(geometry.uniformity(x))
    assert geometry.centred_uniformity(shifted) == pytest.approx(-2 * (2 + 2 / 7))  # the simplex by hand
    assert geometry.centred_effective_rank(shifted) == pytest.approx(7.0, rel=1e-5)  # 7 equal singular values
    rms = math.sqrt(1 - 1 / 8)  # |e_i - 1/8| for every point
    assert geometry.mean_offset_ratio(shifted) == pytest.approx(1e3 / rms)
    assert geometry.mean_offset_ratio(x) == pytest.approx(0.0, abs=1e-12)
    assert geometry.mean_offset_ratio(torch.ones(3, 2)) == float("inf")
    with pytest.raises(ValueError, match="n >= 2"):
        geometry.mean_offset_ratio(torch.ones(1, 2))
