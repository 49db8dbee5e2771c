"""Each loss of sinsim_ext.losses against a hand computation on a tiny case."""

from __future__ import annotations

import math
import re

import pytest
import torch

from sinsim_ext.losses import (
    BarlowTwinsLoss,
    BYOLLoss,
    NTXentLoss,
    SinkhornLoss,
    SinSimLoss,
    VICRegLoss,
)

T = torch.tensor


def ntxent_by_hand(z1, z2, tau):
    """NT-Xent written out with Python floats (SimCLR Eq. 1)."""
    u = [[x / math.sqrt(sum(c * c for c in v)) for x in v] for v in z1 + z2]
    n2 = len(u)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        s = [sum(a * b for a, b in zip(u[i], u[k])) / tau for k in range(n2)]
        total += -s[pos] + math.log(sum(math.exp(s[k]) for k in range(n2) if k != i))
    return total / n2


def test_ntxent_orthogonal_pairs_closed_form():
    # u = [e1, e2, e1, e2], tau = 1: each row sees its positive (cos 1) and
    # two orthogonal negatives (cos 0): loss = -1 + log(e + 2).
    z = T([[1.0, 0.0], [0.0, 1.0]])
    assert NTXentLoss(temperature=1.0)(z, z).item() == pytest.approx(math.log(math.e + 2) - 1, abs=1e-6)


def test_ntxent_refuses_a_single_pair():
    # With N = 1 the positive is the only other embedding: -s + log(exp(s)) = 0
    # whatever the embeddings, a loss that cannot train anything.
    with pytest.raises(ValueError, match="2 or more pairs"):
        NTXentLoss(0.3)(T([[0.3, -1.2]]), T([[2.0, 0.5]]))
    assert NTXentLoss(0.3)(T([[0.3, -1.2], [1.0, 0.0]]), T([[2.0, 0.5], [0.0, 1.0]])).item() > 0


def test_ntxent_matches_hand_computation():
    z1 = [[1.0, 2.0, 0.0], [0.5, -1.0, 1.0], [-2.0, 0.1, 0.3]]
    z2 = [[0.9, 2.2, 0.1], [0.0, -1.0, 2.0], [1.0, 1.0, 1.0]]
    got = NTXentLoss(temperature=0.5)(T(z1), T(z2)).item()
    assert got == pytest.approx(ntxent_by_hand(z1, z2, 0.5), rel=1e-5)


def test_ntxent_is_invariant_to_scale_and_rejects_bad_temperature():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    loss = NTXentLoss(0.2)
    assert loss(3 * z1, 0.5 * z2).item() == pytest.approx(loss(z1, z2).item(), rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0.0)


def test_sinkhorn_single_point_is_the_squared_distance_of_unit_vectors():
    # One point each: the only plan is P = [[1]], whose KL term is 0.
    x, y = T([[3.0, 4.0]]), T([[1.0, 0.0]])  # unit vectors (0.6, 0.8) and (1, 0)
    assert SinkhornLoss(eps=0.1)(x, y).item() == pytest.approx(0.4**2 + 0.8**2, abs=1e-5)
    assert SinkhornLoss(eps=0.1, normalize=False)(x, y).item() == pytest.approx(2.0**2 + 4.0**2, abs=1e-4)


@pytest.mark.parametrize("backend", ["kernel", "reference"])
def test_sinkhorn_two_points_closed_form(backend):
    # x = y = {e1, e2}: C = [[0, 2], [2, 0]], uniform weights. The optimal
    # plan is [[p, q], [q, p]] with q / p = exp(-2 / eps), p + q = 1/2, and
    # W = <P, C> + eps KL(P | 1/4) = 4 q + eps (2 p log 4p + 2 q log 4q).
    eps = 0.5
    r = math.exp(-2 / eps)
    p, q = 1 / (2 * (1 + r)), r / (2 * (1 + r))
    expected = 4 * q + eps * (2 * p * math.log(4 * p) + 2 * q * math.log(4 * q))
    e = torch.eye(2, dtype=torch.float64)
    got = SinkhornLoss(eps=eps, max_iter=500, backend=backend)(e, e)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_sinkhorn_loss_is_differentiable_and_scale_free_when_normalised():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=g, requires_grad=True)
    y = torch.randn(5, 3, generator=g)
    loss = SinkhornLoss(eps=0.1)
    value = loss(x, y)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert loss(10 * x.detach(), 0.1 * y).item() == pytest.approx(value.item(), rel=1e-5)


