"""Barlow Twins (Zbontar et al., ICML 2021, arXiv:2103.03230): the
cross-correlation of the two views' projections is pushed to the identity."""

from __future__ import annotations

from sinsim_ext.losses import BarlowTwinsLoss

from ..models import mlp
from .base import Method


class BarlowTwins(Method):
    name = "barlow"
    # lambda = 5e-3 and biases / BatchNorm parameters at 0.0048 / 0.2 = 0.024
    # times the weights' learning rate: the paper, section 4 (the loss is
    # O(d), and only LARS's trust ratio makes the weights' steps scale-free).
    # ResNet-18 on CIFAR, solo-learn scripts/pretrain/cifar/barlow.yaml: LARS
    # lr 0.3 per 256 images, weight decay 1e-4, 3-layer projector
    # 2048-2048-2048 (paper, ImageNet: 8192).
    defaults = dict(optimizer="lars", lr=0.3, weight_decay=1e-4, proj_hidden_dim=2048, proj_output_dim=2048,
                    barlow_lambda=5e-3, bias_lr_scale=0.024)
    recipe = "byol"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        self.projector = mlp(feature_dim, cfg.proj_hidden_dim, cfg.proj_output_dim, layers=3)
        self.barlow = BarlowTwinsLoss(lambda_offdiag=cfg.barlow_lambda)

    def loss_terms(self, x1, x2):
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        loss = self.barlow(z1, z2)
        return loss, {"barlow": loss}
