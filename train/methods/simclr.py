"""SimCLR (Chen et al., ICML 2020, arXiv:2002.05709): NT-Xent on projections."""

from __future__ import annotations

import torch

from sinsim_ext.losses import NTXentLoss

from ..models import mlp
from .base import Method


class SimCLR(Method):
    name = "simclr"
    # ResNet-18 on CIFAR, solo-learn (da Costa et al., JMLR 2022),
    # scripts/pretrain/cifar/simclr.yaml: LARS lr 0.4 per 256 images, weight
    # decay 1e-4, temperature 0.2, projector 2048 -> 256. (The SimCLR paper's
    # CIFAR-10 runs used temperature 0.5 and a 128-d projection.)
    defaults = dict(optimizer="lars", lr=0.4, weight_decay=1e-4, temperature=0.2, proj_hidden_dim=2048, proj_output_dim=256)
    recipe = "simclr"

    def __init__(self, backbone, feature_dim, cfg):
        super().__init__(backbone, feature_dim, cfg)
        self.projector = mlp(feature_dim, cfg.proj_hidden_dim, cfg.proj_output_dim)
        self.ntxent = NTXentLoss(cfg.temperature)

    def encode_pair(self, x1, x2):
        """Features and projections of both views, in one batched pass."""
        h = self.backbone(torch.cat([x1, x2]))
        z = self.projector(h)
        return h.chunk(2), z.chunk(2)

    def loss_terms(self, x1, x2):
        _, (z1, z2) = self.encode_pair(x1, x2)
        loss = self.ntxent(z1, z2)
        return loss, {"ntxent": loss}