def test_sinkhorn_auto_backend_picks_the_kernel_where_it_is_compiled():
    import sinsim_ext
    from sinsim_ext import reference

    loss = SinkhornLoss()
    cpu = torch.device("cpu")
    assert loss.solver(cpu) is (sinsim_ext.sinkhorn_cost if "cpu" in sinsim_ext.backends() else reference.sinkhorn_cost)
    assert SinkhornLoss(backend="reference").solver(cpu) is reference.sinkhorn_cost
    with pytest.raises(ValueError, match="backend"):
        SinkhornLoss(backend="gpu")


def test_sinsim_is_ntxent_plus_weighted_sinkhorn():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    h1, h2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    loss = SinSimLoss(temperature=0.5, weight=0.3, eps=0.1)
    expected = NTXentLoss(0.5)(z1, z2) + 0.3 * SinkhornLoss(eps=0.1)(h1, h2)
    assert loss(z1, z2, h1, h2).item() == pytest.approx(expected.item(), rel=1e-6)
    # without s1, s2 the transport term compares the projections themselves
    expected_z = NTXentLoss(0.5)(z1, z2) + 0.3 * SinkhornLoss(eps=0.1)(z1, z2)
    assert loss(z1, z2).item() == pytest.approx(expected_z.item(), rel=1e-6)
    assert SinSimLoss(weight=0.0)(z1, z2, h1, h2).item() == pytest.approx(NTXentLoss(0.5)(z1, z2).item(), rel=1e-6)


