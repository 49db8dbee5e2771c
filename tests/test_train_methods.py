"""Each method trains a few steps on tiny inputs and its loss falls; the
registry, heads, BYOL's target update, LARS and the schedule behave."""

from __future__ import annotations

import math

import pytest
import torch


from train.config import Config, for_method, resolve, run_config
from train.catalog import METHOD_RECIPES
from train.methods import METHODS
from train.models import resnet18_encoder
from train.optim import LARS, WarmupCosine, build_optimizer, parameter_groups


def tiny_config(name: str, **overrides) -> Config:
    return run_config(name, device="cpu", proj_hidden_dim=64, proj_output_dim=32, pred_hidden_dim=64, **overrides)


def build(name: str, **overrides):
    torch.manual_seed(0)
    cfg = tiny_config(name, **overrides)
    backbone, dim = resnet18_encoder(in_channels=1, image_size=8)
    return METHODS[name](backbone, dim, cfg), cfg


def test_registry_holds_the_five_methods():
    assert set(METHODS) >= {"sinsim", "simclr", "byol", "vicreg", "barlow"}
    for name, cls in METHODS.items():
        assert cls.name == name and METHOD_RECIPES[name].training["lr"] > 0


@pytest.mark.parametrize("name", sorted(METHODS))
def test_loss_falls_in_a_few_steps(name):
    method, cfg = build(name)
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(16, 1, 8, 8, generator=g)
    x2 = x1 + 0.3 * torch.randn(16, 1, 8, 8, generator=g)
    opt = build_optimizer(cfg.optimizer, method.trainable(), lr=cfg.lr * 16 / 256, weight_decay=cfg.weight_decay,
                          bias_lr_scale=cfg.bias_lr_scale)
    losses = []
    method.train()
    for step in range(12):
        loss, terms = method.training_step(x1, x2)
        assert torch.isfinite(loss) and all(not t.requires_grad for t in terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_optimizer_step(step + 1, 12)
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.9 * losses[0], losses


def test_barlow_method_uses_the_scaled_loss():
    method, cfg = build("barlow")
    assert method.barlow.scale == 0.1 and method.barlow.lambda_offdiag == 0.0051
    optimizer_groups = {g["lr"] for g in build_optimizer(cfg.optimizer, method.trainable(), lr=0.3, weight_decay=1e-4,
                                                        bias_lr_scale=cfg.bias_lr_scale).param_groups}
    assert optimizer_groups == {0.3}  # biases and BatchNorm (the backbone's too) at the weights' rate


@pytest.mark.parametrize("term,debias", [("entropic", False), ("divergence", True)])
def test_sinsim_term_flag_picks_the_cost(term, debias):
    method, _ = build("sinsim", sinkhorn_term=term)
    assert method.loss.sinkhorn.debias is debias
    with pytest.raises(ValueError, match="sinkhorn_term"):
        build("sinsim", sinkhorn_term="wasserstein")


def test_sinsim_terms_follow_the_flags():
    method, cfg = build("sinsim", sinkhorn_weight=0.7, sinkhorn_on="features")
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    method.eval()  # BatchNorm in eval mode: the same inputs give the same outputs
    loss, terms = method.loss_terms(x, x.flip(-1))
    assert loss.item() == pytest.approx(terms["ntxent"].item() + 0.7 * terms["sinkhorn"].item(), rel=1e-6)
    (h1, h2), (z1, z2) = method.encode_pair(x, x.flip(-1))
    assert terms["sinkhorn"].item() == pytest.approx(method.loss.sinkhorn(h1, h2).item(), rel=1e-6)
    method.on_features = False
    _, terms_z = method.loss_terms(x, x.flip(-1))
    assert terms_z["sinkhorn"].item() == pytest.approx(method.loss.sinkhorn(z1, z2).item(), rel=1e-6)
    assert method.loss.sinkhorn.eps == cfg.params["sinkhorn_eps"]
    assert method.loss.sinkhorn.max_iter == cfg.params["sinkhorn_iters"]


def test_byol_target_is_an_exponential_moving_average():
    method, _ = build("byol")
    online = [p.detach().clone() for p in method.backbone.parameters()]
    before = [p.detach().clone() for p in method.target_backbone.parameters()]
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(0.5)
    method.after_optimizer_step(step=1, total_steps=10)  # after the first optimiser step: tau_0 = tau_base
    tau = 0.99
    for t, b, o in zip(method.target_backbone.parameters(), before, online):
        torch.testing.assert_close(t, tau * b + (1 - tau) * (o + 0.5))
    assert all(not p.requires_grad for p in method.target_backbone.parameters())
    trainable = {id(p) for p in method.trainable().parameters()}
    assert not any(id(p) in trainable for p in method.target_projector.parameters())


def test_byol_momentum_schedule_by_hand():
    """tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 (BYOL section 3.2; solo-learn's
    solo/utils/momentum.py), and the update after optimiser step k uses tau_{k-1}."""
    method, cfg = build("byol")
    assert cfg.params["ema_tau"] == 0.99  # solo-learn scripts/pretrain/cifar/byol.yaml: base_tau 0.99, final_tau 1.0
    K = 8
    assert method.tau(0, K) == pytest.approx(0.99)
    assert method.tau(K // 2, K) == pytest.approx(1 - 0.01 * 0.5)  # cos(pi / 2) = 0
    assert method.tau(2, K) == pytest.approx(1 - 0.01 * (math.sqrt(0.5) + 1) / 2)  # cos(pi / 4)
    assert method.tau(K, K) == pytest.approx(1.0)
    taus = []
    original = method.tau
    method.tau = lambda k, total: taus.append(k) or original(k, total)
    for step in range(1, K + 1):
        method.after_optimizer_step(step, K)
    assert taus == list(range(K))


def test_lars_step_by_hand():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    module = torch.nn.Module()
    module.w, module.b = w, b
    opt = LARS(parameter_groups(module, weight_decay=0.1, lr=1.0, bias_lr_scale=0.25), lr=1.0, momentum=0.0, eta=0.02)
    w.grad = torch.tensor([[0.0, 1.0]])  # |g| = 1
    b.grad = torch.tensor([2.0])
    opt.step()
    # trust ratio eta |w| / (|g| + wd |w|) = 0.02 * 5 / 1.5, clipped at lr = 1 -> kept
    ratio = 0.02 * 5 / (1 + 0.1 * 5)
    expected_w = torch.tensor([[3.0, 4.0]]) - ratio * (torch.tensor([[0.0, 1.0]]) + 0.1 * torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(w.detach(), expected_w)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.25 * 2.0]))  # bias: plain SGD at lr / 4, no decay


def test_warmup_cosine_schedule():
    f = WarmupCosine(total=110, warmup=10)
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)
    assert all(f(t) >= f(t + 1) for t in range(10, 110))
    assert WarmupCosine(total=100, warmup=0)(50) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_method_defaults_fill_only_unset_fields():
    cfg = resolve(Config(dataset="digits", method="all", device="cpu", lr=0.123, params={"temperature": 0.3}))
    byol = for_method(cfg, "byol", "x/byol")
    assert byol.lr == 0.123 and byol.weight_decay == 1e-5 and byol.params["ema_tau"] == 0.99 and byol.out == "x/byol"
    barlow = for_method(cfg, "barlow")
    assert barlow.params["barlow_lambda"] == 0.0051 and barlow.params["proj_output_dim"] == 2048
    assert "temperature" not in barlow.params  # each method takes its own hyper-parameters only
    assert for_method(cfg, "simclr").params["temperature"] == 0.3
    # solo-learn's CIFAR recipe: loss scale 0.1, one learning rate for every parameter
    assert barlow.params["barlow_scale"] == 0.1 and barlow.bias_lr_scale == 1.0 and byol.bias_lr_scale == 1.0