def test_byol_loss_by_hand_and_stop_gradient():
    p = T([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    z = T([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]], requires_grad=True)
    # 2 - 2 cos: orthogonal -> 2, parallel -> 0, 45 degrees -> 2 - sqrt(2)
    loss = BYOLLoss()(p, z)
    assert loss.item() == pytest.approx((2 + 0 + 2 - math.sqrt(2)) / 3, abs=1e-6)
    loss.backward()
    assert p.grad is not None and z.grad is None


def test_vicreg_by_hand():
    z1 = T([[1.0, 0.0], [-1.0, 0.0]])
    z2 = T([[1.0, 2.0], [-1.0, -2.0]])
    # invariance: mean of (z1 - z2)^2 over 4 entries = (4 + 4) / 4 = 2
    # variance: z1's 2nd dim is constant: std = sqrt(0 + 1e-4) = 0.01 -> hinge 0.99,
    #   v(z1) = 0.99 / 2; every other dim has std >= sqrt(2) -> 0; term = (0.495 + 0) / 2
    # covariance: cov(z1) = [[2, 0], [0, 0]] -> 0; cov(z2) = [[2, 4], [4, 8]] -> (16 + 16) / 2 = 16
    loss = VICRegLoss()
    terms = loss.terms(z1, z2)
    assert terms["invariance"].item() == pytest.approx(2.0)
    assert terms["variance"].item() == pytest.approx(0.2475, abs=1e-6)
    assert terms["covariance"].item() == pytest.approx(16.0, abs=1e-5)
    assert loss(z1, z2).item() == pytest.approx(25 * 2 + 25 * 0.2475 + 16, abs=1e-4)
    # solo-learn's CIFAR recipe sums the two views' variance terms: 0.495 + 0
    summed = VICRegLoss(variance_views="sum")
    assert summed.terms(z1, z2)["variance"].item() == pytest.approx(0.495, abs=1e-6)
    assert summed(z1, z2).item() == pytest.approx(25 * 2 + 25 * 0.495 + 16, abs=1e-4)
    with pytest.raises(ValueError, match="variance_views"):
        VICRegLoss(variance_views="max")


def test_the_trainers_vicreg_sums_the_views_variance_terms_as_its_cited_recipe():
    """train/methods/vicreg.py cites solo-learn's CIFAR recipe, whose loss adds v(Z) + v(Z')."""
    from train import run_config
    from train.methods import METHODS
    from train.models import resnet18_encoder

    cfg = run_config("vicreg", image_size=8, device="cpu")
    backbone, dim = resnet18_encoder(1, 8)
    method = METHODS["vicreg"](backbone, dim, cfg)
    assert method.vicreg.variance_views == "sum"


def test_barlow_twins_by_hand():
    z1 = T([[1.0, 2.0], [-1.0, -2.0]])  # standardised: [[1, 1], [-1, -1]]
    z2 = T([[1.0, -1.0], [-1.0, 1.0]])  # standardised: itself
    # C = z1^T z2 / 2 = [[1, -1], [1, -1]]: on-diagonal (1-1)^2 + (1+1)^2 = 4, off-diagonal 1 + 1 = 2
    assert BarlowTwinsLoss(lambda_offdiag=5e-3, eps=0.0)(z1, z2).item() == pytest.approx(4 + 5e-3 * 2, abs=1e-6)
    # identical, decorrelated views reach the minimum 0
    z = T([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert BarlowTwinsLoss(eps=0.0)(z, z).item() == pytest.approx(0.0, abs=1e-6)


def test_barlow_twins_scaled_loss_against_its_formula_by_loops():
    """solo-learn's CIFAR recipe (scale 0.1, lambda 0.0051) against Eqs. (1)-(2) written out entry by entry in
    float64: BatchNorm standardisation (biased variance, eps 1e-5), C_jk = 1/N sum_i z1_ij z2_ik,
    L = scale * (sum_j (1 - C_jj)^2 + lambda sum_{j != k} C_jk^2)."""
    g = torch.Generator().manual_seed(7)
    z1, z2 = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    n, d = z1.shape

    def standardise(z):
        cols = []
        for j in range(d):
            col = [float(z[i, j]) for i in range(n)]
            mean = sum(col) / n
            var = sum((v - mean) ** 2 for v in col) / n
            cols.append([(v - mean) / math.sqrt(var + 1e-5) for v in col])
        return cols  # cols[j][i]

    a, b = standardise(z1), standardise(z2)
    total = 0.0
    for j in range(d):
        for k in range(d):
            c = sum(a[j][i] * b[k][i] for i in range(n)) / n
            total += (1 - c) ** 2 if j == k else 0.0051 * c ** 2
    expected = 0.1 * total
    got = BarlowTwinsLoss(lambda_offdiag=0.0051, scale=0.1)(z1.float(), z2.float()).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert BarlowTwinsLoss(lambda_offdiag=0.0051)(z1, z2).item() == pytest.approx(total, rel=1e-5)  # paper: scale 1
    with pytest.raises(ValueError, match="scale"):
        BarlowTwinsLoss(scale=0.0)


@pytest.mark.parametrize(
    "loss",
    [NTXentLoss(), SinSimLoss(), BarlowTwinsLoss(), VICRegLoss(), BYOLLoss()],
    ids=lambda m: type(m).__name__,
)
def test_losses_compute_half_precision_inputs_in_float32(loss):
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    full = loss(z1, z2)
    half = loss(z1.bfloat16(), z2.bfloat16())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=2e-2, abs=2e-2)


@pytest.mark.parametrize("loss_cls", [VICRegLoss, BarlowTwinsLoss, NTXentLoss])
def test_losses_are_not_rounded_by_a_surrounding_autocast(gen, loss_cls):
    """Under bf16 autocast a loss's own matrix products would be rounded to
    8 mantissa bits (enough to blow up VICReg's covariance term on CIFAR-10);
    the loss must give its float32 value however it is called."""
    z1, z2 = torch.randn(64, 32, generator=gen), torch.randn(64, 32, generator=gen)
    loss = loss_cls()
    expected = loss(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(z1, z2)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loss", [BarlowTwinsLoss(), VICRegLoss()], ids=lambda l: type(l).__name__)
def test_batch_statistics_losses_refuse_a_single_pair(loss):
    """Barlow Twins standardises over the batch (one image: every entry 0, a
    constant loss with zero gradient) and VICReg takes batch variances (one
    image: NaN): both need two or more pairs and say so."""
    with pytest.raises(ValueError, match=rf"{type(loss).__name__} needs a batch of 2 or more pairs.*got 1"):
        loss(T([[0.3, -1.2, 0.5]]), T([[2.0, 0.5, -0.1]]))
    z1 = T([[0.3, -1.2, 0.5], [1.0, 0.0, 0.2]], requires_grad=True)
    value = loss(z1, T([[2.0, 0.5, -0.1], [0.0, 1.0, 0.4]]))
    value.backward()
    assert torch.isfinite(value) and z1.grad.abs().sum() > 0


@pytest.mark.parametrize("loss", [NTXentLoss(0.5), BYOLLoss(), VICRegLoss(), BarlowTwinsLoss(),
                                  SinSimLoss(temperature=0.5)], ids=lambda l: type(l).__name__)
def test_the_two_views_must_have_the_same_shape(loss):
    """Row i of both views comes from image i: views of different batch sizes
    (or widths) are refused, naming both arguments, not a matmul error."""
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(4, 8, generator=g)
    for z2 in (torch.randn(5, 8, generator=g), torch.randn(4, 6, generator=g), torch.randn(4, 8, 1, generator=g)):
        shapes = re.escape(f"got {tuple(z1.shape)} and {tuple(z2.shape)}")
        with pytest.raises(ValueError, match=r"must both be \(N, d\) with the same N and d.*" + shapes):
            loss(z1, z2)
